"""Guided backpropagation and the deconvnet against Captum's NeuronGuidedBackprop and
NeuronDeconvolution."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision

from featurescope.core.analysis.guided import guided_backprop
from featurescope.core.errors import ModelError

captum_attr = pytest.importorskip("captum.attr")
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:captum")


@pytest.mark.parametrize("name, layer", [("resnet18", "layer3.0.conv2"), ("squeezenet1_1", "features.6")])
def test_guided_and_deconvnet_equal_captum(name, layer):
    torch.manual_seed(13)
    module = getattr(torchvision.models, name)(weights=None, num_classes=10).eval()
    x = torch.randn(1, 3, 64, 64)
    target = dict(module.named_modules())[layer]
    for method, reference in (("guided", captum_attr.NeuronGuidedBackprop),
                              ("deconvnet", captum_attr.NeuronDeconvolution)):
        for position in (None, (2, 1)):
            ours = guided_backprop(module, x, layer, 5, position=position, method=method)
            selector = (lambda out: out[:, 5].sum((1, 2))) if position is None else (5, *position)
            theirs = reference(module, target).attribute(x.clone(), selector)[0].detach().numpy()
            assert ours.gradient.shape == (3, 64, 64) and ours.picture.shape == (64, 64, 3)
            assert ours.picture.dtype == np.uint8
            scale = np.abs(theirs).max()
            assert scale > 0
            np.testing.assert_allclose(ours.gradient, theirs, atol=1e-5 * scale)
    # The two rules differ, and both differ from the plain gradient.
    guided = guided_backprop(module, x, layer, 5).gradient
    deconv = guided_backprop(module, x, layer, 5, method="deconvnet").gradient
    assert np.abs(guided - deconv).max() > 1e-3 * np.abs(guided).max()
    # The model is left as it was: a plain forward and its ordinary gradient still work.
    leaf = x.clone().requires_grad_(True)
    module(leaf)[0, 1].backward()
    assert torch.isfinite(leaf.grad).all()


def test_user_errors():
    torch.manual_seed(14)
    module = torchvision.models.resnet18(weights=None, num_classes=10).eval()
    x = torch.randn(1, 3, 64, 64)
    with pytest.raises(ModelError, match="layer4 has channels 0 to 511; 600 is not among them"):
        guided_backprop(module, x, "layer4", 600)
    with pytest.raises(ModelError, match=r"map is 2x2, so position \(5, 0\) is outside it"):
        guided_backprop(module, x, "layer4", 1, position=(5, 0))
    with pytest.raises(ModelError, match="'smooth' is not a backprop view"):
        guided_backprop(module, x, "layer4", 1, method="smooth")
