"""The arithmetic at one position of a feature map: which input numbers, which kernel,
which products, which sum.

:func:`explain_position` recomputes one output value of a convolution or pooling layer
by hand (numpy, no torch op that does the layer's job) from the layer's real input
(captured with :class:`~featurescope.core.capture.sinks.InputSink`) and its weights,
and hands back every intermediate number, so a student can check that a convolution
is "multiply element-wise and sum" and a max pooling is "take the largest". The
padding is the one the layer really applied: PyTorch's symmetric padding, PyTorch's
``padding="same"``, or TensorFlow's asymmetric "same" (EfficientNet-Lite0's
SameConv2d, timm's Conv2dSame), extra pixel at the bottom/right.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from featurescope.core.capture.layers import POOL_TYPES, pair
from featurescope.core.errors import ModelError

# The layers whose arithmetic is shown: convolutions (not transposed) and every pooling.
ARITHMETIC_TYPES = ("Conv2d",) + POOL_TYPES


@dataclass
class PositionExplanation:
    """How output ``value`` of ``layer``, channel ``channel``, position (y, x) was made.

    ``operation``: "convolution", "max" or "average". ``input_channels``: the input
    channels the window reads (one group; one channel for depthwise and pooling).
    ``window``: (C_in_group, kh, kw) the input numbers under the kernel, zeros (or what
    the pooling padding counts as) where it hangs over the border; ``padded``: (kh, kw)
    True there. ``rows`` / ``cols``: the input row of each kernel row and the input
    column of each kernel column (outside 0..H-1 / 0..W-1 in the padding), which show
    stride and dilation. ``kernel``, ``products``: same shape as ``window`` (conv only;
    for average pooling ``products`` is None). ``total``: the sum of the products (conv)
    or of the window (average). ``bias`` (0 without one). ``divisor`` (average pooling).
    ``winner``: the (c, i, j) index of the maximum (max pooling). ``value``: the
    recomputed output; ``captured``: the value the capture stored.
    """

    layer: str
    kind: str
    operation: str
    channel: int
    y: int
    x: int
    input_channels: list[int]
    window: np.ndarray
    padded: np.ndarray
    rows: list[int]
    cols: list[int]
    input_shape: tuple[int, int, int]
    output_shape: tuple[int, int, int]
    kernel_size: tuple[int, int]
    stride: tuple[int, int]
    dilation: tuple[int, int]
    padding: tuple[int, int, int, int]  # top, left, bottom, right
    groups: int
    value: float
    captured: float
    kernel: Optional[np.ndarray] = None
    products: Optional[np.ndarray] = None
    total: float = 0.0
    bias: float = 0.0
    divisor: int = 1
    winner: Optional[tuple[int, int, int]] = None
    notes: list[str] = field(default_factory=list)

    @property
    def matches(self) -> bool:
        """True when the recomputed value equals the captured one (1e-4 relative)."""
        return math.isclose(self.value, self.captured, rel_tol=1e-4, abs_tol=1e-4)

    def as_dict(self) -> dict:
        """Plain JSON-ready data (lists of numbers)."""
        out = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if isinstance(value, np.ndarray):
                # max pooling pads with -inf, which JSON cannot hold: null there
                value = np.where(np.isfinite(value), value, np.nan).tolist() \
                    if value.dtype.kind == "f" else value.tolist()
                value = _nan_to_none(value)
            elif isinstance(value, tuple):
                value = list(value)
            out[name] = value
        out["matches"] = self.matches
        return out


def _nan_to_none(value):
    if isinstance(value, list):
        return [_nan_to_none(v) for v in value]
    return None if isinstance(value, float) and math.isnan(value) else value


def _tf_same(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    total = max((math.ceil(size / stride) - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def conv_padding(module, input_hw: tuple[int, int]) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) padding that ``module`` really applies to an input
    of ``input_hw``."""
    kh, kw = pair(module.kernel_size, 1)
    sh, sw = pair(module.stride, 1)
    dh, dw = pair(module.dilation, 1)
    if getattr(module, "same_padding", False) is True or type(module).__name__ == "Conv2dSame":
        top, bottom = _tf_same(input_hw[0], kh, sh, dh)
        left, right = _tf_same(input_hw[1], kw, sw, dw)
        return top, left, bottom, right
    if module.padding == "same":  # PyTorch: total d(k-1), the extra pixel after
        th, tw = dh * (kh - 1), dw * (kw - 1)
        return th // 2, tw // 2, th - th // 2, tw - tw // 2
    if module.padding == "valid":
        return 0, 0, 0, 0
    ph, pw = pair(module.padding, 0)
    return ph, pw, ph, pw


