"""Receptive fields: which input pixels one feature-map position can see.

The field of a layer is computed analytically, not measured: one dummy forward pass
follows every tensor through the network and carries, per spatial axis, three numbers
(the classic receptive-field arithmetic):

- ``size``: how many input pixels one position sees,
- ``jump``: how many input pixels apart two neighbouring positions are (the stride in
  input pixels),
- ``start``: the input-pixel coordinate of the centre of position 0 (pixel centres are
  at integer coordinates, so it can be half-integer or negative because of padding).

Convolutions and pooling grow the field (``size += (k_eff - 1) * jump``, ``jump *=
stride``, ``start += ((k_eff - 1) / 2 - pad) * jump``), explicit padding (``F.pad``, as
TensorFlow "same" convolutions such as EfficientNet-Lite0's do) moves ``start``, and every
other operation passes the field through. Where paths merge (ResNet's ``out + identity``,
Inception's and DenseNet's ``cat``), the result covers the union of the fields that meet,
so a branching network gets its largest path.

The ops are observed through core/capture/trace.py (:class:`OpTrace`) and the layers
through the capture taps. The pass runs on PyTorch's "meta" device, so it computes shapes only: it is instant even
for VGG16 and never touches the model's weights or device. Squeeze-and-excitation and
other global context is not counted: like the textbook field, this is the window of the
local (conv and pool) computation.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch import nn

from featurescope.core.capture.grad import run_with_grad
from featurescope.core.capture.layers import find_layer_module, pair
from featurescope.core.capture.trace import OpTrace, tensors_in
from featurescope.core.errors import LayerNotRunError, ModelError

IntOrPair = Union[int, tuple[int, int]]


@dataclass(frozen=True)
class _Axis:
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
class _Field:
    h: _Axis
    w: _Axis
    shape: tuple[int, int]  # the (H, W) of the tensor this field describes
    # Where H and W are in that tensor, counted from the end: (-2, -1) for NCHW, (-3, -2)
    # inside ConvNeXt's channels-last blocks (permute, layer norm, linear, permute back).
    dims: tuple[int, int] = (-2, -1)

    def matches(self, tensor: torch.Tensor) -> bool:
        """Whether ``tensor`` still has this field's H and W at the same places."""
        if tensor.dim() < -min(self.dims):
            return False
        return (tensor.shape[self.dims[0]], tensor.shape[self.dims[1]]) == self.shape

    def moved(self, dims: tuple[int, int]) -> "_Field":
        return _Field(self.h, self.w, self.shape, dims)


def _window(axis: _Axis, kernel: int, stride: float, pad_before: float, dilation: int = 1) -> _Axis:
    span = dilation * (kernel - 1)  # effective kernel minus one
    return _Axis(size=axis.size + span * axis.jump,
                 jump=axis.jump * stride,
                 start=axis.start + (span / 2 - pad_before) * axis.jump)


def _union(axes: list[_Axis]) -> _Axis:
    """The field covering every path that merges here (largest jump if they differ)."""
    low = min(a.low for a in axes)
    high = max(a.high for a in axes)
    return _Axis(size=high - low + 1, jump=max(a.jump for a in axes), start=(low + high) / 2)


@dataclass(frozen=True)
class ReceptiveField:
    """The receptive field of one layer of one network at one input size.

    ``size``, ``jump`` and ``start`` are plain numbers when both axes agree (always, for
    square kernels on a square input) and ``(h, w)`` tuples otherwise; ``size_hw``,
    ``jump_hw`` and ``start_hw`` are always tuples. ``size`` is the unclipped field (it may
    be larger than the image); :meth:`box` clips. ``input_size`` and ``output_shape`` are
    the (H, W) of the image and of the layer's feature map.
    """

    layer: str
    size_hw: tuple[int, int]
    jump_hw: tuple[float, float]
    start_hw: tuple[float, float]
    input_size: tuple[int, int]
    output_shape: tuple[int, int]

    @staticmethod
    def _one(pair):
        return pair[0] if pair[0] == pair[1] else pair

    @property
    def size(self) -> IntOrPair:
        return self._one(self.size_hw)

    @property
    def jump(self):
        return self._one(self.jump_hw)

    @property
    def start(self):
        return self._one(self.start_hw)

    def unclipped_box(self, y: int, x: int) -> tuple[int, int, int, int]:
        """``(y0, x0, y1, x1)`` of position (y, x), ends exclusive, not clipped to the image."""
        boxes = []
        for position, size, jump, start in zip((y, x), self.size_hw, self.jump_hw, self.start_hw):
            centre = start + position * jump
            low = math.floor(centre - (size - 1) / 2 + 1e-9)
            boxes.append((low, low + size))
        (y0, y1), (x0, x1) = boxes
        return (y0, x0, y1, x1)

    def box(self, y: int, x: int) -> tuple[int, int, int, int]:
        """The input pixels that feature-map position (y, x) sees, clipped to the image.

        Returns ``(y0, x0, y1, x1)`` with exclusive ends, so ``image[y0:y1, x0:x1]`` is the
        field. Raises IndexError for a position outside the feature map.
        """
        height, width = self.output_shape
        if not (0 <= y < height and 0 <= x < width):
            raise IndexError(f"position ({y}, {x}) is outside the {height} x {width} "
                             f"feature map of {self.layer}")
        y0, x0, y1, x1 = self.unclipped_box(y, x)
        image_h, image_w = self.input_size
        return (max(y0, 0), max(x0, 0), min(y1, image_h), min(x1, image_w))

    def position(self, iy: float, ix: float) -> tuple[int, int]:
        """The feature-map position whose field is centred nearest input pixel (iy, ix)."""
        result = []
        for coord, jump, start, count in zip((iy, ix), self.jump_hw, self.start_hw, self.output_shape):
            index = int(math.floor((coord - start) / jump + 0.5))
            result.append(min(max(index, 0), count - 1))
        return (result[0], result[1])


