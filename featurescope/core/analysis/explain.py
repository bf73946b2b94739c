"""What a layer does, in numbers and short sentences: the teaching part of the app.

``explain_layer(info)`` takes a :class:`~featurescope.core.capture.capture.LayerInfo` and returns
a :class:`LayerExplanation`: the layer's hyper-parameters, the output-size formula filled
in with this layer's numbers, the parameter count beside what a fully connected layer
mapping the same input to the same output would need, and for pooling layers what the
downsampling did to the spatial size. Qt-free; the layer info panel renders it, and
``as_text()`` gives the same content as plain text for the command line.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

from featurescope.core.capture.layers import ADAPTIVE_POOL_TYPES, CONV_TYPES, pair


@dataclass(frozen=True)
class AxisFormula:
    """The output size along one axis: ``text`` is the formula with numbers filled in."""

    axis: str  # "H", "W" or "H and W" when both axes have the same numbers
    size_in: int
    size_out: int
    text: str


@dataclass(frozen=True)
class LayerExplanation:
    """Structured numbers plus sentences for one layer.

    ``facts`` are (label, value) pairs for a table; ``sentences`` are the prose, most
    important first. ``fc_parameters`` and ``saving`` are set for convolutions only;
    ``downsampling`` (input positions / output positions) for pooling and strided layers.
    """

    name: str
    kind: str
    title: str
    facts: list[tuple[str, str]]
    formulas: list[AxisFormula]
    parameters: int
    weights: int
    biases: int
    fc_parameters: Optional[int]
    saving: Optional[float]  # fc_parameters / parameters
    downsampling: Optional[float]
    sentences: list[str] = field(default_factory=list)

    def as_text(self) -> str:
        """Plain-text rendering: title, facts, formulas, sentences."""
        lines = [self.title]
        width = max((len(k) for k, _ in self.facts), default=0)
        lines += [f"  {k.ljust(width)}  {v}" for k, v in self.facts]
        lines += [f"  {f.axis}: {f.text}" for f in self.formulas]
        lines += self.sentences
        return "\n".join(lines)


def fmt_int(n: int) -> str:
    """12345 -> "12,345"."""
    return f"{int(n):,}"


def fmt_ratio(x: float) -> str:
    """A saving factor to three significant figures, as "1 : 2,310,000"."""
    if x < 10:
        return f"1 : {x:.2f}".rstrip("0").rstrip(".")
    digits = int(math.floor(math.log10(x))) + 1
    rounded = round(x, 3 - digits) if digits > 3 else round(x)
    return f"1 : {int(rounded):,}"


def _hw(shape) -> tuple[int, int]:
    return int(shape[1]), int(shape[2])


def _size(h: int, w: int) -> str:
    return f"{h}x{w}"


def _conv_formula(size_in, k, s, p, d, size_out):
    """Text of the standard formula, and the value it gives (floor; ceil when that fits)."""
    num = size_in + 2 * p - d * (k - 1) - 1
    floor_out = num // s + 1
    rounding = "floor"
    value = floor_out
    if floor_out != size_out and -(-num // s) + 1 == size_out:
        rounding, value = "ceil", size_out  # pooling with ceil_mode=True
    text = f"out = {rounding}(({size_in} + 2*{p} - {d}*({k}-1) - 1) / {s}) + 1 = {value}"
    return text, value


def _transposed_formula(size_in, k, s, p, d, size_out):
    """Text of the transposed-convolution formula; output_padding is what is left over."""
    base = (size_in - 1) * s - 2 * p + d * (k - 1) + 1
    extra = size_out - base
    text = (f"out = ({size_in}-1)*{s} - 2*{p} + {d}*({k}-1) + {extra} + 1 = {base + extra}"
            f"{' (output_padding ' + str(extra) + ')' if extra else ''}")
    return text, base + extra


def _formulas(info) -> list[AxisFormula]:
    h_in, w_in = _hw(info.input_shape)
    h_out, w_out = _hw(info.output_shape)
    if info.kind in ADAPTIVE_POOL_TYPES:
        fixed = "fixed by the layer, whatever the input size: out = {}"
        if (h_in, h_out) == (w_in, w_out):
            return [AxisFormula("H and W", h_in, h_out, fixed.format(h_out))]
        return [AxisFormula("H", h_in, h_out, fixed.format(h_out)),
                AxisFormula("W", w_in, w_out, fixed.format(w_out))]
    k, s, d = pair(info.kernel_size, 1), pair(info.stride, 1), pair(info.dilation, 1)
    per_axis = []
    for i, axis, size_in, size_out in ((0, "H", h_in, h_out), (1, "W", w_in, w_out)):
        if info.padding == "same":
            value = -(-size_in // s[i])
            text = f"out = ceil(in / stride) = ceil({size_in} / {s[i]}) = {value}"
        elif info.kind == "ConvTranspose2d":
            p = pair(info.padding, 1)
            text, value = _transposed_formula(size_in, k[i], s[i], p[i], d[i], size_out)
        else:
            p = pair(info.padding, 1)
            text, value = _conv_formula(size_in, k[i], s[i], p[i], d[i], size_out)
        per_axis.append((axis, size_in, size_out, text))
    if per_axis[0][1:] == per_axis[1][1:]:
        _, size_in, size_out, text = per_axis[0]
        return [AxisFormula("H and W", size_in, size_out, text)]
    return [AxisFormula(a, i, o, t) for a, i, o, t in per_axis]


def _spatial_sentence(info) -> tuple[Optional[float], Optional[str]]:
    h_in, w_in = _hw(info.input_shape)
    h_out, w_out = _hw(info.output_shape)
    if h_out * w_out == 0:
        return None, None
    factor = (h_in * w_in) / (h_out * w_out)
    sizes = f"{_size(h_in, w_in)} -> {_size(h_out, w_out)}"
    if abs(factor - 1) < 1e-9:
        return 1.0, f"Spatial size kept: {sizes}."
    if factor > 1:
        nice = f"{factor:.0f}" if abs(factor - round(factor)) < 0.05 else f"{factor:.1f}"
        return factor, f"{sizes}: {nice}x fewer positions"
    return factor, f"{sizes}: {1 / factor:.1f}x more positions"


def _conv(info, facts, sentences):
    c_in, c_out, g = info.in_channels, info.out_channels, max(1, info.groups)
    (kh, kw), (sh, sw), (dh, dw) = pair(info.kernel_size, 1), pair(info.stride, 1), pair(info.dilation, 1)
    h_in, w_in = _hw(info.input_shape)
    h_out, w_out = _hw(info.output_shape)
    weights = c_out * (c_in // g) * kh * kw
    biases = max(0, info.parameters - weights)
    n_in, n_out = c_in * h_in * w_in, c_out * h_out * w_out
    fc = n_in * n_out + n_out
    saving = fc / info.parameters if info.parameters else None

    sentences.append(
        f"Each of the {c_out} filters is a {c_in // g}x{kh}x{kw} block of weights that slides over "
        f"the input{f' with stride {sh}' if sh == sw and sh > 1 else ''}; at every position it "
        f"gives one number, so the layer makes {c_out} maps of {_size(h_out, w_out)}.")
    par = f"{fmt_int(c_out)} x {fmt_int(c_in // g)} x {kh} x {kw} = {fmt_int(weights)} weights"
    if biases:
        par += f" + {fmt_int(biases)} biases = {fmt_int(info.parameters)} parameters."
    else:
        par += " (no bias) = all the parameters of this layer."
    sentences.append(par)
    if saving:
        sentences.append(
            f"A fully connected layer mapping the same input ({fmt_int(c_in)}x{h_in}x{w_in} = "
            f"{fmt_int(n_in)} numbers) to the same output ({fmt_int(c_out)}x{h_out}x{w_out} = "
            f"{fmt_int(n_out)} numbers) would need {fmt_int(n_in)} x {fmt_int(n_out)} + "
            f"{fmt_int(n_out)} = {fmt_int(fc)} parameters: local connectivity and weight "
            f"sharing save {fmt_ratio(saving)}.")
    if g > 1 and g == c_in:
        sentences.append(
            f"Depthwise convolution (groups = {g}): each filter sees only its own input "
            f"channel, so spatial patterns are filtered per channel and never mixed; a "
            f"following 1x1 convolution mixes the channels. A full {kh}x{kw} convolution "
            f"with the same channels would need {fmt_int(c_out * c_in * kh * kw)} weights "
            f"instead of {fmt_int(weights)}.")
    elif g > 1:
        sentences.append(
            f"Grouped convolution (groups = {g}): the {c_in} input channels are split into "
            f"{g} groups of {c_in // g}; each filter sees only its group, which divides the "
            f"weights by {g}.")
    if (kh, kw) == (1, 1):
        sentences.append(
            "A 1x1 (pointwise) convolution looks at one position at a time: it only mixes "
            "channels, a small fully connected layer applied at every pixel.")
    if (dh, dw) != (1, 1):
        sentences.append(
            f"Dilation {dh}: the kernel's taps are {dh} pixels apart, so a {kh}x{kw} kernel "
            f"covers {(kh - 1) * dh + 1}x{(kw - 1) * dw + 1} input pixels without more weights.")
    return weights, biases, fc, saving


def _pool(info, facts, sentences, factor_sentence):
    adaptive = info.kind in ADAPTIVE_POOL_TYPES
    how = "the largest value" if "Max" in info.kind else "the average"
    h_out, w_out = _hw(info.output_shape)
    if factor_sentence:
        sentences.append(f"{factor_sentence}, channels unchanged ({info.out_channels}).")
    if adaptive:
        glob = (h_out, w_out) == (1, 1)
        sentences.append(
            f"Adaptive pooling: the output is always {_size(h_out, w_out)}; the window size "
            f"follows the input size, and each output keeps {how} of its window."
            + (" Global pooling: one number per channel, whatever the image size." if glob else ""))
    else:
        kh, kw = pair(info.kernel_size, 1)
        sentences.append(f"Each output keeps {how} of a {kh}x{kw} window of one channel.")
    sentences.append("Pooling layers have no parameters: nothing is learned here.")


def explain_layer(info) -> LayerExplanation:
    """Explain one captured layer (conv or pool).

    Args:
        info: a LayerInfo from ``describe_layers`` / ``CaptureResult.info``.
    Returns:
        A :class:`LayerExplanation` with the formulas filled in with this layer's numbers.
    """
    if info.groups is None:  # an activation, a norm, a block: no kernel of its own
        return _module_explanation(info)
    c_in, c_out = info.in_channels, info.out_channels
    h_in, w_in = _hw(info.input_shape)
    h_out, w_out = _hw(info.output_shape)
    is_conv = info.kind in CONV_TYPES
    adaptive = info.kind in ADAPTIVE_POOL_TYPES

    facts: list[tuple[str, str]] = [
        ("type", info.kind),
        ("input", f"{c_in} x {h_in} x {w_in}"),
        ("output", f"{c_out} x {h_out} x {w_out}"),
    ]
    if is_conv:
        facts.append(("channels", f"{c_in} -> {c_out}"))
    if adaptive:
        facts.append(("output size", _size(h_out, w_out) + " (fixed)"))
    else:
        kh, kw = pair(info.kernel_size, 1)
        facts.append(("kernel", _size(kh, kw)))
        sh, sw = pair(info.stride, 1)
        facts.append(("stride", str(sh) if sh == sw else f"{sh}, {sw}"))
        if info.padding == "same":
            facts.append(("padding", '"same"'))
        else:
            ph, pw = pair(info.padding, 1)
            facts.append(("padding", str(ph) if ph == pw else f"{ph}, {pw}"))
        dh, dw = pair(info.dilation, 1)
        facts.append(("dilation", str(dh) if dh == dw else f"{dh}, {dw}"))
    if is_conv:
        facts.append(("groups", str(info.groups)))
    facts.append(("parameters", fmt_int(info.parameters)))

    sentences: list[str] = []
    downsampling, spatial = _spatial_sentence(info)
    if is_conv:
        weights, biases, fc, saving = _conv(info, facts, sentences)
        if downsampling and downsampling > 1:
            sentences.insert(1, f"{spatial}: the stride skips positions.")
        if saving:
            facts.append(("fully connected", fmt_int(fc)))
            facts.append(("saving", fmt_ratio(saving)))
        kh, kw = pair(info.kernel_size, 1)
        kind = "transposed convolution" if info.kind == "ConvTranspose2d" else "convolution"
        title = f"{info.name}: {kind} {c_in} -> {c_out} channels, {kh}x{kw}"
        if info.kind == "ConvTranspose2d":
            sentences.insert(0, "Transposed convolution: each input position adds a weighted "
                                f"{kh}x{kw} block to the output, placed {pair(info.stride, 1)[0]} "
                                "pixels apart, so the maps grow (a learned upsampling, as in "
                                "decoders and autoencoders).")
    else:
        weights = biases = 0
        fc = saving = None
        _pool(info, facts, sentences, spatial)
        title = f"{info.name}: {'adaptive ' if adaptive else ''}{'max' if 'Max' in info.kind else 'average'} pooling"
    if not adaptive:
        sh, sw = pair(info.stride, 1)
        if sh == sw and sh > 1:
            title += f", stride {sh}"
    title += f" ({_size(h_in, w_in)} -> {_size(h_out, w_out)})"

    return LayerExplanation(
        name=info.name, kind=info.kind, title=title, facts=facts, formulas=_formulas(info),
        parameters=int(info.parameters), weights=weights, biases=biases, fc_parameters=fc,
        saving=saving, downsampling=downsampling, sentences=sentences)


def _module_explanation(info) -> LayerExplanation:
    """Any other module (activation, batch norm, block, stage): shapes, parameters and
    what such a module does; no kernel, so no formulas."""
    from featurescope.core.graph.activation import ACTIVATION_KINDS

    c_in, c_out = info.in_channels, info.out_channels
    h_in, w_in = _hw(info.input_shape)
    h_out, w_out = _hw(info.output_shape)
    facts = [("type", info.kind), ("input", f"{c_in} x {h_in} x {w_in}"),
             ("output", f"{c_out} x {h_out} x {w_out}"), ("parameters", fmt_int(info.parameters))]
    if info.kind in ACTIVATION_KINDS:
        what = "activation"
        sentences = [f"{info.kind} is applied to every value on its own: the shape does not change "
                     "and nothing mixes across positions or channels.",
                     "This is what the next layer receives when it follows a convolution "
                     "(and its batch norm)."]
    elif "Norm" in info.kind:
        what = "normalisation"
        sentences = ["Each channel is shifted and scaled: with the running statistics learned in "
                     "training, batch norm is one multiply and one add per channel at inference.",
                     "A convolution's output before its batch norm is not what the next layer sees."]
    else:
        what = "module"
        sentences = [f"A {info.kind}: the output of everything inside it, "
                     f"{fmt_int(info.parameters)} parameters in all."]
        spatial = _spatial_sentence(info)[1]
        if spatial and (h_in, w_in) != (h_out, w_out):
            sentences.append(f"{spatial}.")
    title = f"{info.name}: {what} {info.kind} ({_size(h_in, w_in)} -> {_size(h_out, w_out)})"
    return LayerExplanation(name=info.name, kind=info.kind, title=title, facts=facts, formulas=[],
                            parameters=int(info.parameters), weights=0, biases=0, fc_parameters=None,
                            saving=None, downsampling=None, sentences=sentences)
