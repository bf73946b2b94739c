"""Ablation, the network overview and the kernel playground, against references."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from featurescope.core.analysis.ablate import ablate, strongest_channels
from featurescope.core.analysis.overview import overview_poster, overview_tiles, tile_side
from featurescope.core.analysis.playground import (
    PRESET_NAMES, apply_kernel, grey, output_size, preset, similar_filters, size_formula,
)
from featurescope.core.capture.capture import capture
from featurescope.core.capture.sinks import ZeroChannels
from featurescope.core.errors import ModelError


class Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = self.pool(torch.relu(self.conv1(x)))
        x = torch.relu(self.conv2(x))
        return self.fc(self.gap(x).flatten(1))


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(3)
    return Small().eval(), torch.randn(1, 3, 32, 32)


def test_ablation_equals_a_network_whose_filters_are_zeroed(small):
    model, x = small
    channels = [1, 4, 6]
    reference = copy.deepcopy(model)
    with torch.no_grad():  # the same channels switched off by zeroing their weights and bias
        reference.conv1.weight[channels] = 0
        reference.conv1.bias[channels] = 0
        expected = torch.softmax(reference(x)[0].double(), 0)
    a = ablate(model, x, "conv1", channels)
    assert a.channels == channels
    for p in a.after:
        assert p.probability == pytest.approx(float(expected[p.index]), rel=1e-5)
    assert (a.result["conv1"][channels] == 0).all()  # the map shows them off
    assert not torch.allclose(a.result["conv2"], a.original["conv2"])  # the next layer changed
    assert torch.equal(a.result["conv1"][0], a.original["conv1"][0])  # the rest did not
    for c in a.changes:
        assert c.before == pytest.approx(float(torch.softmax(a.original.logits.double(), 0)[c.index]))


def test_a_plain_capture_is_untouched_by_an_earlier_ablation(small):
    model, x = small
    before = capture(model, x)
    ablate(model, x, "conv2", [0, 1, 2])
    after = capture(model, x)
    assert torch.equal(before.logits, after.logits)
    sink = ZeroChannels("conv2", [])
    same = capture(model, x, edits=[sink])
    assert sink.applied and torch.equal(same.logits, before.logits)  # nothing zeroed: same answer


def test_ablation_errors_and_strongest(small):
    model, x = small
    result = capture(model, x)
    with pytest.raises(ModelError, match="channels 0 to 7"):
        ablate(model, result, "conv1", [8])
    with pytest.raises(ModelError, match="no captured layer"):
        ablate(model, result, "conv9", [0])
    strongest = strongest_channels(result, "conv2", 3)
    means = result["conv2"].mean(dim=(1, 2))
    assert strongest == means.argsort(descending=True)[:3].tolist()


def test_overview_tiles_follow_the_network(small):
    model, x = small
    result = capture(model, x)
    tiles = overview_tiles(result)
    assert [t.layer for t in tiles] == result.layers
    for t in tiles:
        maps = result[t.layer]
        assert t.channel == int(maps.mean(dim=(1, 2)).argmax())
        assert np.array_equal(t.map, maps[t.channel].numpy())
    mean_tiles = overview_tiles(result, "mean")
    assert np.allclose(mean_tiles[0].map, result["conv1"].mean(0).numpy())
    sides = [tile_side(t.shape[1], 32) for t in tiles]
    assert sides == sorted(sides, reverse=True) and sides[0] > sides[1]  # shrinking is visible
    poster = overview_poster(result, np.zeros((32, 32, 3), np.uint8), title="small")
    assert poster.dtype == np.uint8 and poster.shape[1] == 1600 and poster.shape[2] == 3


def _brute_conv(image, kernel, stride, padding, dilation):
    padded = np.pad(image, padding)
    k = kernel.shape[0]
    span = dilation * (k - 1) + 1
    rows = range(0, padded.shape[0] - span + 1, stride)
    cols = range(0, padded.shape[1] - span + 1, stride)
    out = np.zeros((len(rows), len(cols)))
    for a, r in enumerate(rows):
        for b, c in enumerate(cols):
            out[a, b] = sum(padded[r + i * dilation, c + j * dilation] * kernel[i, j]
                            for i in range(k) for j in range(k))
    return out


@pytest.mark.parametrize("stride,padding,dilation,size", [(1, 0, 1, 3), (2, 1, 1, 3), (1, 2, 2, 5), (3, 1, 1, 5)])
def test_playground_convolution_matches_a_loop(stride, padding, dilation, size):
    rng = np.random.default_rng(0)
    image = rng.random((17, 14))
    kernel = preset("Sobel x", size)
    out = apply_kernel(image, kernel, stride, padding, dilation, pool="max", pool_size=2, pool_stride=2)
    expected = _brute_conv(image, kernel, stride, padding, dilation)
    assert np.allclose(out.convolved, expected)
    assert out.convolved.shape[0] == output_size(17, size, stride, padding, dilation)
    assert out.conv_formula.endswith(f"= {out.convolved.shape[0]}")
    h, w = expected.shape
    pooled = expected[: h // 2 * 2, : w // 2 * 2].reshape(h // 2, 2, w // 2, 2).max(axis=(1, 3))
    assert np.allclose(out.pooled, pooled)


def test_presets_and_formula():
    for name in PRESET_NAMES:
        for size in (3, 5):
            k = preset(name, size)
            assert k.shape == (size, size)
    assert preset("Box blur", 5).sum() == pytest.approx(1) and preset("Gaussian blur", 5).sum() == pytest.approx(1)
    assert np.allclose(preset("Sobel y"), preset("Sobel x").T)
    image = np.random.default_rng(1).random((9, 9))
    assert np.allclose(apply_kernel(image, preset("Identity"), padding=1).convolved, image)
    assert size_formula(224, 3, 2, 1) == "floor((224 + 2x1 - 1x(3 - 1) - 1) / 2) + 1 = 112"
    with pytest.raises(ModelError, match="does not fit"):
        apply_kernel(image, preset("Sobel x", 5), dilation=3)
    assert grey(np.full((2, 2, 3), 255, np.uint8)) == pytest.approx(np.ones((2, 2)))


def test_the_planted_edge_detector_is_found(small):
    model, _x = small
    planted = copy.deepcopy(model)
    sobel = torch.as_tensor(preset("Sobel x"), dtype=torch.float32)
    with torch.no_grad():
        planted.conv1.weight[5] = -sobel / 3  # the same edge detector, sign flipped, over RGB
    found = similar_filters(planted, preset("Sobel x"), top=3)
    assert found[0].layer == "conv1" and found[0].channel == 5
    assert found[0].similarity == pytest.approx(-1.0)
    assert all(abs(f.similarity) <= abs(found[0].similarity) + 1e-9 for f in found)
    resampled = similar_filters(planted, preset("Sobel x", 5), top=1)  # 5x5 against 3x3 filters
    assert resampled[0].channel == 5


def test_the_overview_names_a_one_channel_input_grey_not_rgb():
    from featurescope.core.analysis import overview

    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2)).eval()
    result = capture(net, torch.rand(1, 1, 28, 28))
    labels = []
    real = overview.input_label
    overview.input_label = lambda *a: labels.append(real(*a)) or labels[-1]
    try:
        overview_poster(result, np.zeros((28, 28, 3), np.uint8))
    finally:
        overview.input_label = real
    assert labels == ["28x28 grey"]
    assert real(3, 224, 224) == "224x224 RGB" and real(4, 64, 64) == "64x64, 4 channels"
