"""EfficientNet-Lite0 with its embedded weights recognises the bundled photos."""
from __future__ import annotations

import pytest
import torch
from PIL import Image

from featurescope.core.models.sources import lite
from featurescope.core.resources import resource_path

CAT_CLASSES = {"Egyptian cat", "tabby", "tiger cat"}


def reference_preprocess(image) -> torch.Tensor:
    """The reference TensorFlow evaluation's steps, written out: shorter side to 256 px
    (bicubic, antialiased), 224 x 224 centre crop, scaled to [-1, 1]."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as TF

    image = TF.resize(image.convert("RGB"), 256, interpolation=InterpolationMode.BICUBIC, antialias=True)
    image = TF.center_crop(image, 224)
    tensor = TF.convert_image_dtype(TF.pil_to_tensor(image), torch.float32)
    return TF.normalize(tensor, (0.5,) * 3, (0.5,) * 3).unsqueeze(0)


@pytest.fixture(scope="module")
def model():
    net = lite.EfficientNetLite0()
    state = torch.load(lite.weights_file(), weights_only=True, map_location="cpu")
    net.load_state_dict(lite.convert_state_dict(state))
    return net.eval()


@pytest.fixture(scope="module")
def categories():
    import torchvision

    return torchvision.models.ResNet50_Weights.DEFAULT.meta["categories"]


def _top(model, categories, filename, k=3):
    x = reference_preprocess(Image.open(resource_path("samples", filename)))
    assert x.shape == (1, 3, 224, 224) and x.dtype == torch.float32
    with torch.inference_mode():
        probabilities = model(x).softmax(1)[0]
    values, indices = probabilities.topk(k)
    return [(categories[i], float(p)) for p, i in zip(values, indices)]


def test_cat_photo_is_a_cat(model, categories):
    top = _top(model, categories, "chelsea.png")
    assert top[0][0] in CAT_CLASSES
    # All three cat classes lead: the network has really learnt cats, not a lucky guess.
    assert {label for label, _ in top} == CAT_CLASSES


def test_coffee_photo_is_espresso(model, categories):
    label, probability = _top(model, categories, "coffee.png")[0]
    assert label == "espresso"
    assert probability > 0.6


def test_rocket_photo_is_a_missile(model, categories):
    assert _top(model, categories, "rocket.jpg")[0][0] == "missile"


def test_embedded_state_dict_maps_onto_every_parameter():
    state = torch.load(lite.weights_file(), weights_only=True, map_location="cpu")
    converted = lite.convert_state_dict(state)
    expected = lite.EfficientNetLite0().state_dict()
    assert set(converted) == set(expected)
    assert all(converted[k].shape == expected[k].shape for k in expected)
    # Our own names convert to themselves.
    assert lite.convert_state_dict(expected).keys() == expected.keys()


def test_architecture_is_lite0():
    net = lite.EfficientNetLite0()
    assert len(net.blocks) == 16
    assert not hasattr(net.blocks[0], "expand")  # expand ratio 1
    assert net.blocks[1].expand.out_channels == 96
    assert net.blocks[2].depthwise.kernel_size == (3, 3)
    assert net.blocks[3].depthwise.kernel_size == (5, 5)
    assert all(bn.eps == 1e-3 for bn in net.modules() if isinstance(bn, torch.nn.BatchNorm2d))
    assert not any(isinstance(m, (torch.nn.SiLU, torch.nn.Sigmoid)) for m in net.modules())
    assert sum(p.numel() for p in net.parameters()) == 4_652_008
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(getattr(m, "same_padding", False) for m in convs)


@pytest.mark.parametrize("size, kernel, stride, expected", [
    (224, 3, 2, 112), (225, 3, 2, 113), (112, 5, 2, 56), (7, 3, 1, 7), (15, 5, 2, 8),
])
def test_same_padding_output_size_is_ceil_of_input_over_stride(size, kernel, stride, expected):
    conv = lite.SameConv2d(1, 1, kernel, stride=stride)
    assert conv(torch.zeros(1, 1, size, size)).shape[-1] == expected


def test_same_padding_puts_the_extra_pixel_bottom_right_like_tensorflow():
    # 4 px input, kernel 3, stride 2: TensorFlow pads 0 on top/left and 1 bottom/right.
    conv = lite.SameConv2d(1, 1, 3, stride=2)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, 0, 0] = 1.0  # picks the top-left pixel of each window
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    out = conv(x)[0, 0]
    assert out.tolist() == [[0.0, 2.0], [8.0, 10.0]]
