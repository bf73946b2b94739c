"""Receptive fields: the analytic numbers, and the same field measured with gradients."""
from __future__ import annotations

import copy
from collections import OrderedDict

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models.vgg import make_layers

from featurescope.core.errors import ModelError
from featurescope.core.models.sources.lite import EfficientNetLite0
from featurescope.core.analysis.receptive import receptive_field


@pytest.fixture(scope="module")
def vgg16():
    # Built on the meta device: the field needs the architecture, not 138 M real weights.
    with torch.device("meta"):
        return torchvision.models.vgg16(weights=None).eval()


@pytest.fixture(scope="module")
def resnet18():
    return torchvision.models.resnet18(weights=None).eval()


def test_vgg16_reference_values(vgg16):
    conv5_3 = receptive_field(vgg16, "features.28")
    assert (conv5_3.size, conv5_3.jump, conv5_3.start) == (196, 16, 7.5)
    pool5 = receptive_field(vgg16, "features.30")
    assert (pool5.size, pool5.jump, pool5.start) == (212, 32, 15.5)
    assert pool5.output_shape == (7, 7) and pool5.input_size == (224, 224)
    first = receptive_field(vgg16, "features.0")
    assert (first.size, first.jump, first.start) == (3, 1, 0)
    # A 7x7 adaptive pool on a 7x7 map changes nothing.
    assert receptive_field(vgg16, "avgpool").size == 212


def test_vgg16_boxes_are_clipped_with_exclusive_ends(vgg16):
    field = receptive_field(vgg16, "features.28")
    # Centre of (6, 6) is 7.5 + 6 * 16 = 103.5: pixels 6 .. 201.
    assert field.unclipped_box(6, 6) == (6, 6, 202, 202)
    assert field.box(6, 6) == (6, 6, 202, 202)
    assert field.unclipped_box(0, 13) == (-90, 118, 106, 314)
    assert field.box(0, 13) == (0, 118, 106, 224)
    assert field.position(103.5, 104) == (6, 6)
    assert field.position(-50, 1000) == (0, 13)
    with pytest.raises(IndexError):
        field.box(14, 0)


def test_resnet18_values(resnet18):
    expected = {
        "conv1": (7, 2, 0, (112, 112)),
        "maxpool": (11, 4, 0, (56, 56)),
        "layer1.0.conv1": (19, 4, 0, (56, 56)),
        "layer2.0.downsample.0": (43, 8, 0, (28, 28)),
        "layer2.1.conv2": (99, 8, 0, (28, 28)),
        "layer3.1.conv2": (211, 16, 0, (14, 14)),
        "layer4.1.conv2": (435, 32, 0, (7, 7)),
        # The largest path wins where the residual joins: a whole block, not the identity.
        "layer4": (435, 32, 0, (7, 7)),
    }
    for layer, (size, jump, start, shape) in expected.items():
        field = receptive_field(resnet18, layer)
        assert (field.size, field.jump, field.start, field.output_shape) == (size, jump, start, shape), layer


def test_input_size_argument_and_loaded_model_attribute(resnet18):
    assert receptive_field(resnet18, "layer2", input_size=64).output_shape == (8, 8)
    assert receptive_field(resnet18, "layer2", input_size=(64, 96)).output_shape == (8, 12)

    class Loaded:  # what a LoadedModel offers the function
        module = resnet18
        input_size = (96, 64)
        name = "resnet18"

    field = receptive_field(Loaded(), "conv1")
    assert field.input_size == (96, 64) and field.output_shape == (48, 32)


def test_non_square_kernels_give_pairs():
    net = nn.Sequential(nn.Conv2d(3, 4, (1, 5), stride=(1, 2), padding=(0, 2)))
    field = receptive_field(net, "0", input_size=16)
    assert field.size == (1, 5) and field.jump == (1, 2) and field.start == 0
    assert field.box(3, 3) == (3, 4, 4, 9)


