"""Batches and sinks: capture_batch against torchvision's feature extractor, the top-k
reducer against a brute-force loop over images, transposed convolutions, sinks."""
from __future__ import annotations

import copy
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torchvision
import torchvision.models.feature_extraction as tv_fx
from PIL import Image
from torch import nn

import featurescope as fs
from featurescope.core.analysis.explain import explain_layer
from featurescope.core.capture.capture import capture, capture_batch, capture_into, describe_layers
from featurescope.core.capture.sinks import TopKReducer
from featurescope.core.errors import ImageError, ModelError


def _feature_extractor(model, nodes):
    twin = copy.deepcopy(model)
    for module in twin.modules():
        if getattr(module, "inplace", False) is True:
            module.inplace = False  # the extractor returns live tensors
    return tv_fx.create_feature_extractor(twin, return_nodes=list(nodes))


def test_capture_batch_equals_torchvision_feature_extractor_and_single_captures():
    model = torchvision.models.resnet18(weights=None).eval()
    x = torch.randn(3, 3, 48, 48)
    batch = fs.capture_batch(model, x)
    assert list(batch) == batch.layers and len(batch.layers) == 22
    with torch.no_grad():
        reference = _feature_extractor(model, batch.layers)(x)
        logits = model(x)
    for name in batch.layers:
        got = batch[name]
        assert got.dtype == torch.float32 and got.device.type == "cpu"
        assert got.shape == reference[name].shape and got.shape[0] == 3
        torch.testing.assert_close(got, reference[name], rtol=1e-4, atol=1e-5)
        assert batch.info[name].output_shape == tuple(got.shape[1:])
    torch.testing.assert_close(batch.logits, logits, rtol=1e-4, atol=1e-5)
    # the same numbers as capturing each image on its own
    single = capture(model, x[1:2])
    for name in batch.layers:
        torch.testing.assert_close(batch[name][1], single[name], rtol=1e-4, atol=1e-5)
    assert batch.info == single.info


def test_capture_batch_of_images_layers_and_errors():
    module = torchvision.models.squeezenet1_1(weights=None, num_classes=4).eval()

    def preprocess(image):
        data = torch.from_numpy(np.asarray(image, dtype=np.float32).copy())
        return (data.permute(2, 0, 1) / 255.0).unsqueeze(0)

    loaded = SimpleNamespace(module=module, device=torch.device("cpu"), preprocess=preprocess,
                             categories=None, name="squeeze", layers=None)
    images = [Image.new("RGB", (40, 32), (200, 30 * i, 90)) for i in range(4)]
    batch = capture_batch(loaded, images, layers=["features.3.expand1x1", "features.0"])
    assert batch.layers == ["features.0", "features.3.expand1x1"]  # network order
    assert batch.logits is None  # stopped after the last wanted layer
    assert batch.input.shape == (4, 3, 32, 40)
    for i, image in enumerate(images):
        one = capture(loaded, image)
        torch.testing.assert_close(batch["features.0"][i], one["features.0"], rtol=1e-4, atol=1e-5)
    with pytest.raises(ModelError, match="no captured layer named 'nope'"):
        capture_batch(loaded, images, layers=["nope"])
    with pytest.raises(ImageError, match="different sizes"):
        capture_batch(loaded, [images[0], Image.new("RGB", (8, 8))])
    with pytest.raises(ImageError, match=r"\(N, C, H, W\)"):
        capture_batch(module, torch.zeros(3, 8, 8))
    with pytest.raises(ImageError, match="PIL images"):
        capture_batch(loaded, ["cat.jpg"])


