"""Expanded weights: the link from a source layer S to a layer L that does not depend on a photo.

As in the Circuits thread (Olah et al. 2020, "Visualizing Weights"): take the
nonlinearities out of the path from S to L (ReLUs become identities, max pooling
becomes average pooling; see :class:`~featurescope.core.capture.trace.Linearised`), and
what is left (convolutions, batch norm in eval mode, depthwise and 1x1 convolutions,
pooling, residual sums) is one linear map. Its weight from source channel i to output
channel o is a small signed spatial kernel, ``W[o, i, dy, dx]`` = d L[o, p] / d S[i,
window(p) + (dy, dx)], laid out over the S positions that L's position p sees (its
receptive field on S). For a convolution right after another it is that
convolution's kernel.

Computed in one batched pass, not one backward pass per output channel: the
linearised network is fed a batch of impulses (one per source channel, and per
stride phase when L is coarser than S) in place of S's output; row b of L's
response, minus the response to no impulse at all (the biases), is column b of the
Jacobian, read off at every L position that sees the impulse. The input is made only
as large as the kernel needs (a few S positions around the impulse).
"""
from __future__ import annotations

import math
import threading
import weakref
from dataclasses import dataclass
from typing import Optional, Sequence

import torch

from featurescope.core.capture.trace import Linearised
from featurescope.core.circuits.contributions import batched_pass, Prepared
from featurescope.core.circuits.graph import CLASS
from featurescope.core.errors import ModelError

# Impulse rows per batch: chunks keep one pass's memory bounded on wide layers.
_IMPULSE_ELEMENTS = 24_000_000
# Larger kernels than this (a layer after a global pooling) are not a local link.
MAX_KERNEL = 63

_CACHE: "weakref.WeakKeyDictionary[torch.nn.Module, dict]" = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


@dataclass(frozen=True)
class _Axis:
    """Geometry along one axis: kernel size ``k`` and ``stride`` in S positions; the
    input size used; and, per stride phase, the (L position, kernel tap) pairs at
    which an impulse at S position ``impulse + phase`` is seen."""

    k: int
    stride: int
    input_size: int
    impulse: int
    pairs: tuple  # per phase: ((p, a), ...)


def _axis_geometry(k: int, stride: int, size: int, fields, source: str, layer: str, axis: int) -> Optional[_Axis]:
    s_field, l_field = fields[source], fields[layer]
    s_map, l_map = s_field.output_shape[axis], l_field.output_shape[axis]
    s_start, s_jump = s_field.start_hw[axis], s_field.jump_hw[axis]
    l_start, l_jump = l_field.start_hw[axis], l_field.jump_hw[axis]
    # the first S position of the window L position p sees
    lows = [int(math.floor((l_start + p * l_jump - s_start) / s_jump - (k - 1) / 2 + 0.5))
            for p in range(l_map)]
    impulse = (s_map - stride) // 2
    pairs = []
    for phase in range(stride):
        q = impulse + phase
        pairs.append(tuple((p, q - low) for p, low in enumerate(lows)
                           if 0 <= q - low < k and low >= 0 and low + k <= s_map))
    taps = {a for phase in pairs for _p, a in phase}
    if taps != set(range(k)):
        return None
    return _Axis(k, stride, size, impulse, tuple(pairs))


def geometry(model, layer: str, source: str) -> tuple[_Axis, _Axis]:
    """Kernel size, stride and the smallest input that holds the kernel whole around an
    impulse, per axis; from the receptive fields (shapes only, no real computation).
    Raises ModelError when L has no local link to S (a global pooling between)."""
    from featurescope.core.analysis.receptive import receptive_fields

    name = getattr(model, "name", None) or type(getattr(model, "module", model)).__name__
    nominal = receptive_fields(model, [source, layer])
    kernel, stride = [], []
    for axis in (0, 1):
        s_field, l_field = nominal[source], nominal[layer]
        step = l_field.jump_hw[axis] / s_field.jump_hw[axis]
        k = (l_field.size_hw[axis] - s_field.size_hw[axis]) / s_field.jump_hw[axis] + 1
        if step < 1 or abs(step - round(step)) > 1e-6 or k > MAX_KERNEL or l_field.output_shape[axis] == 1 \
                and s_field.output_shape[axis] > 1 and k >= s_field.output_shape[axis]:
            raise ModelError(f"{layer} in {name} is not a local function of {source} (a global pooling "
                             "or resampling lies between), so it has no expanded weights.")
        kernel.append(int(math.ceil(k - 1e-6)))
        stride.append(int(round(step)))
    jumps = [nominal[source].jump_hw[a] for a in (0, 1)]
    l_jumps = [nominal[layer].jump_hw[a] for a in (0, 1)]
    for margin in (1, 2, 3, 5, 8):
        sizes = []
        for axis in (0, 1):
            wanted = kernel[axis] + 2 * (stride[axis] - 1) + 2 * margin
            step = int(l_jumps[axis])
            sizes.append(int(math.ceil(wanted * jumps[axis] / step)) * step)
        try:
            fields = receptive_fields(model, [source, layer], input_size=tuple(sizes))
        except ModelError:
            continue
        axes = [_axis_geometry(kernel[a], stride[a], sizes[a], fields, source, layer, a) for a in (0, 1)]
        if all(axes):
            return axes[0], axes[1]
    raise ModelError(f"featurescope could not place an impulse for {source} -> {layer} in {name}.")


