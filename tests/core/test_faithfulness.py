"""The deletion check: its curves against fs.ablate, and that it tells a true explanation
from random channels on the embedded Lite0 with its real weights."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision

from featurescope.core.analysis.ablate import ablate
from featurescope.core.analysis.attribution import attribute
from featurescope.core.analysis.faithfulness import area, faithfulness
from featurescope.core.errors import ModelError
from featurescope.core.io.images import load_image
from featurescope.core.models.load import load_model
from featurescope.core.resources import sample_images


def probability_after_ablation(model, image, layer, channels, target):
    """The class's probability with ``channels`` off, through fs.ablate (one capture)."""
    result = ablate(model, image, layer, channels)
    return float(torch.softmax(result.result.logits.double(), 0)[target])


def test_curves_are_the_probabilities_fs_ablate_gives():
    torch.manual_seed(6)
    module = torchvision.models.resnet18(weights=None, num_classes=10).eval()
    x = torch.randn(1, 3, 64, 64)
    layer = "layer2.1.conv2"  # the block's identity comes from before the layer
    found = attribute(module, x, layer)
    curves = faithfulness(module, x, layer, found, ks=(1, 3, 200), draws=3, batch=4)
    assert curves.k == [0, 1, 3]  # 200 > 128 channels: left out
    top = found.top(3)
    assert curves.top[0] == pytest.approx(float(torch.softmax(module(x).detach()[0].double(), 0)[found.target]))
    for i, k in enumerate(curves.k[1:], start=1):
        expected = probability_after_ablation(module, x, layer, top[:k], found.target)
        assert curves.top[i] == pytest.approx(expected, abs=1e-6)
    strongest = list(np.argsort(-found.mean_activations, kind="stable")[:3])
    assert curves.strongest[2] == pytest.approx(
        probability_after_ablation(module, x, layer, strongest, found.target), abs=1e-6)
    # Same seed, same random curve; the AUC is the curve's mean over k.
    again = faithfulness(module, x, layer, found, ks=(1, 3), draws=3)
    assert again.random == curves.random
    assert curves.auc["top"] == pytest.approx(area(curves.k, curves.top))
    assert area([0, 2], [1.0, 0.0]) == pytest.approx(0.5)


def test_switching_off_the_top_channels_of_lite0_lowers_the_class_far_more_than_random():
    model = load_model("efficientnet_lite0", device="cpu")
    gaps = []
    for path in sample_images():
        image = load_image(path)
        found = attribute(model, image, "head")
        curves = faithfulness(model, image, "head", found)
        assert curves.k == [0, 1, 2, 5, 10, 20, 50]
        # Switching the 50 most contributing channels off (of 1280) costs most of the
        # class's probability; 50 random ones barely move it.
        assert curves.top[-1] < 0.5 * curves.top[0], path.name
        assert curves.random[-1] > 0.8 * curves.top[0], path.name
        assert curves.auc["top"] < 0.5 * curves.auc["random"], path.name
        gaps.append(curves.auc["random"] - curves.auc["top"])
    assert len(gaps) >= 3 and min(gaps) > 0.1


def test_an_attribution_of_another_layer_is_refused():
    torch.manual_seed(7)
    module = torchvision.models.resnet18(weights=None, num_classes=10).eval()
    x = torch.randn(1, 3, 64, 64)
    found = attribute(module, x, "layer3")
    with pytest.raises(ModelError, match="attribution is for 'layer3', not 'layer4'"):
        faithfulness(module, x, "layer4", found)
    with pytest.raises(ModelError, match="layer3 has 256 channels, so none of k = 300"):
        faithfulness(module, x, "layer3", found, ks=(300,))