def test_module_called_twice_and_native_same_padding():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 3, padding="same")
            self.pool = nn.MaxPool2d(2)

        def forward(self, x):
            return self.conv(self.pool(self.conv(x)))

    net = Twice()
    assert receptive_field(net, "conv", input_size=32).size == 3
    second = receptive_field(net, "conv#2", input_size=32)
    assert (second.size, second.jump, second.start, second.output_shape) == (8, 2, 0.5, (16, 16))
    with pytest.raises(ModelError, match="conv#3"):
        receptive_field(net, "conv#3", input_size=32)


def test_unknown_layer_and_non_spatial_layer(resnet18):
    with pytest.raises(ModelError, match="no layer called 'layer9'"):
        receptive_field(resnet18, "layer9")
    with pytest.raises(ModelError, match="does not output a feature map"):
        receptive_field(resnet18, "fc")


def test_data_dependent_forward_falls_back_to_a_real_pass():
    class Checks(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 2, 5, stride=2)

        def forward(self, x):
            if bool(x.abs().sum() >= 0):  # cannot be decided on the meta device
                x = self.conv(x)
            return x

    field = receptive_field(Checks(), "conv", input_size=20)
    assert (field.size, field.jump, field.start, field.output_shape) == (5, 2, 2, (8, 8))


def test_branching_and_channels_last_networks_are_followed():
    # Inception's cat, DenseNet's concatenation, ConvNeXt's permuted LayerNorm blocks.
    densenet = torchvision.models.densenet121(weights=None)
    assert receptive_field(densenet, "features.denseblock1.denselayer1.conv2").size == 19
    convnext = torchvision.models.convnext_tiny(weights=None)
    stem = receptive_field(convnext, "features.0.0")
    assert (stem.size, stem.jump, stem.start) == (4, 4, 1.5)
    # Block 1 depthwise 7x7 (jump 4), then the downsampling 2x2 conv after LayerNorm2d.
    assert receptive_field(convnext, "features.1.0.block.0").size == 4 + 6 * 4
    assert receptive_field(convnext, "features.2.1").size == 4 + 3 * 6 * 4 + 4


# --- the same fields measured: the input pixels that one output position depends on ---

class _Stop(Exception):
    pass


def _positive_copy(module: nn.Module) -> nn.Module:
    """A float64 copy whose convs average their window (all weights equal, positive) and
    whose max pools average too, so no gradient cancels or is routed to one pixel."""
    module = copy.deepcopy(module).double().eval()
    for name, child in list(module.named_modules()):
        if isinstance(child, nn.Conv2d):
            with torch.no_grad():
                child.weight.fill_(1.0 / child.weight[0].numel())
                if child.bias is not None:
                    child.bias.zero_()
        for attr, grandchild in list(child.named_children()):
            if isinstance(grandchild, nn.MaxPool2d):
                setattr(child, attr, nn.AvgPool2d(grandchild.kernel_size, grandchild.stride,
                                                  grandchild.padding, grandchild.ceil_mode))
    return module


def _measured_box(module: nn.Module, layer: str, size: int, y: int, x: int):
    image = (torch.rand(1, 3, size, size, dtype=torch.float64) + 0.5).requires_grad_(True)
    target = dict(module.named_modules())[layer]
    outputs = []

    def hook(_module, _inputs, output):
        outputs.append(output)
        raise _Stop

    handle = target.register_forward_hook(hook)
    try:
        module(image)
    except _Stop:
        pass
    finally:
        handle.remove()
    outputs[0][0, :, y, x].sum().backward()
    mask = image.grad[0].abs().sum(0) > 0
    rows = torch.nonzero(mask.any(1)).flatten()
    cols = torch.nonzero(mask.any(0)).flatten()
    y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    # The field is a full rectangle: every pixel inside it matters.
    assert int(mask.sum()) == (y1 - y0) * (x1 - x0)
    return (y0, x0, y1, x1)


