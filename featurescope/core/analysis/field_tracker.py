"""The receptive-field arithmetic: a field per axis, and how each operation changes it.

:class:`FieldTracker` is the observer of an :class:`~featurescope.core.capture.trace.
OpTrace`: it carries a :class:`Field` along every tensor of one forward pass.
Convolutions and pooling grow it (:func:`window`), explicit padding moves its start,
merging paths cover their :func:`union`, permutes follow H and W to where they went,
and every other operation passes it through. core/analysis/receptive.py runs the pass
and turns the fields of the wanted layers into :class:`~featurescope.core.analysis.
receptive.ReceptiveField` records.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F

from featurescope.core.capture.layers import pair
from featurescope.core.capture.trace import tensors_in


@dataclass(frozen=True)
class Axis:
    """The field along one axis: size and jump in input pixels, start as a coordinate."""

    size: float
    jump: float
    start: float

    @property
    def low(self) -> float:  # first input pixel seen by position 0
        return self.start - (self.size - 1) / 2

    @property
    def high(self) -> float:  # last input pixel seen by position 0
        return self.start + (self.size - 1) / 2


@dataclass(frozen=True)
class Field:
    h: Axis
    w: Axis
    shape: tuple[int, int]  # the (H, W) of the tensor this field describes
    # Where H and W are in that tensor, counted from the end: (-2, -1) for NCHW, (-3, -2)
    # inside ConvNeXt's channels-last blocks (permute, layer norm, linear, permute back).
    dims: tuple[int, int] = (-2, -1)

    def matches(self, tensor: torch.Tensor) -> bool:
        """Whether ``tensor`` still has this field's H and W at the same places."""
        if tensor.dim() < -min(self.dims):
            return False
        return (tensor.shape[self.dims[0]], tensor.shape[self.dims[1]]) == self.shape

    def moved(self, dims: tuple[int, int]) -> "Field":
        return Field(self.h, self.w, self.shape, dims)


def window(axis: Axis, kernel: int, stride: float, pad_before: float, dilation: int = 1) -> Axis:
    span = dilation * (kernel - 1)  # effective kernel minus one
    return Axis(size=axis.size + span * axis.jump,
                 jump=axis.jump * stride,
                 start=axis.start + (span / 2 - pad_before) * axis.jump)


def union(axes: list[Axis]) -> Axis:
    """The field covering every path that merges here (largest jump if they differ)."""
    low = min(a.low for a in axes)
    high = max(a.high for a in axes)
    return Axis(size=high - low + 1, jump=max(a.jump for a in axes), start=(low + high) / 2)


def _functions(*candidates) -> frozenset:
    """The torch functions a tracker recognises (some names differ between versions)."""
    return frozenset(c for c in candidates if c is not None)


