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

The ops are observed through core/capture/trace.py (:class:`OpTrace`) with the
arithmetic of core/analysis/field_tracker.py, and the layers through the capture taps. The pass runs on PyTorch's "meta" device, so it computes shapes only: it is instant even
for VGG16 and never touches the model's weights or device. Squeeze-and-excitation and
other global context is not counted: like the textbook field, this is the window of the
local (conv and pool) computation.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Union

import torch
from torch import nn

from featurescope.core.analysis.field_tracker import Axis, Field, FieldTracker
from featurescope.core.capture.grad import run_with_grad
from featurescope.core.capture.layers import find_layer_module, pair
from featurescope.core.capture.trace import OpTrace, module_state_kept
from featurescope.core.errors import LayerNotRunError, ModelError

IntOrPair = Union[int, tuple[int, int]]


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

    found: dict[str, Optional[Field]] = {}
    maps: set = set()  # layers whose output is a feature map, with or without a field

    def run(to_meta: bool) -> None:
        tracker = FieldTracker()
        device, dtype = _device_and_dtype(module)
        image = torch.zeros((1, getattr(model, "channels", 3), height, width), device="meta" if to_meta else device,
                            dtype=dtype)
        tracker.set_field(image, Field(Axis(1, 1, 0), Axis(1, 1, 0), (height, width)))
        # nothing after the last wanted layer is needed
        with module_state_kept(module), OpTrace(tracker, to_meta=to_meta):
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
