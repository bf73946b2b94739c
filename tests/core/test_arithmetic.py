"""The arithmetic at a position: recomputed by hand, it equals what the layer computed."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from featurescope.core.analysis.arithmetic import describe_steps, explain_position
from featurescope.core.capture.capture import capture
from featurescope.core.errors import ModelError
from featurescope.core.models.sources.lite import EfficientNetLite0, SameConv2d

# The even-kernel "same" case is tested on purpose; torch warns that it pads a copy.
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")


class Zoo(nn.Module):
    """One of each: stride 2, PyTorch 'same', TF 'same', dilation, groups, depthwise, pools."""

    def __init__(self):
        super().__init__()
        self.stride2 = nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=True)
        self.same = nn.Conv2d(8, 8, 4, padding="same", bias=True)  # even kernel: extra pad after
        self.tf_same = SameConv2d(8, 8, 3, stride=2, bias=True)
        self.dilated = nn.Conv2d(8, 12, 3, padding=2, dilation=2, bias=True)
        self.grouped = nn.Conv2d(12, 8, 3, padding=1, groups=4, bias=True)
        self.depthwise = nn.Conv2d(8, 8, 5, padding=2, groups=8, bias=False)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True)
        self.avgpool = nn.AvgPool2d(3, stride=2, padding=1)
        self.avg_nopad = nn.AvgPool2d(2, stride=2, padding=1, count_include_pad=False)
        self.adaptive = nn.AdaptiveAvgPool2d((3, 2))
        self.head = nn.Linear(8 * 3 * 2, 5)

    def forward(self, x):
        x = torch.relu(self.stride2(x))
        x = self.same(x)
        x = self.tf_same(x)
        x = self.dilated(x)
        x = self.grouped(x)
        x = self.depthwise(x)
        x = self.maxpool(x)
        x = self.avgpool(x)
        x = self.avg_nopad(x)
        return self.head(self.adaptive(x).flatten(1))


@pytest.fixture(scope="module")
def zoo():
    torch.manual_seed(1)
    model = Zoo().eval()
    x = torch.randn(1, 3, 45, 38)
    return model, capture(model, x)


def _positions(shape):
    c, h, w = shape
    return [(0, 0, 0), (c - 1, h - 1, w - 1), (c // 2, h // 2, w - 1), (c - 1, 0, w // 2)]


@pytest.mark.parametrize("layer", ["stride2", "same", "tf_same", "dilated", "grouped", "depthwise",
                                   "maxpool", "avgpool", "avg_nopad", "adaptive"])
def test_recomputed_value_equals_captured(zoo, layer):
    model, result = zoo
    for c, y, x in _positions(result[layer].shape):
        e = explain_position(model, result, layer, c, y, x)
        expected = float(result[layer][c, y, x])  # what the network computed
        assert e.captured == pytest.approx(expected)
        assert e.value == pytest.approx(expected, rel=1e-4, abs=1e-5), (layer, c, y, x)
        assert e.matches


def test_conv_window_is_products_sum_plus_bias(zoo):
    model, result = zoo
    e = explain_position(model, result, "stride2", 5, 0, 3)
    assert e.operation == "convolution" and e.input_channels == [0, 1, 2]
    assert e.rows == [-1, 0, 1] and e.cols == [5, 6, 7]  # 0*2-1 and 3*2-1
    assert e.padded[0].all() and not e.padded[1:].any()  # the top row hangs over the padding
    assert (e.window[:, 0, :] == 0).all()
    assert np.allclose(e.products, e.window * e.kernel)
    assert np.allclose(e.kernel, model.stride2.weight[5].detach().numpy())
    assert e.bias == pytest.approx(float(model.stride2.bias[5].detach()))
    assert e.value == pytest.approx(e.products.sum() + e.bias)
    # the window is the real input (the network's input here) where it is inside
    assert np.allclose(e.window[:, 1:, :], result.input[0, :, 0:2, 5:8].numpy(), atol=1e-6)


def test_stride_and_dilation_move_the_window(zoo):
    model, result = zoo
    a = explain_position(model, result, "dilated", 0, 4, 4)
    b = explain_position(model, result, "dilated", 0, 4, 5)
    assert a.rows == [2, 4, 6] and a.cols == [2, 4, 6]  # 4 - 2 + 2i: dilation 2 spreads it
    assert b.cols == [3, 5, 7]  # stride 1: one step right
    s = explain_position(model, result, "stride2", 0, 3, 3)
    assert s.rows == [5, 6, 7]  # stride 2: 3*2 - 1


def test_tf_same_padding_puts_the_extra_pixel_after(zoo):
    model, result = zoo
    height = result.info["tf_same"].input_shape[1]  # 23: total padding 2 -> 1 before, 1 after
    width = result.info["tf_same"].input_shape[2]  # 19
    e = explain_position(model, result, "tf_same", 0, 0, 0)
    total_h = max((-(-height // 2) - 1) * 2 + 3 - height, 0)
    assert e.padding[0] == total_h // 2 and e.padding[2] == total_h - total_h // 2
    last = explain_position(model, result, "tf_same", 0, *[s - 1 for s in result["tf_same"].shape[1:]])
    assert last.rows[-1] <= height and last.cols[-1] <= width


def test_groups_and_depthwise_read_their_own_channels(zoo):
    model, result = zoo
    assert explain_position(model, result, "grouped", 5, 1, 1).input_channels == [6, 7, 8]  # group 2 of 4
    assert explain_position(model, result, "grouped", 0, 1, 1).input_channels == [0, 1, 2]
    assert explain_position(model, result, "depthwise", 6, 1, 1).input_channels == [6]


def test_max_pooling_names_the_winner(zoo):
    model, result = zoo
    e = explain_position(model, result, "maxpool", 2, 1, 1)
    assert e.operation == "max" and e.kernel is None
    c, i, j = e.winner
    assert e.value == e.window[c, i, j] == pytest.approx(float(np.nanmax(e.window)))
    assert e.value == pytest.approx(float(result["maxpool"][2, 1, 1]))
    assert "maximum" in " ".join(describe_steps(e))


def test_average_pooling_divides_by_the_counted_cells(zoo):
    model, result = zoo
    corner = explain_position(model, result, "avgpool", 0, 0, 0)
    assert corner.divisor == 9 and corner.padded.sum() == 5  # padding counts (count_include_pad)
    nopad = explain_position(model, result, "avg_nopad", 0, 0, 0)
    assert nopad.divisor == 1  # one real cell in the 2x2 window at the corner
    assert corner.value == pytest.approx(corner.total / 9)


def test_lite0_stem_and_depthwise_match_the_capture():
    torch.manual_seed(0)
    module = EfficientNetLite0().eval()
    x = torch.randn(1, 3, 64, 64)
    result = capture(module, x)
    for layer, c, y, x_ in [("stem", 3, 31, 31), ("blocks.1.depthwise", 5, 15, 0), ("blocks.0.project", 2, 4, 9)]:
        e = explain_position(module, result, layer, c, y, x_)
        assert e.matches, (layer, e.value, e.captured)
    assert explain_position(module, result, "stem", 0, 31, 31).padded[-1].all()  # bottom row: TF pads after


def test_json_ready_and_user_errors(zoo):
    import json

    model, result = zoo
    e = explain_position(model, result, "maxpool", 0, 0, 0)
    data = json.loads(json.dumps(e.as_dict()))  # -inf padding becomes null, not -Infinity
    assert data["value"] == pytest.approx(e.value) and data["matches"] is True
    with pytest.raises(ModelError, match="channels 0 to 7"):
        explain_position(model, result, "stride2", 8, 0, 0)
    with pytest.raises(ModelError, match="outside"):
        explain_position(model, result, "stride2", 0, 99, 0)
    with pytest.raises(ModelError, match="no captured layer"):
        explain_position(model, result, "nope", 0, 0, 0)


def test_a_float16_capture_is_compared_with_the_float32_value(zoo):
    model, result = zoo
    compact = capture(model, result.input, store_dtype=torch.float16)
    e = explain_position(model, compact, "dilated", 3, 5, 5)
    assert e.matches and e.captured == pytest.approx(float(result["dilated"][3, 5, 5]), rel=1e-6)
    assert any("float16" in note for note in e.notes)


def test_a_fractional_position_or_channel_is_refused_not_cut(zoo):
    model, result = zoo
    for args in ((0, 1.5, 2), (0, 1, 2.0), (0.5, 1, 2), (True, 1, 2)):
        with pytest.raises(ModelError, match="whole number"):
            explain_position(model, result, "stride2", *args)
    explain_position(model, result, "stride2", np.int64(0), np.int32(1), 2)  # numpy ints are whole


def test_every_pooling_kind_is_captured_explained_and_recomputed():
    from featurescope.core.analysis.explain import explain_layer
    from featurescope.core.capture.layers import POOL_TYPES

    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.MaxPool2d(2), nn.AvgPool2d(2, padding=1),
                        nn.AdaptiveMaxPool2d((4, 3)), nn.AdaptiveAvgPool2d(2)).eval()
    result = capture(net, torch.randn(1, 3, 30, 26))
    pools = {info.kind: name for name, info in result.info.items() if info.kind != "Conv2d"}
    assert sorted(pools) == sorted(POOL_TYPES)  # one set of pooling kinds, all captured
    for kind, layer in pools.items():
        assert "pooling" in explain_layer(result.info[layer]).title, kind
        for c, y, x in _positions(result[layer].shape):
            e = explain_position(net, result, layer, c, y, x)
            assert e.matches, (kind, c, y, x)
