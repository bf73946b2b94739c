"""Grad-CAM against the independent grad-cam package (pytorch_grad_cam)."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from featurescope.core.errors import ModelError
from featurescope.core.analysis.gradcam import compute_grad_cam, grad_cam, grad_cam_layer, overlay
from featurescope.core.io.images import load_image
from featurescope.core.models.load import load_model
from featurescope.core.resources import default_sample

pytorch_grad_cam = pytest.importorskip("pytorch_grad_cam")
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402


def reference(module, layer, x, target=None):
    targets = None if target is None else [ClassifierOutputTarget(target)]
    with pytorch_grad_cam.GradCAM(model=module, target_layers=[dict(module.named_modules())[layer]]) as cam:
        return cam(input_tensor=x, targets=targets)[0]


def assert_same_map(ours, theirs):
    assert ours.shape == theirs.shape and ours.dtype == np.float32
    assert np.abs(ours - theirs).max() < 1e-4
    assert np.corrcoef(ours.ravel(), theirs.ravel())[0, 1] > 0.9999


@pytest.fixture(scope="module")
def lite():
    return load_model("efficientnet_lite0", device="cpu")


@pytest.fixture(scope="module")
def cat(lite):
    return load_image(default_sample())


def test_resnet18_random_weights_matches_reference():
    torch.manual_seed(1)
    module = torchvision.models.resnet18(weights=None).eval()
    x = torch.randn(1, 3, 96, 96)
    for layer in ("layer4.1.conv2", "layer3", "layer2.0.conv1"):
        result = compute_grad_cam(module, x, layer)
        assert result.target == int(module(x).argmax())
        assert result.label is None  # a plain module has no categories
        assert_same_map(result.map, reference(module, layer, x))
        assert result.layer_map.shape == {"layer4.1.conv2": (3, 3), "layer3": (6, 6),
                                          "layer2.0.conv1": (12, 12)}[layer]
    assert_same_map(grad_cam(module, x, "layer4", target=7), reference(module, "layer4", x, 7))


def test_efficientnet_lite0_cat_matches_reference(lite, cat):
    result = compute_grad_cam(lite, cat, "head")
    # The pretrained default model explains its own top class for the cat photo.
    assert result.label in {"tabby", "tiger cat", "Egyptian cat"}
    assert result.target == lite.categories.index(result.label)
    x = lite.preprocess(cat)
    assert result.map.shape == (224, 224)
    assert result.map.min() == 0.0 and 0.999 < result.map.max() <= 1.0
    assert_same_map(result.map, reference(lite.module, "head", x))
    # Another layer and a chosen class (285 = Egyptian cat).
    chosen = compute_grad_cam(lite, cat, "blocks.10.depthwise", target=285)
    assert (chosen.target, chosen.label) == (285, "Egyptian cat")
    assert_same_map(chosen.map, reference(lite.module, "blocks.10.depthwise", x, 285))


def test_in_place_relu_after_the_conv_does_not_change_the_map():
    # SqueezeNet's ReLUs are in place, right after each conv: the map must use the conv's
    # own output. The reference runs on a copy with ordinary ReLUs.
    torch.manual_seed(2)
    module = torchvision.models.squeezenet1_1(weights=None).eval()
    plain = copy.deepcopy(module)
    for child in plain.modules():
        if isinstance(child, nn.ReLU):
            child.inplace = False
    x = torch.randn(1, 3, 96, 96)
    for layer in ("features.12.expand3x3", "features.9.expand3x3"):
        ours = grad_cam(module, x, layer)
        assert ours.max() > 0.99
        assert_same_map(ours, reference(plain, layer, x))


def test_works_inside_inference_mode_and_leaves_the_model_alone():
    module = torchvision.models.resnet18(weights=None)
    module.train()
    for parameter in module.parameters():
        parameter.requires_grad_(False)  # frozen weights still give a map
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        inference_input = torch.randn(1, 3, 64, 64)
        cam = grad_cam(module, inference_input, "layer3")
    assert cam.shape == (64, 64) and cam.max() > 0.99
    assert module.training  # mode restored
    assert all(p.grad is None for p in module.parameters())
    module.eval()
    ours = grad_cam(module, x, "layer3")
    for parameter in module.parameters():
        parameter.requires_grad_(True)  # the reference needs them
    assert_same_map(ours, reference(module, "layer3", x))


def test_second_call_of_a_reused_module():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 3, padding=1)
            self.head = nn.Linear(3, 4)

        def forward(self, x):
            x = torch.relu(self.conv(torch.relu(self.conv(x))))
            return self.head(x.mean(dim=(2, 3)))

    torch.manual_seed(3)
    net = Twice().eval()
    x = torch.randn(1, 3, 16, 16)
    first, second = (compute_grad_cam(net, x, name, target=1) for name in ("conv", "conv#2"))
    assert first.map.shape == second.map.shape == (16, 16)
    assert not np.allclose(first.map, second.map)
    with pytest.raises(ModelError, match="conv#3"):
        grad_cam(net, x, "conv#3")


def test_user_errors(lite, cat):
    with pytest.raises(ModelError, match="no layer called 'nope'"):
        grad_cam(lite, cat, "nope")
    with pytest.raises(ModelError, match="class 1000 does not exist"):
        grad_cam(lite, cat, "head", target=1000)
    with pytest.raises(ModelError, match="does not output a feature map"):
        grad_cam(lite, cat, "classifier")


def test_overlay_blends_the_colormap():
    from featurescope.core.render.grids import colormap_lut

    rgb = np.full((2, 3, 3), 100, dtype=np.uint8)
    cam = np.array([[0.0, 0.5, 1.0], [1.0, 1.0, np.nan]], dtype=np.float32)
    out = overlay(rgb, cam, colormap="gray", alpha=1.0)
    lut = colormap_lut("gray")
    assert out.dtype == np.uint8 and out.shape == (2, 3, 3)
    assert (out[0, 0] == lut[1]).all() and (out[0, 2] == lut[255]).all()
    assert (out[1, 2] == lut[1]).all()  # NaN counts as 0
    half = overlay(rgb, cam, colormap="gray", alpha=0.5)
    assert (half[0, 2] == np.round(0.5 * 100 + 0.5 * lut[255].astype(float))).all()
    with pytest.raises(ValueError):
        overlay(rgb, cam[:, :2])


class _DictOut(nn.Module):
    """Like a detector: the forward returns a dict, not class scores."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        features = self.conv(x)
        return {"boxes": features.mean(dim=(2, 3)), "features": features}


