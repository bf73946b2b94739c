"""What a captured layer is: the module types featurescope captures and their metadata.

:class:`LayerInfo` describes one captured layer (by default the conv and pooling
layers; any module asked for by name, see selection.py) (kernel, stride, padding,
channels, shapes, parameters); the name is the key everywhere (NPZ, CLI, GUI). The
fields that do not depend on the input come from the module itself; the shapes come
from the tensors a capture session sees (core/capture/taps.py builds them with
:func:`build_layer_info`, and :func:`~featurescope.core.capture.taps.describe_layers`
runs that session on zeros).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional, Sequence, Union

from featurescope.core.errors import ModelError

if TYPE_CHECKING:  # torch is imported where a module is looked at: the window shows first
    from torch import nn

# The one set of layer kinds (LayerInfo.kind) everything that sorts layers uses.
CONV_TYPES = ("Conv2d", "ConvTranspose2d")
# Pooling over a window (kernel, stride, padding), and adaptive pooling (an output size).
WINDOW_POOL_TYPES = ("MaxPool2d", "AvgPool2d")
ADAPTIVE_POOL_TYPES = ("AdaptiveAvgPool2d", "AdaptiveMaxPool2d")
POOL_TYPES = WINDOW_POOL_TYPES + ADAPTIVE_POOL_TYPES
# The module types whose outputs are captured by default.
CAPTURED_TYPES = CONV_TYPES + POOL_TYPES


def captured_classes() -> tuple[type, ...]:
    """The classes of CAPTURED_TYPES, in the same order, for isinstance (subclasses
    such as lite.SameConv2d count)."""
    from torch import nn

    return (nn.Conv2d, nn.ConvTranspose2d, nn.MaxPool2d, nn.AvgPool2d,
            nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)


@dataclass(frozen=True)
class LayerInfo:
    """What one captured layer is. ``name`` is the key everywhere (NPZ, CLI, GUI).

    A module called twice in one forward pass gives two layers: ``name`` and ``name#2``.
    Shapes are (C, H, W) without the batch dimension. For pooling layers
    ``in_channels == out_channels``; adaptive pools have ``kernel_size`` etc. None and
    ``output_size`` set. ``padding`` is a (ph, pw) tuple, or the string "same" for
    TensorFlow-style dynamic padding (EfficientNet-Lite0). Transposed convolutions
    have kind "ConvTranspose2d" (their output_padding is what the shapes leave over).
    Any other module asked for by name or group (core/capture/selection.py) has its
    class name as kind ("ReLU", "BatchNorm2d", "BasicBlock"), None for kernel, stride,
    padding, dilation and groups, channels from its input and output shapes, and the
    parameters of everything inside it.
    """

    name: str
    module_name: str
    kind: str  # "Conv2d", "MaxPool2d", ...; any other module: its class name ("ReLU")
    index: int  # position in network (execution) order, 0-based
    in_channels: int
    out_channels: int
    kernel_size: Optional[tuple[int, int]]
    stride: Optional[tuple[int, int]]
    padding: Union[tuple[int, int], str, None]
    dilation: Optional[tuple[int, int]]
    groups: Optional[int]  # None for modules other than convolutions and pools
    input_shape: tuple[int, int, int]
    output_shape: tuple[int, int, int]
    parameters: int  # weights + bias of this module (0 for pooling)
    output_size: Optional[tuple[int, int]] = None  # adaptive pools only



def find_layer_module(module: nn.Module, layer: str, model_name: str) -> tuple[nn.Module, int]:
    """The submodule behind layer name ``layer`` ("name" or "name#N" for its N-th call)
    and which call it is (1-based). Raises ModelError for a name ``module`` lacks."""
    name, _, call = layer.partition("#")
    modules = dict(module.named_modules())
    if name not in modules or (call and not call.isdigit()):
        raise ModelError(f"{model_name} has no layer called {layer!r}; "
                         f"`featurescope layers` lists the layer names.")
    return modules[name], int(call) if call else 1


def captured_kind(module: nn.Module) -> Optional[str]:
    """"Conv2d", "MaxPool2d", ... when ``module`` is captured (subclasses too), else None."""
    for cls, kind in zip(captured_classes(), CAPTURED_TYPES):
        if isinstance(module, cls):
            return kind
    return None


def pair(value, default: Optional[int] = None) -> Optional[tuple[int, int]]:
    """A kernel size, stride, padding or dilation as (height, width), the one reading
    for every module and functional call: an int is both, a tuple or list its first and
    last entries; None (or an empty tuple) is (``default``, ``default``), or None
    without a default."""
    if value is None or (isinstance(value, (tuple, list)) and not value):
        return None if default is None else (default, default)
    if isinstance(value, (tuple, list)):
        return (int(value[0]), int(value[-1]))
    return (int(value), int(value))


def _chw(shape: Sequence[int]) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in shape)
    return shape[-3:] if len(shape) >= 3 else (1,) * (3 - len(shape)) + shape


def _static_info(module: nn.Module, kind: str) -> dict:
    """The LayerInfo fields that do not depend on the input."""
    if kind in CONV_TYPES:
        padding = module.padding
        if getattr(module, "same_padding", False) is True or padding == "same":
            padding = "same"
        elif padding == "valid":
            padding = (0, 0)
        else:
            padding = pair(padding)
        return dict(kernel_size=pair(module.kernel_size), stride=pair(module.stride),
                    padding=padding, dilation=pair(module.dilation), groups=int(module.groups),
                    parameters=sum(p.numel() for p in module.parameters()))
    if kind in WINDOW_POOL_TYPES:
        return dict(kernel_size=pair(module.kernel_size),
                    stride=pair(module.stride if module.stride is not None else module.kernel_size),
                    padding=pair(module.padding), dilation=pair(getattr(module, "dilation", 1)),
                    groups=1, parameters=0)
    if kind in CAPTURED_TYPES:  # adaptive pools
        return dict(kernel_size=None, stride=None, padding=None, dilation=None, groups=1,
                    parameters=0)
    # Any other module (an activation, a batch norm, a block): no kernel of its own; its
    # parameters are those of everything inside it.
    return dict(kernel_size=None, stride=None, padding=None, dilation=None, groups=None,
                parameters=sum(p.numel() for p in module.parameters()))


def build_layer_info(name, module_name, module, kind, index, inp, out) -> LayerInfo:
    """The LayerInfo of ``module`` (of captured ``kind``) called on ``inp`` giving ``out``."""
    static = _static_info(module, kind)
    input_shape = _chw(inp.shape)
    output_shape = _chw(out.shape)
    if kind in CONV_TYPES:
        in_channels, out_channels = int(module.in_channels), int(module.out_channels)
    else:
        in_channels, out_channels = input_shape[0], output_shape[0]
    output_size = None
    if kind in CAPTURED_TYPES and kind.startswith("Adaptive"):
        output_size = (output_shape[1], output_shape[2])
    return LayerInfo(name=name, module_name=module_name, kind=kind, index=index,
                     in_channels=in_channels, out_channels=out_channels,
                     input_shape=input_shape, output_shape=output_shape,
                     output_size=output_size, **static)