def _window_coords(y: int, x: int, stride, dilation, kernel, pad) -> tuple[list[int], list[int]]:
    rows = [y * stride[0] - pad[0] + i * dilation[0] for i in range(kernel[0])]
    cols = [x * stride[1] - pad[1] + j * dilation[1] for j in range(kernel[1])]
    return rows, cols


def _gather(plane: np.ndarray, rows, cols, fill: float) -> tuple[np.ndarray, np.ndarray]:
    """plane (C, H, W) read at rows x cols; ``fill`` outside, with the outside mask."""
    channels, height, width = plane.shape
    r = np.asarray(rows)
    c = np.asarray(cols)
    inside = ((r >= 0) & (r < height))[:, None] & ((c >= 0) & (c < width))[None, :]
    window = np.full((channels, len(rows), len(cols)), fill, dtype=np.float64)
    rr, cc = np.nonzero(inside)
    window[:, rr, cc] = plane[:, r[rr], c[cc]]
    return window, ~inside


def _padding_mode_note(module) -> list[str]:
    mode = getattr(module, "padding_mode", "zeros")
    if mode != "zeros":
        return [f"This layer pads with '{mode}', not zeros; the padded cells show that padding."]
    return []


def _fill_padding(module, plane: np.ndarray, rows, cols, window, outside) -> np.ndarray:
    """For a padding mode other than zeros, the numbers the layer really padded with."""
    mode = getattr(module, "padding_mode", "zeros")
    if mode == "zeros" or not outside.any():
        return window
    _c, height, width = plane.shape

    def index(i: int, size: int) -> int:
        if mode == "circular":
            return i % size
        if mode == "replicate":
            return min(max(i, 0), size - 1)
        # reflect
        period = 2 * (size - 1) if size > 1 else 1
        i = abs(i) % period
        return period - i if i >= size else i

    rr = [index(r, height) for r in rows]
    cc = [index(c, width) for c in cols]
    return plane[:, rr][:, :, cc].astype(np.float64)


def _conv(layer, info, module, inp: np.ndarray, channel, y, x, captured) -> PositionExplanation:
    weight = module.weight.detach().float().cpu().numpy().astype(np.float64)
    bias = 0.0
    if getattr(module, "bias", None) is not None:
        bias = float(module.bias.detach().float().cpu()[channel])
    groups = int(module.groups)
    per_group_out = weight.shape[0] // groups
    group = channel // per_group_out
    per_group_in = weight.shape[1]
    channels = list(range(group * per_group_in, (group + 1) * per_group_in))
    kernel_size = (weight.shape[2], weight.shape[3])
    stride, dilation = pair(module.stride, 1), pair(module.dilation, 1)
    pad = conv_padding(module, inp.shape[1:])
    rows, cols = _window_coords(y, x, stride, dilation, kernel_size, pad)
    plane = inp[channels]
    window, outside = _gather(plane, rows, cols, 0.0)
    window = _fill_padding(module, plane, rows, cols, window, outside)
    kernel = weight[channel]
    products = window * kernel
    total = float(products.sum())
    return PositionExplanation(
        layer=layer, kind=info.kind, operation="convolution", channel=channel, y=y, x=x,
        input_channels=channels, window=window, padded=outside, rows=rows, cols=cols,
        input_shape=tuple(inp.shape), output_shape=tuple(info.output_shape),
        kernel_size=kernel_size, stride=stride, dilation=dilation, padding=pad, groups=groups,
        value=total + bias, captured=captured, kernel=kernel, products=products, total=total,
        bias=bias, notes=_padding_mode_note(module))