def test_a_model_without_class_scores_gets_a_sentence():
    net = _DictOut().eval()
    x = torch.randn(1, 3, 16, 16)
    with pytest.raises(ModelError, match="^Grad-CAM needs a model that outputs class scores; "
                                         "_DictOut returns a dict.$"):
        grad_cam(net, x, "conv")
    segmenter = nn.Sequential(nn.Conv2d(3, 5, 3, padding=1)).eval()  # (1, 5, H, W) scores per pixel
    with pytest.raises(ModelError, match=r"returns a tensor of shape \(1, 5, 16, 16\)"):
        grad_cam(segmenter, x, "0")


def test_lazy_modules_initialised_by_describe_layers_still_give_grad_cam():
    from featurescope.core.capture.capture import capture, describe_layers

    torch.manual_seed(6)
    net = nn.Sequential(nn.LazyConv2d(6, 3, padding=1), nn.ReLU(), nn.LazyConv2d(8, 3), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.LazyLinear(5)).eval()
    x = torch.randn(1, 3, 24, 24)
    # what loading a model does first: describe its layers (under inference_mode)
    assert [info.name for info in describe_layers(net, (1, 3, 24, 24))] == ["0", "2", "4"]
    assert not any(p.is_inference() for p in net.parameters())
    capture(net, x)
    ours = compute_grad_cam(net, x, "2")
    assert_same_map(ours.map, reference(net, "2", x))


def test_one_rule_for_the_grad_cam_layer():
    from featurescope.core.capture.capture import describe_layers

    torch.manual_seed(0)
    module = torchvision.models.resnet18(weights=None).eval()
    infos = describe_layers(module, (1, 3, 64, 64))
    convs = [i.name for i in infos if i.kind == "Conv2d"]
    assert grad_cam_layer(infos) == (convs[-1], "") == ("layer4.1.conv2", "")
    assert grad_cam_layer(infos, "layer2.0.conv1") == ("layer2.0.conv1", "")
    layer, note = grad_cam_layer(infos, "maxpool", "resnet18")
    assert layer == "conv1" and note == ("Grad-CAM reads a convolution's gradients; maxpool is a "
                                         "MaxPool2d layer, so it is read at the nearest convolution "
                                         "before it, conv1.")
    assert grad_cam_layer(infos, "avgpool")[0] == "layer4.1.conv2"
    with pytest.raises(ModelError, match="^resnet18 has no layer called 'conv9'"):
        grad_cam_layer(infos, "conv9", "resnet18")
    pool_first = [i for i in infos if i.name != "conv1"]
    with pytest.raises(ModelError, match="maxpool is a MaxPool2d layer with no convolution before it"):
        grad_cam_layer(pool_first, "maxpool")
    with pytest.raises(ModelError, match="^net has no convolution layer"):
        grad_cam_layer([i for i in infos if i.kind != "Conv2d"], None, "net")