def test_top_k_reducer_equals_a_brute_force_loop_over_images():
    torch.manual_seed(4)
    model = nn.Sequential(nn.Conv2d(3, 5, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
                          nn.Conv2d(5, 6, 3), nn.AdaptiveAvgPool2d(2)).eval()
    images = torch.randn(11, 3, 16, 16)
    k = 3
    reducer = TopKReducer(k)
    for start in range(0, len(images), 4):  # batches of 4, 4, 3
        infos = capture_into(model, images[start:start + 4], [reducer])
    assert [i.name for i in infos] == ["0", "2", "3", "4"]
    for name in ("0", "2", "3", "4"):
        # brute force: every image on its own, every channel's spatial maximum
        maxima = torch.stack([capture(model, image[None])[name].flatten(1).amax(1) for image in images])
        values, indices = reducer.result(name)
        assert values.shape == indices.shape == (maxima.shape[1], k)
        for channel in range(maxima.shape[1]):
            order = sorted(range(len(images)), key=lambda i: -float(maxima[i, channel]))[:k]
            assert indices[channel].tolist() == order, (name, channel)
            torch.testing.assert_close(values[channel], maxima[order, channel], rtol=1e-5, atol=1e-6)
    only = TopKReducer(2, layers=["3"])
    capture_into(model, images[:5], [only], layers=["3"])
    assert set(only.best) == {"3"} and only.result("3")[1].shape == (6, 2)
    with pytest.raises(ValueError):
        TopKReducer(0)


class _AutoEncoder(nn.Module):
    def __init__(self, output_padding: int = 1, dilation: int = 1):
        super().__init__()
        self.encode = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.up1 = nn.ConvTranspose2d(4, 4, 2, stride=2)
        self.up2 = nn.ConvTranspose2d(4, 3, 3, stride=2, padding=1, output_padding=output_padding,
                                      dilation=dilation)
        self.smooth = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x):
        x = self.pool(torch.relu(self.encode(x)))
        return torch.sigmoid(self.smooth(self.up2(torch.relu(self.up1(x)))))


def test_transposed_convolutions_are_captured_like_torchvision_sees_them():
    model = _AutoEncoder().eval()
    x = torch.randn(2, 3, 16, 16)
    batch = capture_batch(model, x)
    assert batch.layers == ["encode", "pool", "up1", "up2", "smooth"]
    with torch.no_grad():
        reference = _feature_extractor(model, batch.layers)(x)
    for name in batch.layers:
        torch.testing.assert_close(batch[name], reference[name], rtol=1e-5, atol=1e-6)
    up2 = batch.info["up2"]
    assert (up2.kind, up2.in_channels, up2.out_channels, up2.kernel_size, up2.stride, up2.padding) == \
        ("ConvTranspose2d", 4, 3, (3, 3), (2, 2), (1, 1))
    assert up2.parameters == 4 * 3 * 9 + 3 and up2.output_shape == (3, 16, 16)


@pytest.mark.parametrize("output_padding, dilation", [(1, 1), (0, 1), (1, 2)])
def test_transposed_convolution_output_size_formula(output_padding, dilation):
    model = _AutoEncoder(output_padding, dilation).eval()
    info = next(i for i in describe_layers(model, (1, 3, 20, 20)) if i.name == "up2")
    formula = explain_layer(info).formulas[0]
    assert formula.axis == "H and W" and formula.size_out == info.output_shape[1]
    # the formula with the module's own numbers gives the real output size
    size_in, expected = info.input_shape[1], info.output_shape[1]
    assert (size_in - 1) * 2 - 2 * 1 + dilation * (3 - 1) + output_padding + 1 == expected
    assert formula.text == (f"out = ({size_in}-1)*2 - 2*1 + {dilation}*(3-1) + {output_padding} + 1 = "
                            f"{expected}" + (" (output_padding 1)" if output_padding else ""))
    assert explain_layer(info).title.startswith("up2: transposed convolution 4 -> 3 channels")


def test_receptive_fields_of_transposed_convolutions_are_refused_in_a_sentence():
    from featurescope.core.analysis.receptive import receptive_field

    model = _AutoEncoder().eval()
    assert receptive_field(model, "pool", input_size=16).size == 3 + 2 * 1  # before: known
    with pytest.raises(ModelError, match="^'up1' in _AutoEncoder is a transposed convolution"):
        receptive_field(model, "up1", input_size=16)
    with pytest.raises(ModelError, match="^'smooth' in _AutoEncoder comes after an operation"):
        receptive_field(model, "smooth", input_size=16)
