"""The command line with models of other kinds: one-channel own models and their one-value
statistics, ONNX files, timm names, models that cannot be shown; gui/screenshot options."""
from __future__ import annotations

import json

import pytest

from featurescope.cli.app import model_options
from featurescope.cli.main import build_parser, main

MNIST = (
    "import torch.nn as nn\n"
    "input_size = 28\n"
    "def net():\n"
    "    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4 * 13 * 13, 10))\n"
    "def audio():\n"
    "    return nn.Sequential(nn.Conv1d(1, 4, 3))\n"
)


@pytest.fixture
def mnist(tmp_path):
    path = tmp_path / "mnist.py"
    path.write_text(MNIST)
    return path


def test_one_value_mean_and_std_for_a_one_channel_model(mnist, capsys):
    assert main(["layers", "--model", f"{mnist}:net", "--mean", "0.1307", "--std", "0.3081",
                 "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["channels"] == 1 and data["input_size"] == [28, 28]
    assert [layer["input_shape"] for layer in data["layers"]] == [[1, 28, 28], [4, 26, 26]]
    assert main(["layers", "--model", f"{mnist}:net", "--mean", "0.1,0.2,0.3"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == ("featurescope: mean must have 1 value (the model has one input "
                           "channel), not 3.")


def test_a_model_without_2d_layers_is_one_sentence_not_a_blame_on_the_user(mnist, tmp_path, capsys):
    from featurescope.core.resources import default_sample

    code = main(["export", str(default_sample()), "--model", f"{mnist}:audio", "-o", str(tmp_path / "out")])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("featurescope: ") and "\n" not in err
    assert "has only Conv1d layers" in err and "No layers were chosen" not in err


def test_gui_and_screenshot_take_the_model_options():
    parser = build_parser()
    gui = parser.parse_args(["gui", "--input-size", "28", "--mean", "0.1307", "--std", "0.3081"])
    assert model_options(gui) == {"input_size": 28, "mean": (0.1307,), "std": (0.3081,)}
    shot = parser.parse_args(["screenshot", "out.png", "--device", "cpu", "--input-size", "32,48",
                              "--mean", "0.5,0.5,0.5"])
    assert model_options(shot, ("device", "input_size", "mean", "std")) == {
        "device": "cpu", "input_size": (32, 48), "mean": (0.5, 0.5, 0.5)}
    assert model_options(parser.parse_args(["gui"])) == {}  # nothing given: the app decides


def test_onnx_file_and_timm_name_from_the_command_line(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("timm")
    import warnings

    import torch
    from torch import nn

    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4 * 15 * 15, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net.eval(), (torch.zeros(1, 3, 32, 32),), str(tmp_path / "net.onnx"), dynamo=False)
    assert main(["layers", "--model", str(tmp_path / "net.onnx"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["input_size"] == [32, 32] and [layer["kind"] for layer in data["layers"]] == ["Conv2d", "MaxPool2d"]
    assert main(["layers", "--model", "timm:resnet18"]) == 0
    assert "conv1" in capsys.readouterr().out
