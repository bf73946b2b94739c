"""``featurescope compare`` and ``featurescope export --gradcam`` as a user runs them.

The subprocess loads resnet18 with a state dict written to tmp_path (so this process can
load the very same weights) at a 64 px input, to stay fast.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "resources" / "samples"
CAT, COFFEE = SAMPLES / "chelsea.png", SAMPLES / "coffee.png"


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "featurescope", *args], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=180)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A resnet18 state dict on disk and the same model loaded here."""
    from featurescope.core.models.load import load_model

    torch.manual_seed(0)
    model = load_model("resnet18", weights="none", device="cpu", input_size=64)
    path = tmp_path_factory.mktemp("weights") / "resnet18.pth"
    torch.save(model.module.state_dict(), path)
    return path, load_model("resnet18", weights=str(path), device="cpu", input_size=64)


def test_compare_writes_shared_scale_grids_and_similarities_and_refuses_to_overwrite(tmp_path, weights):
    from featurescope.core.render import grids
    from featurescope.core.capture.capture import capture
    from featurescope.core.analysis.compare import compare_layer, shared_index_grids
    from featurescope.core.io.images import load_image

    path, model = weights
    args = ("compare", str(CAT), str(COFFEE), "--layer", "layer2.0.conv1", "--model", "resnet18",
            "--weights", str(path), "--input-size", "64", "--device", "cpu", "--colormap", "magma",
            "-o", "out")
    done = run(*args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == [
        "layer2.0.conv1_a.png", "layer2.0.conv1_b.png", "layer2.0.conv1_compare.json",
        "layer2.0.conv1_difference.png"]

    expected = compare_layer(capture(model, load_image(CAT)), capture(model, load_image(COFFEE)),
                             "layer2.0.conv1")
    pictures, _ = shared_index_grids(expected)
    lut = grids.colormap_lut("magma")
    for key in ("a", "b", "difference"):
        written = np.asarray(Image.open(out / f"layer2.0.conv1_{key}.png").convert("RGB"))
        np.testing.assert_array_equal(written, lut[pictures[key]])
    sidecar = json.loads((out / "layer2.0.conv1_compare.json").read_text())
    assert sidecar["similarity"] == pytest.approx(expected.similarity, abs=1e-6)
    np.testing.assert_allclose(sidecar["channel_similarity"], expected.channel_similarity, atol=1e-6)
    assert sidecar["least_similar_channels"] == expected.most_different_channels().tolist()
    assert sidecar["shared_levels"] == pytest.approx(list(expected.shared_levels), abs=1e-5)
    assert f"similarity {expected.similarity:.4f}" in done.stdout

    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    again = run(*args, cwd=tmp_path)
    assert again.returncode == 2 and "already exists" in again.stderr and "--force" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    forced = run(*args, "--force", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr

    wrong = run("compare", str(CAT), str(COFFEE), "--layer", "layer9", "--model", "resnet18",
                "--weights", "none", "--input-size", "64", "-o", "other", cwd=tmp_path)
    assert wrong.returncode == 2 and "no captured layer named 'layer9'" in wrong.stderr
    assert not (tmp_path / "other").exists()


def test_export_gradcam_writes_the_overlay_of_the_top_class_at_the_last_conv(tmp_path, weights):
    from featurescope.core.capture.capture import capture
    from featurescope.core.analysis.gradcam import compute_grad_cam, overlay
    from featurescope.core.io.images import load_image

    path, model = weights
    args = ("export", str(CAT), "--layers", "conv1", "--gradcam", "--model", "resnet18",
            "--weights", str(path), "--input-size", "64", "--device", "cpu", "-o", "out")
    done = run(*args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "out"
    last_conv = [i.name for i in model.layer_info if i.kind == "Conv2d"][-1]
    png, sidecar = out / f"gradcam_{last_conv}.png", out / f"gradcam_{last_conv}.json"
    assert png.is_file() and sidecar.is_file() and (out / "conv1.png").is_file()

    result = capture(model, load_image(CAT))
    cam = compute_grad_cam(model, result.input, last_conv)
    expected = overlay(model.deprocess(result.input), cam.map, colormap="inferno", alpha=0.5)
    written = np.asarray(Image.open(png).convert("RGB"))
    assert written.shape == (64, 64, 3)
    assert np.abs(written.astype(int) - expected.astype(int)).max() <= 1
    info = json.loads(sidecar.read_text())
    assert info["class_index"] == cam.target == int(result.logits.argmax())
    assert info["layer"] == last_conv and info["class_label"] == cam.label

    again = run(*args, cwd=tmp_path)
    assert again.returncode == 2 and "already exists" in again.stderr
    (out / "conv1.png").unlink()
    (out / "featurescope.json").unlink()
    again = run(*args, cwd=tmp_path)  # the Grad-CAM file alone still blocks the export
    assert again.returncode == 2 and f"gradcam_{last_conv}" in again.stderr
    assert not (out / "conv1.png").exists()

    # the one Grad-CAM layer rule: a pooling layer is read at the convolution before it
    chosen = run("export", str(CAT), "--layers", "conv1", "--gradcam-layer", "maxpool", "--model",
                 "resnet18", "--weights", "none", "--input-size", "64", "-o", "x", cwd=tmp_path)
    assert chosen.returncode == 0, chosen.stderr
    assert "nearest convolution before it, conv1" in chosen.stderr
    assert json.loads((tmp_path / "x" / "gradcam_conv1.json").read_text())["layer"] == "conv1"
    unknown = run("export", str(CAT), "--layers", "conv1", "--gradcam-layer", "conv99", "--model",
                  "resnet18", "--weights", "none", "--input-size", "64", "-o", "y", cwd=tmp_path)
    assert unknown.returncode == 2 and "no layer called 'conv99'" in unknown.stderr


def test_screenshots_of_the_compare_view_and_a_receptive_field(tmp_path):
    # In a subprocess, as the README's commands run: a window per call, nothing left behind.
    done = run("screenshot", "compare.png", "--view", "compare", "--layer", "stem",
               "--compare-with", str(COFFEE), "--size", "1000x700", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert Image.open(tmp_path / "compare.png").size == (1000, 700)
    done = run("screenshot", "rf.png", "--view", "channel", "--layer", "stem", "--position", "50,60",
               "--size", "1000x700", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert Image.open(tmp_path / "rf.png").size == (1000, 700)
    outside = run("screenshot", "bad.png", "--view", "channel", "--layer", "stem", "--position", "500,0",
                  cwd=tmp_path)
    assert outside.returncode == 2 and "outside" in outside.stderr and not (tmp_path / "bad.png").exists()
    wrong_view = run("screenshot", "bad.png", "--position", "1,1", cwd=tmp_path)
    assert wrong_view.returncode == 2 and "--view channel" in wrong_view.stderr


def test_export_gradcam_of_a_model_with_a_dict_output_is_one_sentence_and_writes_nothing(
        tmp_path, capsys):
    """A detector-like model (a dict out) cannot be explained by Grad-CAM: the export
    stops before its first file, not after the layer grids."""
    from featurescope.cli.main import main

    (tmp_path / "nets.py").write_text(
        "import torch.nn as nn\n"
        "class DictOut(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__(); self.conv = nn.Conv2d(3, 4, 3); self.pool = nn.AdaptiveAvgPool2d(1)\n"
        "    def forward(self, x):\n"
        "        return {'scores': self.pool(self.conv(x)).flatten(1)}\n"
        "def dict_out():\n"
        "    return DictOut()\n")
    from featurescope.core.resources import default_sample

    out = tmp_path / "out"
    code = main(["export", str(default_sample()), "--model", str(tmp_path / "nets.py") + ":dict_out",
                 "--weights", "none", "--input-size", "32", "--gradcam", "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("featurescope: Grad-CAM needs a model that outputs class scores")
    assert not out.exists() or list(out.iterdir()) == []