@pytest.mark.parametrize("layer, size, positions", [
    ("layer1.1.conv2", 48, [(6, 6), (0, 0), (11, 5)]),
    ("layer2.1.conv2", 128, [(8, 8), (7, 9), (0, 15)]),
])
def test_resnet18_field_matches_gradients(resnet18, layer, size, positions):
    net = _positive_copy(resnet18)
    field = receptive_field(net, layer, input_size=size)
    for y, x in positions:
        assert _measured_box(net, layer, size, y, x) == field.box(y, x), (y, x)
    y0, x0, y1, x1 = field.box(*positions[0])
    assert (y1 - y0, x1 - x0) == (field.size, field.size)  # interior: not clipped


def test_vgg16_geometry_field_matches_gradients():
    # VGG16's exact layer geometry ("D") with 1/16 of the channels, so a 208 px float64
    # backward pass is cheap; the field depends on the geometry only.
    cfg = [c // 16 if isinstance(c, int) else c for c in
           [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]]
    net = _positive_copy(nn.Sequential(OrderedDict(features=make_layers(cfg))))
    for layer, size, (y, x), expected in [("features.28", 208, (6, 6), 196),
                                          ("features.16", 64, (3, 4), 44)]:
        field = receptive_field(net, layer, input_size=size)
        assert field.size == expected
        assert _measured_box(net, layer, size, y, x) == field.box(y, x)
        assert field.box(y, x) == field.unclipped_box(y, x)


def test_efficientnet_lite0_same_padding_matches_gradients():
    # TensorFlow "same" padding puts the odd pixel after the image: the stem's first
    # position is centred on pixel 1, not 0.
    net = _positive_copy(EfficientNetLite0().eval())
    stem = receptive_field(net, "stem", input_size=64)
    assert (stem.size, stem.jump, stem.start) == (3, 2, 1)
    for layer, (y, x) in [("stem", (5, 7)), ("blocks.2.depthwise", (8, 8)),
                          ("blocks.3.project", (4, 3)), ("blocks.5.depthwise", (0, 3))]:
        field = receptive_field(net, layer, input_size=64)
        assert _measured_box(net, layer, 64, y, x) == field.box(y, x), layer


@pytest.mark.parametrize("name", ["resnet18", "efficientnet_lite0"])
def test_every_captured_layer_of_a_loaded_model(name):
    from featurescope.core.models.load import load_model
    from featurescope.core.analysis.receptive import receptive_fields

    model = load_model(name, weights="none", device="cpu")
    fields = receptive_fields(model)  # one pass for all of model.layers
    assert list(fields) == model.layers
    for info in model.layer_info:
        field = fields[info.name]
        # The traced map size agrees with the capture metadata, layer by layer.
        assert field.output_shape == info.output_shape[1:], info.name
        assert field.input_size == model.input_size
    assert receptive_field(model, model.layers[-2]) == fields[model.layers[-2]]
    last_conv = [info.name for info in model.layer_info if info.kind == "Conv2d"][-1]
    assert (fields[last_conv].size, fields[last_conv].jump) == {
        "resnet18": (435, 32), "efficientnet_lite0": (851, 32)}[name]


class _CachesOnInputDevice(nn.Module):
    """Keeps a tensor made on its last input's device, as torchvision's AnchorGenerator
    keeps its anchors, plus one it made before any pass."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.scale = torch.ones(1)

    def forward(self, x):
        self.scale = self.scale.to(x.device)
        self.offset = torch.zeros(1, device=x.device)
        return self.conv(x) * self.scale + self.offset


def test_the_shapes_only_pass_leaves_no_meta_tensor_in_the_network():
    from featurescope.core.analysis.receptive import receptive_fields

    net = _CachesOnInputDevice()
    fields = receptive_fields(net, ["conv"], input_size=16)
    assert fields["conv"].size_hw == (3, 3)
    assert net.scale.device.type == "cpu" and not hasattr(net, "offset")
    assert net(torch.ones(1, 3, 16, 16)).shape == (1, 4, 14, 14)  # a real pass still runs
