"""A unit's pattern in the image: guided backpropagation and the deconvnet of one channel
(or one position of its map), the Deep Visualization Toolbox's backprop view.

The gradient of the channel's activation (the sum of its map, or its value at one
position) with respect to the photo, passed back through the ReLUs by the guided or
deconvnet rule (core/capture/relu_backward.py). Only the part of the network up to the
layer runs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from featurescope.core.analysis.tail import check_feature_map, eval_mode, prepare
from featurescope.core.errors import ModelError

METHODS = ("guided", "deconvnet")


@dataclass
class GuidedBackprop:
    """``gradient`` (3, H, W) float32: the input-space pattern that drives the unit;
    ``picture`` (H, W, 3) uint8: the same for the eye (mid-grey is zero, each colour
    channel's sign and size as brightness; see :func:`gradient_picture`); ``activation``:
    the unit's value (the map's sum without ``position``)."""

    layer: str
    channel: int
    position: Optional[tuple[int, int]]
    method: str
    gradient: np.ndarray
    picture: np.ndarray
    activation: float


def gradient_picture(gradient: np.ndarray, spread: float = 0.15) -> np.ndarray:
    """(3, H, W) gradient -> (H, W, 3) uint8: centred on mid-grey, ``spread`` of the range
    per standard deviation (the usual way to show a guided-backprop pattern)."""
    values = np.asarray(gradient, dtype=np.float64).transpose(1, 2, 0)
    values = values - values.mean()
    deviation = values.std()
    if deviation > 0:
        values = values / deviation * spread
    return np.clip((values + 0.5) * 255 + 0.5, 0, 255).astype(np.uint8)


def guided_backprop(model, image, layer: str, channel: int, position: Optional[tuple[int, int]] = None,
                    method: str = "guided") -> GuidedBackprop:
    """The input-space pattern of ``channel`` of ``layer`` for ``image``.

    ``position``: (y, x) in the layer's map for one unit, default the whole channel (the
    sum of its map); ``method``: "guided" (guided backpropagation) or "deconvnet".
    Raises ModelError for an ONNX model, an unknown layer, a layer without channels, a
    channel or position the layer does not have, or an unknown method.
    """
    from featurescope.core.capture.relu_backward import run_with_relu_backward

    if method not in METHODS:
        raise ModelError(f"{method!r} is not a backprop view; choose guided or deconvnet.")
    prep = prepare(model, image, "Guided backpropagation")
    with eval_mode(prep.module), torch.inference_mode(False), torch.enable_grad():
        x = prep.x.clone().requires_grad_(True)
        run = run_with_relu_backward(prep.module, x, layer, model_name=prep.name, rule=method)
        activation = run.activations[layer]
        check_feature_map(activation, layer, prep.name, "guided backpropagation")
        channels, height, width = activation.shape[1:]
        if not 0 <= int(channel) < channels:
            raise ModelError(f"{layer} has channels 0 to {channels - 1}; {channel} is not among them.")
        unit = activation[0, int(channel)]
        if position is not None:
            y, x_ = (int(v) for v in position)
            if not (0 <= y < height and 0 <= x_ < width):
                raise ModelError(f"{layer}'s map is {height}x{width}, so position ({y}, {x_}) is "
                                 f"outside it; rows 0 to {height - 1}, columns 0 to {width - 1}.")
            unit = unit[y, x_]
            position = (y, x_)
        else:
            unit = unit.sum()
        (gradient,) = torch.autograd.grad(unit, x)
    values = gradient.detach()[0].float().cpu().numpy()
    return GuidedBackprop(layer=layer, channel=int(channel), position=position, method=method,
                          gradient=values, picture=gradient_picture(values),
                          activation=float(unit.detach()))
