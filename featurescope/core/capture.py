"""Capture the output of every convolution and pooling layer in one forward pass.

CONTRACT STUB - to be implemented. Signatures below are what the CLI, GUI, benchmarks
and tests call.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

# Module types whose outputs are captured.
CAPTURED_TYPES = ("Conv2d", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "AdaptiveMaxPool2d")


@dataclass(frozen=True)
class LayerInfo:
    """What one captured layer is. ``name`` is the key everywhere (NPZ, CLI, GUI).

    A module called twice in one forward pass gives two layers: ``name`` and ``name#2``.
    Shapes are (C, H, W) without the batch dimension. For pooling layers
    ``in_channels == out_channels``; adaptive pools have ``kernel_size`` etc. None and
    ``output_size`` set. ``padding`` is a (ph, pw) tuple, or the string "same" for
    TensorFlow-style dynamic padding (EfficientNet-Lite0).
    """

    name: str
    module_name: str
    kind: str  # "Conv2d", "MaxPool2d", ...
    index: int  # position in network (execution) order, 0-based
    in_channels: int
    out_channels: int
    kernel_size: Optional[tuple[int, int]]
    stride: Optional[tuple[int, int]]
    padding: Union[tuple[int, int], str, None]
    dilation: Optional[tuple[int, int]]
    groups: int
    input_shape: tuple[int, int, int]
    output_shape: tuple[int, int, int]
    parameters: int  # weights + bias of this module (0 for pooling)
    output_size: Optional[tuple[int, int]] = None  # adaptive pools only


def describe_layers(module, input_shape):
    """Run one forward pass on zeros of ``input_shape`` (1, 3, H, W); return list[LayerInfo] in execution order."""
    raise NotImplementedError


def capture(model, image_or_input, layers=None, progress=None, cancel=None):
    """Capture conv/pool outputs. ``model`` is a LoadedModel; ``image_or_input`` a PIL
    image (preprocessed with ``model.preprocess``) or a (1, 3, H, W) tensor. ``layers``
    None means all. Returns a CaptureResult. Cancellable between layers."""
    raise NotImplementedError


class CaptureResult:
    """``.layers`` (names, network order), ``result[name]`` -> (C, H, W) float32 CPU tensor,
    ``.logits`` (num_classes,) CPU tensor or None, ``.input`` the (1,3,H,W) tensor fed,
    ``.info[name]`` -> LayerInfo, ``.predictions(top=5)`` -> list[Prediction]."""


@dataclass(frozen=True)
class Prediction:
    label: str
    index: int
    probability: float