class FieldTracker:
    """Carries a Field along every tensor of a forward pass (keyed by object id); the
    observer of an :class:`OpTrace`.

    Tensors are kept alive in the table so that an id is never reused within the pass.
    """

    _MAX_POOLS = _functions(F.max_pool2d, getattr(F, "max_pool2d_with_indices", None),
                            getattr(F, "_max_pool2d", None), torch.max_pool2d)
    _AVG_POOLS = _functions(F.avg_pool2d, torch._C._nn.avg_pool2d)
    _CONVS = _functions(F.conv2d, torch.conv2d)
    _ADAPTIVE = _functions(F.adaptive_avg_pool2d, torch._C._nn.adaptive_avg_pool2d,
                           F.adaptive_max_pool2d,
                           getattr(F, "adaptive_max_pool2d_with_indices", None),
                           getattr(F, "_adaptive_max_pool2d", None))
    _PERMUTES = _functions(torch.permute, torch.Tensor.permute, torch.transpose,
                           torch.Tensor.transpose, torch.swapaxes, torch.Tensor.swapaxes)
    _PADS = _functions(F.pad, getattr(torch._C._nn, "pad", None), torch.constant_pad_nd)

    def __init__(self):
        self.fields: dict[int, tuple[torch.Tensor, Field]] = {}

    def field_of(self, tensor) -> Optional[Field]:
        entry = self.fields.get(id(tensor))
        if entry is None or entry[0] is not tensor:
            return None
        return entry[1]

    def set_field(self, tensor: torch.Tensor, field: Field) -> None:
        self.fields[id(tensor)] = (tensor, field)

    def __call__(self, func, args, kwargs, result) -> None:
        inputs = [t for t in tensors_in(args) + tensors_in(kwargs) if self.field_of(t) is not None]
        if inputs:
            self._propagate(func, inputs, args, kwargs, result)

    def _propagate(self, func, inputs, args, kwargs, result) -> None:
        source = self.field_of(inputs[0])
        outputs = [t for t in tensors_in(result) if t.dim() >= 2]
        if not outputs:
            return
        field = None
        if source.dims == (-2, -1):
            if func in self._CONVS:
                field = self._conv(source, args, kwargs)
            elif func in self._MAX_POOLS or func in self._AVG_POOLS:
                field = self._pool(func in self._AVG_POOLS, source, args, kwargs)
            elif func in self._ADAPTIVE:
                field = self._adaptive(source, tuple(outputs[0].shape[-2:]))
            elif func in self._PADS:
                field = self._pad(source, args, kwargs)
        if field is not None:
            field = Field(field.h, field.w, tuple(outputs[0].shape[-2:]))
        elif func in self._PERMUTES:
            field = self._permute(func, source, args, kwargs, inputs[0].dim(), outputs[0].dim())
        else:
            # Anything else (activations, norms, adds, cat, views...) passes the field
            # through; inputs that merge here with the same H and W cover their union.
            same = [f for f in (self.field_of(t) for t in inputs) if f.matches(outputs[0])]
            if len(same) > 1:
                field = Field(union([f.h for f in same]), union([f.w for f in same]),
                               same[0].shape, same[0].dims)
            elif same:
                field = same[0]
        if field is None:
            return
        for tensor in outputs:
            if field.matches(tensor):
                self.set_field(tensor, field)

    def _permute(self, func, source: Field, args, kwargs, in_ndim: int, out_ndim: int):
        if in_ndim != out_ndim:
            return None
        old = [d % in_ndim for d in source.dims]
        if func in (torch.permute, torch.Tensor.permute):
            order = self._arg(args, kwargs, 1, "dims", None)
            order = list(order) if isinstance(order, (list, tuple)) else [int(a) for a in args[1:]]
            order = [d % in_ndim for d in order]
            new = [order.index(d) for d in old]
        else:  # transpose / swapaxes
            a = self._arg(args, kwargs, 1, "dim0", 0) % in_ndim
            b = self._arg(args, kwargs, 2, "dim1", 1) % in_ndim
            swap = {a: b, b: a}
            new = [swap.get(d, d) for d in old]
        return source.moved((new[0] - out_ndim, new[1] - out_ndim))

    @staticmethod
    def _arg(args, kwargs, index, name, default):
        if name in kwargs:
            return kwargs[name]
        return args[index] if len(args) > index else default

    def _conv(self, source: Field, args, kwargs) -> Field:
        weight = self._arg(args, kwargs, 1, "weight", None)
        kernel = tuple(weight.shape[-2:])
        stride = pair(self._arg(args, kwargs, 3, "stride", 1), 1)
        padding = self._arg(args, kwargs, 4, "padding", 0)
        dilation = pair(self._arg(args, kwargs, 5, "dilation", 1), 1)
        if isinstance(padding, str):  # PyTorch's own "same" puts the odd pixel after
            padding = tuple(d * (k - 1) // 2 if padding == "same" else 0
                            for k, d in zip(kernel, dilation))
        padding = pair(padding, 0)
        return Field(*(window(axis, kernel[i], stride[i], padding[i], dilation[i])
                        for i, axis in enumerate((source.h, source.w))), source.shape)

    def _pool(self, is_avg: bool, source: Field, args, kwargs) -> Field:
        kernel = pair(self._arg(args, kwargs, 1, "kernel_size", 1), 1)
        stride = self._arg(args, kwargs, 2, "stride", None)
        stride = kernel if stride is None or stride == [] or stride == () else pair(stride, 1)
        padding = pair(self._arg(args, kwargs, 3, "padding", 0), 0)
        dilation = (1, 1) if is_avg else pair(self._arg(args, kwargs, 4, "dilation", 1), 1)
        return Field(*(window(axis, kernel[i], stride[i], padding[i], dilation[i])
                        for i, axis in enumerate((source.h, source.w))), source.shape)

    @staticmethod
    def _adaptive(source: Field, out_shape) -> Field:
        axes = []
        for axis, n_in, n_out in zip((source.h, source.w), source.shape, out_shape):
            if n_out == n_in:
                axes.append(axis)
            else:
                # Bin i covers [floor(i*n/m), ceil((i+1)*n/m)): exact when n divides by m
                # (global pooling included); otherwise the widest bin and the mean step.
                kernel = math.ceil(n_in / n_out) + (0 if n_in % n_out == 0 else 1)
                axes.append(window(axis, kernel, n_in / n_out, 0))
        return Field(axes[0], axes[1], source.shape)

    def _pad(self, source: Field, args, kwargs) -> Optional[Field]:
        pad = list(self._arg(args, kwargs, 1, "pad", ()))
        left = pad[0] if len(pad) >= 1 else 0
        top = pad[2] if len(pad) >= 3 else 0
        return Field(Axis(source.h.size, source.h.jump, source.h.start - top * source.h.jump),
                      Axis(source.w.size, source.w.jump, source.w.start - left * source.w.jump),
                      source.shape)
