"""``featurescope why`` as a user runs it: the answer, its JSON, its report, its refusals."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from PIL import Image

from featurescope.cli.main import main
from featurescope.core.resources import default_sample


def test_why_json_has_the_documented_shape_and_agrees_with_the_engine(tmp_path, capsys):
    import featurescope as fs

    report = tmp_path / "report.png"
    assert main(["why", str(default_sample()), "--top", "3", "--json", "-o", str(report)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data) == {"class", "layer", "method", "channels", "faithfulness"}
    assert set(data["class"]) == {"index", "label", "probability"}
    assert data["layer"] == "head" and data["method"] == "grad_x_act"
    assert data["class"]["label"] in {"tabby", "tiger cat", "Egyptian cat"}
    assert all(set(c) == {"channel", "contribution", "activation"} for c in data["channels"])
    for_class = data["channels"][:3]
    assert [c["contribution"] for c in for_class] == sorted((c["contribution"] for c in for_class), reverse=True)
    assert any(c["contribution"] < 0 for c in data["channels"][3:])  # and the ones against it
    faith = data["faithfulness"]
    assert faith["k"] == [0, 1, 2, 5, 10, 20, 50]
    assert set(faith["auc"]) == {"top", "strongest", "random"}
    assert faith["auc"]["top"] < faith["auc"]["random"]
    # The same numbers as the Python API.
    model = fs.load_model("efficientnet_lite0", device="cpu")
    found = fs.attribute(model, fs.load_image(default_sample()), "head")
    assert [c["channel"] for c in for_class] == found.top(3)
    picture = np.asarray(Image.open(report))
    assert picture.ndim == 3 and picture.shape[1] >= 700
    # The report is not overwritten without --force.
    assert main(["why", str(default_sample()), "-o", str(report)]) == 2
    assert "already exists" in capsys.readouterr().err


def test_class_by_name_and_integrated_gradients_in_text(capsys):
    assert main(["why", str(default_sample()), "--class", "Egyptian cat", "--layer", "blocks.15.project",
                 "--method", "integrated_gradients", "--steps", "8", "--top", "2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Egyptian cat (") and "blocks.15.project, integrated_gradients" in out
    assert "contributions sum to" in out and "deletion check" in out


@pytest.mark.parametrize("extra, sentence", [
    (["--class", "zebra crossing"], "has no class called 'zebra crossing'"),
    (["--class", "5000"], "has 1000 classes, so class 5000 does not exist"),
    (["--layer", "classifier"], "does not output a feature map"),
    (["--layer", "nowhere"], "no layer"),
])
def test_user_errors_are_one_sentence(extra, sentence, capsys):
    assert main(["why", str(default_sample()), *extra]) == 2
    err = capsys.readouterr().err
    assert sentence in err and "Traceback" not in err and err.count("\n") == 1


def test_an_onnx_model_gets_one_sentence(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    import torch
    from torch import nn

    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net.eval(), (torch.zeros(1, 3, 32, 32),), str(tmp_path / "net.onnx"), dynamo=False)
    assert main(["why", str(default_sample()), "--model", str(tmp_path / "net.onnx")]) == 2
    err = capsys.readouterr().err
    assert "needs gradients, which the ONNX model" in err and err.count("\n") == 1


def test_export_gradcam_with_another_cam_method(tmp_path):
    import featurescope as fs

    assert main(["export", str(default_sample()), "--layers", "head", "--cam-method", "eigencam",
                 "-o", str(tmp_path)]) == 0
    sidecar = json.loads((tmp_path / "gradcam_head.json").read_text())
    assert sidecar["method"] == "eigencam" and sidecar["layer"] == "head"
    model = fs.load_model("efficientnet_lite0", device="cpu")
    cam = fs.grad_cam(model, fs.load_image(default_sample()), "head", method="eigencam")
    expected = fs.grad_cam(model, fs.load_image(default_sample()), "head")
    assert np.abs(cam - expected).max() > 0.05  # another map than plain Grad-CAM's
    assert Image.open(tmp_path / "gradcam_head.png").size == cam.shape[::-1]
