"""Convolution kernels as pictures: one tile per output channel.

- "rgb": a first layer (3 input channels) shows each kernel as a colour patch; every
  kernel is scaled symmetrically around its own zero (0 -> mid grey, its largest
  magnitude -> 0 or 255), as in the classic AlexNet filter figure.
- "mean": deeper layers, per output channel the mean over its input channels.
- "channel": per output channel the slice for one chosen input channel; depthwise
  layers (one input channel per group) are shown this way.
Single-channel pictures go through a diverging colormap, scaled symmetrically per kernel
(128 = zero), with the same tiling and separators as the feature-map grids.
"""
from __future__ import annotations

import numpy as np

from featurescope.core.render.grids import (
    SEPARATOR_RGB,
    GridLayout,
    apply_lut,
    colormap_lut,
    grid_indices,
    grid_layout,
)

FILTER_MODES = ("auto", "rgb", "mean", "channel")


def _as_weight(weight) -> np.ndarray:
    if hasattr(weight, "detach") and hasattr(weight, "cpu"):
        weight = weight.detach().float().cpu().numpy()
    w = np.asarray(weight, dtype=np.float32)
    if w.ndim != 4:
        raise ValueError(f"Expected a conv weight (out, in/groups, kh, kw), got shape {tuple(w.shape)}.")
    return w


def resolve_mode(weight_shape, mode: str = "auto") -> str:
    """The mode "auto" stands for with this weight shape: "rgb" for 3 input channels,
    "channel" for depthwise (1 input channel per group), else "mean"."""
    if mode not in FILTER_MODES:
        raise ValueError(f"Unknown filter mode {mode!r}; choose one of {', '.join(FILTER_MODES)}.")
    if mode != "auto":
        return mode
    inputs = int(weight_shape[1])
    return "rgb" if inputs == 3 else "channel" if inputs == 1 else "mean"


def _rgb_grid(w: np.ndarray, gap: int, upscale: int) -> tuple[np.ndarray, GridLayout]:
    out, _, kh, kw = w.shape
    layout = grid_layout(out, kh, kw, gap=gap)
    w = np.nan_to_num(w, nan=0.0, posinf=0.0, neginf=0.0)
    amplitude = np.abs(w).reshape(out, -1).max(axis=1)
    scale = np.where(amplitude > 0, 127.5 / np.where(amplitude > 0, amplitude, 1.0), 0.0).astype(np.float32)
    # (O, 3, kh, kw) -> (O, kh, kw, 3), symmetric around 0 -> 127.5, rounded by +0.5 and truncation.
    values = np.transpose(w, (0, 2, 3, 1)) * scale[:, None, None, None] + np.float32(128.0)
    np.clip(values, 0.0, 255.0, out=values)

    height, width = layout.shape
    mosaic = np.empty((height, width, 3), np.uint8)
    mosaic[...] = SEPARATOR_RGB
    row_stride, item = width * 3, 1
    tiles = np.lib.stride_tricks.as_strided(
        mosaic, shape=(layout.rows, layout.columns, kh, kw, 3),
        strides=((kh + gap) * row_stride, (kw + gap) * 3, row_stride, 3, item))
    full_rows, rest = divmod(out, layout.columns)
    count = full_rows * layout.columns
    if full_rows:
        np.copyto(tiles[:full_rows], values[:count].reshape(full_rows, layout.columns, kh, kw, 3),
                  casting="unsafe")
    if rest:
        np.copyto(tiles[full_rows, :rest], values[count:], casting="unsafe")
    if upscale > 1:
        big = np.empty((height, upscale, width, upscale, 3), np.uint8)
        big[...] = mosaic[:, None, :, None, :]
        mosaic = big.reshape(height * upscale, width * upscale, 3)
    return mosaic, layout


def filter_grid(weight, mode: str = "auto", input_channel: int = 0, colormap: str = "coolwarm",
                gap: int = 1, upscale: int = 1) -> tuple[np.ndarray, GridLayout]:
    """The kernels of a conv layer as one (H, W, 3) uint8 mosaic, one tile per output channel.

    ``weight``: (out, in/groups, kh, kw) tensor or array (``conv.weight``). ``mode``:
    "auto" (see :func:`resolve_mode`), "rgb" (needs 3 input channels), "mean" (mean
    over input channels) or "channel" (input channel ``input_channel``).
    ``colormap`` colours the single-channel modes, symmetric around zero per kernel.
    ``upscale`` repeats every pixel (3x3 kernels are tiny). Returns (rgb, layout); the
    layout maps mosaic pixels (divided by ``upscale``) to (output channel, ky, kx).
    """
    w = _as_weight(weight)
    upscale = int(upscale)
    if upscale < 1:
        raise ValueError(f"upscale must be a whole number of 1 or more, got {upscale}.")
    mode = resolve_mode(w.shape, mode)
    if mode == "rgb":
        if w.shape[1] != 3:
            raise ValueError(f"RGB filters need 3 input channels; this layer's kernels have {w.shape[1]}.")
        return _rgb_grid(w, gap, upscale)
    if mode == "mean":
        maps = w.mean(axis=1)
    else:
        channel = int(input_channel)
        if not 0 <= channel < w.shape[1]:
            raise ValueError(f"Input channel {channel} does not exist; the kernels have "
                             f"{w.shape[1]} input channel(s) (0 to {w.shape[1] - 1}).")
        maps = w[:, channel]
    # A 1x1 kernel scaled around its own zero is always full red or full blue; one scale
    # for the whole layer shows which filters weigh more instead.
    normalize = "layer" if maps.shape[-2:] == (1, 1) else "channel"
    indices, layout = grid_indices(maps, normalize=normalize, gap=gap, signed=True)
    return apply_lut(indices, colormap_lut(colormap), upscale), layout