def _functions(*candidates) -> frozenset:
    """The torch functions a tracker recognises (some names differ between versions)."""
    return frozenset(c for c in candidates if c is not None)


class _FieldTracker:
    """Carries a _Field along every tensor of a forward pass (keyed by object id); the
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
        self.fields: dict[int, tuple[torch.Tensor, _Field]] = {}

    def field_of(self, tensor) -> Optional[_Field]:
        entry = self.fields.get(id(tensor))
        if entry is None or entry[0] is not tensor:
            return None
        return entry[1]

    def set_field(self, tensor: torch.Tensor, field: _Field) -> None:
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
            field = _Field(field.h, field.w, tuple(outputs[0].shape[-2:]))
        elif func in self._PERMUTES:
            field = self._permute(func, source, args, kwargs, inputs[0].dim(), outputs[0].dim())
        else:
            # Anything else (activations, norms, adds, cat, views...) passes the field
            # through; inputs that merge here with the same H and W cover their union.
            same = [f for f in (self.field_of(t) for t in inputs) if f.matches(outputs[0])]
            if len(same) > 1:
                field = _Field(_union([f.h for f in same]), _union([f.w for f in same]),
                               same[0].shape, same[0].dims)
            elif same:
                field = same[0]
        if field is None:
            return
        for tensor in outputs:
            if field.matches(tensor):
                self.set_field(tensor, field)

    def _permute(self, func, source: _Field, args, kwargs, in_ndim: int, out_ndim: int):
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

    def _conv(self, source: _Field, args, kwargs) -> _Field:
        weight = self._arg(args, kwargs, 1, "weight", None)
        kernel = tuple(weight.shape[-2:])
        stride = pair(self._arg(args, kwargs, 3, "stride", 1), 1)
        padding = self._arg(args, kwargs, 4, "padding", 0)
        dilation = pair(self._arg(args, kwargs, 5, "dilation", 1), 1)
        if isinstance(padding, str):  # PyTorch's own "same" puts the odd pixel after
            padding = tuple(d * (k - 1) // 2 if padding == "same" else 0
                            for k, d in zip(kernel, dilation))
        padding = pair(padding, 0)
        return _Field(*(_window(axis, kernel[i], stride[i], padding[i], dilation[i])
                        for i, axis in enumerate((source.h, source.w))), source.shape)

    def _pool(self, is_avg: bool, source: _Field, args, kwargs) -> _Field:
        kernel = pair(self._arg(args, kwargs, 1, "kernel_size", 1), 1)
        stride = self._arg(args, kwargs, 2, "stride", None)
        stride = kernel if stride is None or stride == [] or stride == () else pair(stride, 1)
        padding = pair(self._arg(args, kwargs, 3, "padding", 0), 0)
        dilation = (1, 1) if is_avg else pair(self._arg(args, kwargs, 4, "dilation", 1), 1)
        return _Field(*(_window(axis, kernel[i], stride[i], padding[i], dilation[i])
                        for i, axis in enumerate((source.h, source.w))), source.shape)

    @staticmethod
    def _adaptive(source: _Field, out_shape) -> _Field:
        axes = []
        for axis, n_in, n_out in zip((source.h, source.w), source.shape, out_shape):
            if n_out == n_in:
                axes.append(axis)
            else:
                # Bin i covers [floor(i*n/m), ceil((i+1)*n/m)): exact when n divides by m
                # (global pooling included); otherwise the widest bin and the mean step.
                kernel = math.ceil(n_in / n_out) + (0 if n_in % n_out == 0 else 1)
                axes.append(_window(axis, kernel, n_in / n_out, 0))
        return _Field(axes[0], axes[1], source.shape)

    def _pad(self, source: _Field, args, kwargs) -> Optional[_Field]:
        pad = list(self._arg(args, kwargs, 1, "pad", ()))
        left = pad[0] if len(pad) >= 1 else 0
        top = pad[2] if len(pad) >= 3 else 0
        return _Field(_Axis(source.h.size, source.h.jump, source.h.start - top * source.h.jump),
                      _Axis(source.w.size, source.w.jump, source.w.start - left * source.w.jump),
                      source.shape)


def _input_size(model, input_size) -> tuple[int, int]:
    if input_size is None:
        input_size = getattr(model, "input_size", None) or 224
    return pair(input_size, 1)


def receptive_field(model, layer: str, input_size: Optional[IntOrPair] = None) -> ReceptiveField:
    """The receptive field of ``layer`` in ``model``.

    ``model``: a LoadedModel (its ``.module`` and ``.input_size`` are used) or a plain
    ``nn.Module``. ``layer``: a module name as ``featurescope layers`` prints it ("name#2"
    for the second call of a module used twice). ``input_size``: int or (H, W); default
    the LoadedModel's input size, else 224. The model is not changed and no real
    computation runs. Raises ModelError for an unknown layer or one whose output is not a
    spatial feature map.
    """
    return receptive_fields(model, [layer], input_size)[layer]


def receptive_fields(model, layers: Optional[list[str]] = None,
                     input_size: Optional[IntOrPair] = None) -> dict[str, ReceptiveField]:
    """The receptive fields of several layers from one pass: ``{layer: ReceptiveField}``.

    ``layers``: names as for :func:`receptive_field`; None means the LoadedModel's
    ``.layers`` (every captured conv and pool layer). Same errors as
    :func:`receptive_field`, for the first layer that has no field.
    """
    module = getattr(model, "module", model)
    model_name = getattr(model, "name", None) or type(module).__name__
    if layers is None:
        layers = list(getattr(model, "layers", None) or [])
        if not layers:
            raise ValueError("a plain nn.Module needs the list of layers")
    for layer in layers:
        target, _call = find_layer_module(module, layer, model_name)
        if isinstance(target, nn.ConvTranspose2d):
            raise ModelError(f"{layer!r} in {model_name} is a transposed convolution; featurescope "
                             "does not compute receptive fields of transposed convolutions.")
    height, width = _input_size(model, input_size)

    found: dict[str, Optional[_Field]] = {}
    maps: set = set()  # layers whose output is a feature map, with or without a field

    def run(to_meta: bool) -> None:
        tracker = _FieldTracker()
        device, dtype = _device_and_dtype(module)
        image = torch.zeros((1, getattr(model, "channels", 3), height, width), device="meta" if to_meta else device,
                            dtype=dtype)
        tracker.set_field(image, _Field(_Axis(1, 1, 0), _Axis(1, 1, 0), (height, width)))
        # nothing after the last wanted layer is needed
        with OpTrace(tracker, to_meta=to_meta):
            outputs = run_with_grad(module, image, layers, model_name=model_name, stop_after=layers,
                                    grad=False).activations
        for layer, output in outputs.items():
            is_tensor = isinstance(output, torch.Tensor)
            found[layer] = tracker.field_of(output) if is_tensor else None
            if is_tensor and output.dim() == 4:
                maps.add(layer)

    try:
        try:
            run(to_meta=True)
        except LayerNotRunError:
            raise
        except Exception:  # data-dependent code cannot run on "meta": do it for real once
            found.clear()
            maps.clear()
            try:
                run(to_meta=False)
            except LayerNotRunError:
                raise
            except Exception as error:
                detail = error.__cause__ if isinstance(error, ModelError) and error.__cause__ else error
                raise ModelError(f"{model_name} cannot run on a {height} x {width} input, so its "
                                 f"receptive fields are unknown ({detail}).") from error
    except LayerNotRunError as error:
        raise ModelError(f"{error.layer!r} does not run in {model_name}'s forward pass at "
                         f"{height} x {width}, so it has no receptive field.") from None

    result = {}
    for layer in layers:
        field = found[layer]
        if field is None and layer in maps:
            raise ModelError(f"{layer!r} in {model_name} comes after an operation whose receptive "
                             "field featurescope cannot follow (a transposed convolution, an "
                             "upsampling), so its receptive field is unknown.")
        if field is None:
            raise ModelError(f"{layer!r} in {model_name} does not output a feature map, "
                             f"so it has no receptive field.")
        result[layer] = ReceptiveField(
            layer=layer,
            size_hw=(int(round(field.h.size)), int(round(field.w.size))),
            jump_hw=(_number(field.h.jump), _number(field.w.jump)),
            start_hw=(_number(field.h.start), _number(field.w.start)),
            input_size=(height, width),
            output_shape=field.shape,
        )
    return result


def _number(value: float):
    """Whole numbers as int (16, not 16.0); others as float."""
    return int(value) if float(value).is_integer() else float(value)


def _device_and_dtype(module: torch.nn.Module):
    """Where the network's weights live and their floating-point type (the input's)."""
    for tensor in list(module.parameters()) + list(module.buffers()):
        if tensor.is_floating_point():
            return tensor.device, tensor.dtype
    return torch.device("cpu"), torch.float32