def _pool_geometry(module, kind, inp_hw, out_hw, y, x):
    """(rows, cols, kernel, stride, dilation, padding, clip) of a pooling window.
    ``clip``: the (rows, cols) limit of the padded input (ceil_mode windows may end
    past it; those cells are not counted)."""
    if kind.startswith("Adaptive"):
        height, width = inp_hw
        oh, ow = out_hw
        r0, r1 = (y * height) // oh, -(-((y + 1) * height) // oh)
        c0, c1 = (x * width) // ow, -(-((x + 1) * width) // ow)
        rows, cols = list(range(r0, r1)), list(range(c0, c1))
        return rows, cols, (len(rows), len(cols)), (1, 1), (1, 1), (0, 0, 0, 0), None
    kernel = pair(module.kernel_size, 1)
    stride = pair(module.stride if module.stride is not None else module.kernel_size, 1)
    dilation = pair(getattr(module, "dilation", 1), 1)
    ph, pw = pair(module.padding, 0)
    rows, cols = _window_coords(y, x, stride, dilation, kernel, (ph, pw))
    clip = (inp_hw[0] + ph, inp_hw[1] + pw)
    return rows, cols, kernel, stride, dilation, (ph, pw, ph, pw), clip


def _pool(layer, info, module, inp: np.ndarray, channel, y, x, captured) -> PositionExplanation:
    kind = info.kind
    rows, cols, kernel, stride, dilation, pad, clip = _pool_geometry(
        module, kind, inp.shape[1:], info.output_shape[1:], y, x)
    plane = inp[[channel]]
    is_max = "Max" in kind
    window, outside = _gather(plane, rows, cols, -math.inf if is_max else 0.0)
    notes = []
    common = dict(layer=layer, kind=kind, channel=channel, y=y, x=x, input_channels=[channel],
                  padded=outside, rows=rows, cols=cols, input_shape=tuple(inp.shape),
                  output_shape=tuple(info.output_shape), kernel_size=kernel, stride=stride,
                  dilation=dilation, padding=pad, groups=1, captured=captured)
    if is_max:
        flat = int(np.argmax(window))
        winner = tuple(int(i) for i in np.unravel_index(flat, window.shape))
        return PositionExplanation(operation="max", window=window, value=float(window.flat[flat]),
                                   winner=winner, total=float(window.flat[flat]), notes=notes, **common)
    total = float(window.sum())
    divisor = len(rows) * len(cols)
    if not kind.startswith("Adaptive"):
        override = getattr(module, "divisor_override", None)
        if override:
            divisor = int(override)
        elif getattr(module, "count_include_pad", True):
            # cells in the padded input count; cells past it (ceil_mode) do not
            in_rows = sum(1 for r in rows if r < clip[0])
            in_cols = sum(1 for c in cols if c < clip[1])
            divisor = in_rows * in_cols
        else:
            divisor = int((~outside).sum())
            notes.append("Padding cells are not counted in the average (count_include_pad=False).")
    return PositionExplanation(operation="average", window=window, value=total / divisor,
                               total=total, divisor=divisor, notes=notes, **common)


def _is_whole(value) -> bool:
    """An int (Python, numpy or a one-element tensor), not a float that int() would cut."""
    import operator

    try:
        operator.index(value)
    except TypeError:
        return False
    return not isinstance(value, bool)