class _Entry:
    """What one S -> L pair has computed so far: its geometry, the input it runs on,
    the response to no impulse, and the columns (source channels) done."""

    def __init__(self, axes, x, baseline, source_shape):
        self.axes = axes
        self.x = x
        self.baseline = baseline
        self.source_channels = int(source_shape[0])
        self.source_size = int(math.prod(source_shape))
        self.columns: dict[int, torch.Tensor] = {}  # source channel -> (C_out, kh, kw)


def expanded_weights(model, layer: str, source: Optional[str] = None,
                     channels: Optional[Sequence[int]] = None,
                     sources: Optional[Sequence[int]] = None) -> torch.Tensor:
    """The expanded weights from ``source`` (default: the layer that feeds ``layer``
    most directly) to ``layer``, as a (C_out, C_in, kh, kw) float32 CPU tensor;
    ``channels`` keeps only those output channels and ``sources`` only those source
    channels, in the order given (the impulses are fed for those sources only).

    ``model``: a LoadedModel or an nn.Module in eval mode. ``W[o, i]`` is the signed
    spatial kernel by which source channel i feeds channel o through the linearised
    network, laid over the source positions one output position sees (kh x kw is that
    receptive field, in source positions). Cached per network (until its weights
    change). Raises ModelError for a model without gradients, unknown layers, a source
    that does not feed the layer, or a layer that is no local function of it."""
    from featurescope.core.circuits.contributions import prepare

    if layer == CLASS:
        raise ModelError("Class scores come after a global pooling: they have no expanded weights.")
    module = getattr(model, "module", model)
    prepared, source = prepare(model, torch.zeros(_input_shape_of(model)), layer, source, "Expanded weights")
    key = (layer, source, _weights_version(module))
    with _LOCK:
        entry = _CACHE.get(module, {}).get(key)
    if entry is None:
        entry = _start(model, prepared, layer, source)
        with _LOCK:
            _CACHE.setdefault(module, {})[key] = entry
    wanted = list(range(entry.source_channels)) if sources is None else [int(i) for i in sources]
    bad = [i for i in wanted if not 0 <= i < entry.source_channels]
    if bad:
        raise ModelError(f"{source} has channels 0 to {entry.source_channels - 1}; {bad[0]} is not among them.")
    missing = [i for i in dict.fromkeys(wanted) if i not in entry.columns]
    if missing:
        _compute(entry, prepared, layer, source, missing)
    weights = torch.stack([entry.columns[i] for i in wanted], dim=1)
    return weights if channels is None else weights[[int(c) for c in channels]]


def _weights_version(module: torch.nn.Module) -> tuple:
    # an optimiser step changes weights in place, which bumps their version counters
    return tuple(p._version for p in module.parameters()) + tuple(b._version for b in module.buffers())


def _input_shape_of(model) -> tuple:
    size = getattr(model, "input_size", None) or (224, 224)
    if isinstance(size, int):
        size = (size, size)
    return (1, int(getattr(model, "channels", 3) or 3), int(size[0]), int(size[1]))


def _start(model, prepared: Prepared, layer: str, source: str) -> _Entry:
    """The geometry and the response to no impulse (the linearised network's biases)."""
    ay, ax = geometry(model, layer, source)
    channels = int(getattr(model, "channels", 3) or 3)
    x = torch.zeros((1, channels, ay.input_size, ax.input_size), device=prepared.x.device)
    prepared = Prepared(prepared.model, prepared.module, prepared.name, x, prepared.graph)
    with torch.no_grad(), Linearised():
        probe = batched_pass(prepared, source, layer, lambda out: torch.zeros_like(out[:1]),
                             [source, layer], grad=False)
    return _Entry((ay, ax), x, probe.activations[layer][0], probe.activations[source].shape[1:])


def _compute(entry: _Entry, prepared: Prepared, layer: str, source: str, columns: list) -> None:
    """Feed impulses at ``columns`` of S (every stride phase) and store their kernels."""
    ay, ax = entry.axes
    prepared = Prepared(prepared.model, prepared.module, prepared.name, entry.x, prepared.graph)
    phases = [(ty, tx) for ty in range(ay.stride) for tx in range(ax.stride)]
    baseline = entry.baseline
    impulses = [(i, ty, tx) for i in columns for ty, tx in phases]
    chunk = max(1, _IMPULSE_ELEMENTS // max(1, entry.source_size + baseline.numel()))
    done = {i: torch.zeros((baseline.shape[0], ay.k, ax.k)) for i in columns}
    for start in range(0, len(impulses), chunk):
        part = impulses[start:start + chunk]

        def rows(output, part=part):
            batch = torch.zeros((len(part), *output.shape[1:]), dtype=output.dtype, device=output.device)
            index = torch.arange(len(part), device=output.device)
            batch[index, [i for i, _, _ in part], [ay.impulse + ty for _, ty, _ in part],
                  [ax.impulse + tx for _, _, tx in part]] = 1
            return batch

        with torch.no_grad(), Linearised():
            run = batched_pass(prepared, source, layer, rows, [layer], grad=False)
        response = (run.activations[layer] - baseline).float().cpu()
        for row, (i, ty, tx) in enumerate(part):
            (p_y, a_y), (p_x, a_x) = _pairs(ay.pairs[ty]), _pairs(ax.pairs[tx])
            done[i][:, a_y[:, None], a_x[None, :]] = response[row][:, p_y[:, None], p_x[None, :]]
    entry.columns.update(done)


def _pairs(pairs) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor([p for p, _ in pairs]), torch.tensor([a for _, a in pairs])
