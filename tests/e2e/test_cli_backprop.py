"""``featurescope backprop`` as a user runs it: the photo beside the engine's pattern, and
its refusals (an existing file, an ONNX model, a layer without channels) in one sentence."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from PIL import Image

from featurescope.cli.main import main
from featurescope.core.resources import default_sample


def test_the_png_is_the_photo_beside_the_engines_pattern_and_is_not_overwritten(tmp_path, capsys):
    import featurescope as fs
    from featurescope.core.io.images import load_image

    out = tmp_path / "pattern.png"
    assert main(["backprop", str(default_sample()), "--layer", "blocks.2.project", "--channel", "5",
                 "--at", "3,4", "--method", "deconvnet", "-o", str(out)]) == 0
    assert "deconvnet pattern of blocks.2.project channel 5 at y 3, x 4" in capsys.readouterr().out
    model = fs.load_model("efficientnet_lite0", device="cpu")
    image = load_image(default_sample())
    expected = fs.guided_backprop(model, image, "blocks.2.project", 5, position=(3, 4), method="deconvnet")
    written = np.asarray(Image.open(out).convert("RGB"))
    height, width = expected.picture.shape[:2]
    assert written.shape == (height, 2 * width, 3)
    np.testing.assert_array_equal(written[:, width:], expected.picture)
    np.testing.assert_array_equal(written[:, :width], np.asarray(model.deprocess(model.preprocess(image))))

    before = out.read_bytes()
    assert main(["backprop", str(default_sample()), "--layer", "head", "--channel", "1", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and "Traceback" not in err and err.count("\n") == 1
    assert out.read_bytes() == before


def test_a_layer_without_channels_and_an_onnx_model_get_one_sentence(tmp_path, capsys):
    out = tmp_path / "pattern.png"
    assert main(["backprop", str(default_sample()), "--layer", "classifier", "--channel", "0",
                 "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "does not output a feature map" in err and err.count("\n") == 1 and not out.exists()

    pytest.importorskip("onnxruntime")
    import torch
    from torch import nn

    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net.eval(), (torch.zeros(1, 3, 32, 32),), str(tmp_path / "net.onnx"), dynamo=False)
    assert main(["backprop", str(default_sample()), "--model", str(tmp_path / "net.onnx"), "--layer", "0",
                 "--channel", "0", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "needs gradients, which the ONNX model" in err and err.count("\n") == 1 and not out.exists()


def test_screenshot_backprop_belongs_to_the_channel_view(tmp_path, capsys):
    assert main(["screenshot", str(tmp_path / "shot.png"), "--view", "grid", "--backprop", "guided"]) == 2
    err = capsys.readouterr().err
    assert "add --view channel" in err and err.count("\n") == 1 and not (tmp_path / "shot.png").exists()