def explain_position(model, result, layer: str, channel: int, y: int, x: int) -> PositionExplanation:
    """Recompute output (``channel``, ``y``, ``x``) of ``layer`` by hand from its input.

    ``model``: the LoadedModel (or ``nn.Module``) ``result`` was captured with;
    ``result``: a CaptureResult (its ``.input`` is run again up to ``layer`` to get the
    layer's input). Works for Conv2d (any stride, padding, dilation, groups, depthwise),
    MaxPool2d, AvgPool2d and the adaptive pools. Returns a :class:`PositionExplanation`
    whose ``value`` equals ``captured`` to float precision. Raises ModelError for an
    unknown layer, a layer kind it cannot explain (transposed convolutions), or a
    channel or position outside the map.
    """
    from featurescope.core.capture.capture import capture_into
    from featurescope.core.capture.layers import find_layer_module
    from featurescope.core.capture.sinks import InputSink

    module_root = getattr(model, "module", model)
    model_name = getattr(model, "name", None) or result.model_name or type(module_root).__name__
    if layer not in result.info:
        raise ModelError(f"{model_name} has no captured layer named {layer!r}; "
                         "`featurescope layers` lists them.")
    info = result.info[layer]
    if info.kind not in ARITHMETIC_TYPES:
        raise ModelError(f"{layer} is a {info.kind}; the arithmetic is shown for convolutions "
                         "and pooling layers only.")
    channels, height, width = info.output_shape
    for what, value in (("channel", channel), ("row", y), ("column", x)):
        if not _is_whole(value):
            raise ModelError(f"The {what} must be a whole number; {value!r} is not one.")
    if not 0 <= int(channel) < channels:
        raise ModelError(f"{layer} has channels 0 to {channels - 1}; {channel} is not one of them.")
    if not (0 <= int(y) < height and 0 <= int(x) < width):
        raise ModelError(f"{layer} is {height} x {width}; position {y},{x} is outside it.")
    channel, y, x = int(channel), int(y), int(x)
    module, _call = find_layer_module(module_root, layer, model_name)
    sink = InputSink(layer)
    capture_into(model, result.input, [sink], layers=[layer])
    if sink.input is None or sink.input.dim() != 4:
        raise ModelError(f"{layer} did not run on a feature map in {model_name}'s forward pass.")
    inp = sink.input[0].float().cpu().numpy().astype(np.float64)
    import torch

    notes = []
    if layer in result and result.storage_dtype == torch.float32:
        captured = float(result[layer][channel, y, x])
    else:  # not kept, or kept as float16 within the memory budget: this very pass, float32
        captured = float(sink.output[0, channel, y, x])
        if layer in result:
            notes.append(f"The map stores float16 to stay within the memory budget and shows "
                         f"{float(result[layer][channel, y, x]):.5g}; the layer computed {captured:.6g}.")
    if info.kind == "Conv2d":
        explanation = _conv(layer, info, module, inp, channel, y, x, captured)
    else:
        explanation = _pool(layer, info, module, inp, channel, y, x, captured)
    explanation.notes.extend(notes)
    return explanation


def describe_steps(explanation: PositionExplanation) -> list[str]:
    """The explanation as short sentences (CLI and the app's panel)."""
    e = explanation
    kh, kw = e.kernel_size
    lines = [f"{e.layer} ({e.kind}), channel {e.channel}, position y {e.y}, x {e.x}"]
    first_row, first_col = e.rows[0], e.cols[0]
    lines.append(f"window: input rows {e.rows[0]}..{e.rows[-1]}, columns {e.cols[0]}..{e.cols[-1]} "
                 f"(= {e.y} x stride {e.stride[0]} - padding {e.padding[0]} = {first_row}, "
                 f"{e.x} x stride {e.stride[1]} - padding {e.padding[1]} = {first_col}; "
                 f"dilation {e.dilation[0]}x{e.dilation[1]})")
    padded = int(e.padded.sum())
    if padded:
        lines.append(f"{padded} of {kh * kw} window cells hang over the border (padding)")
    if e.operation == "convolution":
        count = e.window.size
        lines.append(f"input channels {_span(e.input_channels)} (groups {e.groups}); "
                     f"{count} products of input x weight")
        lines.append(f"sum of products {e.total:.6g} + bias {e.bias:.6g} = {e.value:.6g}")
    elif e.operation == "max":
        _, i, j = e.winner
        lines.append(f"maximum of {e.window.size} values: {e.value:.6g} at input row {e.rows[i]}, "
                     f"column {e.cols[j]}")
    else:
        lines.append(f"average: {e.total:.6g} / {e.divisor} = {e.value:.6g}")
    verdict = "equal" if e.matches else "NOT equal"
    lines.append(f"captured activation {e.captured:.6g} ({verdict})")
    lines.extend(e.notes)
    return lines


def _span(channels: list[int]) -> str:
    if len(channels) == 1:
        return str(channels[0])
    return f"{channels[0]}..{channels[-1]}"
