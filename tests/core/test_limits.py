"""Limits checked up front: sizes and counts that would run out of memory, hang or fail
deep inside torch are refused in one sentence before any work starts."""
from __future__ import annotations

import time

import pytest
import torch
from PIL import Image

import featurescope as fs
from featurescope.cli.main import main
from featurescope.core.errors import ImageError, OptvisError
from featurescope.core.optvis.hierarchy import hierarchy
from featurescope.core.optvis.render import MAX_SIDE, batch_for


@pytest.fixture(scope="module")
def model():
    return fs.load_model("resnet18", weights="none", device="cpu", input_size=64)


@pytest.mark.parametrize("call, words", [
    (lambda m: fs.visualize(m, "conv1", [0], steps=1, size=100000), "too large"),
    (lambda m: fs.visualize(m, "conv1", [-1], steps=1), "Channel -1 does not exist"),
    (lambda m: fs.visualize(m, "conv1", "0,-1", steps=1), "not a channel list"),
    (lambda m: hierarchy(m, per_layer=100000, steps=1), "1 to 32 channels per layer"),
    (lambda m: hierarchy(m, per_layer=0, steps=1), "not 0"),
    (lambda m: hierarchy(m, per_layer=2, steps=1, size=100000), "too large"),
])
def test_visualisations_beyond_the_limits_are_refused_at_once(model, call, words):
    started = time.monotonic()
    with pytest.raises(OptvisError, match=words):
        call(model)
    assert time.monotonic() - started < 5  # refused, not attempted


def test_large_images_are_optimised_fewer_at_a_time():
    assert batch_for((224, 224), 8) == 8
    assert batch_for((1024, 1024), 8) == 2
    assert batch_for((MAX_SIDE, MAX_SIDE), 8) == 1


@pytest.mark.parametrize("inputs, words", [
    (None, "not NoneType"), (5, "not int"), ("photo.jpg", "not str"),
    (Image.new("RGB", (8, 8)), "pass \\[image\\]"), ([], "at least one image"),
    (torch.zeros(3, 8, 8), "needs \\(N, C, H, W\\)")])
def test_capture_batch_refuses_what_is_not_a_batch(model, inputs, words):
    with pytest.raises(ImageError, match=words):
        fs.capture_batch(model, inputs)


@pytest.mark.parametrize("argv, words", [
    (["visualize", "--layer", "conv1", "--size", "100000"], "--size 100000"),
    (["visualize", "--hierarchy", "--per-layer", "100000"], "--per-layer 100000"),
])
def test_cli_refuses_before_loading_the_model(tmp_path, capsys, argv, words):
    assert main([*argv, "-o", str(tmp_path / "out.png")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0]
    assert list(tmp_path.iterdir()) == []
