"""Transformation robustness: a random pad, jitter, scale and rotation at every step.

Lucent's ``standard_transforms`` (``lucent/optvis/transform.py``): pad 12 px with grey,
jitter up to 8 px, scale by one of 0.90, 0.92, ..., 1.10, rotate by one of -10..10
degrees (0 five times more often), jitter up to 4 px. An image that excites a channel
only at one exact pixel alignment is noise; one that survives these is a pattern.

Lucent applies them one after the other (five resamplings of the whole batch, one
random draw shared by the batch). Here they are composed into one affine map per
image and applied with a single ``grid_sample``: one resampling, and each image draws
its own transform from its own generator, so a channel's result does not depend on
which channels share its batch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

SCALES = tuple(1 + (i - 5) / 50.0 for i in range(11))
ANGLES = tuple(range(-10, 11)) + (0,) * 5


@dataclass(frozen=True)
class Robustness:
    """The transformation settings (Lucent's defaults)."""

    pad: int = 12
    jitter: int = 8
    scales: tuple = SCALES
    angles: tuple = ANGLES
    jitter_after: int = 4
    fill: float = 0.5  # the grey the padding shows


def _shift(rng: np.random.Generator, d: int) -> np.ndarray:
    # d positions, centred: -d//2 .. d-1-d//2 (Lucent shifts 0..d-1 one way)
    return rng.integers(0, d, size=2).astype(np.float64) - d // 2 if d > 1 else np.zeros(2)


def random_affines(rngs: list, size: tuple[int, int], settings: Robustness) -> torch.Tensor:
    """(N, 2, 3) ``affine_grid`` matrices: output frame (the image plus its padding) ->
    the image, in normalised coordinates, one random draw per generator in ``rngs``."""
    height, width = size
    out_h, out_w = height + 2 * settings.pad, width + 2 * settings.pad
    thetas = np.empty((len(rngs), 2, 3))
    for i, rng in enumerate(rngs):
        t1 = _shift(rng, settings.jitter)
        scale = settings.scales[rng.integers(len(settings.scales))]
        angle = math.radians(settings.angles[rng.integers(len(settings.angles))])
        t2 = _shift(rng, settings.jitter_after)
        # forward (pixels, centred): y = R (scale (x + t1)) + t2; sample x = (R^-1 (y - t2)) / scale - t1
        cos, sin = math.cos(angle), math.sin(angle)
        inverse = np.array([[cos, sin], [-sin, cos]]) / scale
        offset = -inverse @ t2 - t1
        # normalised output -> pixels -> image pixels -> normalised image coordinates
        to_px = np.diag([out_w / 2.0, out_h / 2.0])
        from_px = np.diag([2.0 / width, 2.0 / height])
        thetas[i, :, :2] = from_px @ inverse @ to_px
        thetas[i, :, 2] = from_px @ offset
    return torch.from_numpy(thetas.astype(np.float32))


def apply(images: torch.Tensor, thetas: torch.Tensor, settings: Robustness) -> torch.Tensor:
    """``images`` (N, C, H, W) in [0, 1] seen through ``thetas``: (N, C, H + 2 pad, W + 2 pad),
    the area outside the image filled with ``settings.fill``."""
    n, c, h, w = images.shape
    out = (n, c, h + 2 * settings.pad, w + 2 * settings.pad)
    grid = F.affine_grid(thetas.to(images.device, images.dtype), out, align_corners=False)
    shifted = images - settings.fill  # zeros padding then means the fill colour
    return F.grid_sample(shifted, grid, mode="bilinear", padding_mode="zeros",
                         align_corners=False) + settings.fill
