"""Why this box / why this region: channel contributions against a hand-made autograd
computation, and the deletion check reading the same box or region again."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from featurescope.core.analysis.attribution import attribute
from featurescope.core.analysis.faithfulness import faithfulness
from featurescope.core.errors import ModelError
from featurescope.core.models.load import load_model


def by_hand(module, layer, x, score_of):
    """Each channel's sum of output x gradient of score_of(output), with a plain hook."""
    kept = {}

    def keep(_module, _inputs, output):
        output.retain_grad()
        kept["a"] = output

    handle = dict(module.named_modules())[layer].register_forward_hook(keep)
    try:
        with torch.enable_grad():
            score = score_of(module(x))
            score.backward()
    finally:
        handle.remove()
        module.zero_grad(set_to_none=True)
    return (kept["a"] * kept["a"].grad).detach()[0].sum(dim=(1, 2)).double().numpy()


def test_a_boxs_channels_and_the_deletion_check():
    # resnet50's random-weight features do not vanish (mobilenet's do: ~1e-9), so a box's
    # score depends on them
    model = load_model("fasterrcnn_resnet50_fpn", weights="none", input_size=128, device="cpu")
    torch.manual_seed(0)
    x = torch.rand(1, 3, 128, 128)
    layer = "backbone.fpn.layer_blocks.0.0"
    found = attribute(model, x, layer, target=0)
    assert found.reference.task == "detection" and found.label in model.categories

    def best_box(output):
        return output[0]["scores"].max()

    expected = by_hand(model.module, layer, x, best_box)
    assert np.allclose(found.channels, expected, rtol=1e-3, atol=1e-6) and np.abs(expected).max() > 0
    with torch.no_grad():
        assert found.probability == pytest.approx(float(model.module(x)[0]["scores"].max()), abs=1e-5)
    check = faithfulness(model, x, layer, found, ks=(8, 256), draws=1)
    assert check.top[0] == pytest.approx(found.probability, abs=1e-5)
    assert check.top[1] < check.random[1]  # the channels it names carry the box
    assert check.top[-1] == 0.0  # every channel off: no box of that class there any more
    with pytest.raises(ModelError, match="use grad_x_act"):
        attribute(model, x, layer, method="integrated_gradients")


def test_a_class_over_its_region():
    model = load_model("fcn_resnet50", weights="none", input_size=64, device="cpu")
    torch.manual_seed(1)
    x = torch.rand(1, 3, 64, 64)
    layer = "backbone.layer4.2.conv3"
    found = attribute(model, x, layer)
    with torch.no_grad():
        scores = model.module(x)["out"]
    region = scores[0].argmax(0) == found.target
    assert found.target != 0 and bool(region.any())

    def class_over_region(output):
        return (output["out"][0, found.target] * region).sum()

    assert np.allclose(found.channels, by_hand(model.module, layer, x, class_over_region), rtol=1e-3)
    mean_probability = float(torch.softmax(scores.double(), 1)[0, found.target][region].mean())
    assert found.probability == pytest.approx(mean_probability, abs=1e-6)
    check = faithfulness(model, x, layer, found, ks=(8,), draws=1)
    assert check.top[0] == pytest.approx(mean_probability, abs=1e-6) and check.top[1] < check.top[0]


def test_a_detector_that_finds_no_box_says_so_without_naming_grad_cam():
    """box_target serves Grad-CAM and Why alike: the Why view showed "for Grad-CAM to
    explain" when a detector found nothing."""
    from featurescope.core.analysis.dense_cam import box_target

    nothing = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long), "scores": torch.zeros(0)}]
    with pytest.raises(ModelError, match=r"^ssdlite found no box in this image, so there is no box score to "
                                         r"explain\.$"):
        box_target(nothing, None, "ssdlite")
