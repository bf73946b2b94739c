"""Colour levels: which values a layer's channels show at the ends of the colormap.

One function for every picture of a channel: the grid (:func:`~featurescope.core.render.
grids.grid_indices`) scales each channel between the limits of :func:`layer_limits`, and
the Channel view's colour bar shows :func:`channel_levels`, the same limits for one
channel, so the two can never show one channel with different limits. The rules:
"channel" normalisation uses each channel's own finite min..max, "layer" one range for
the whole layer; ``clip_percentile`` p narrows them to the p-th..(100-p)-th percentile
(estimated on a strided subsample); ``signed`` (diverging colormaps) makes them
symmetric around 0; a layer of 1x1 maps is always scaled as one.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np

# Percentiles are estimated on at most this many values per channel (strided
# subsample): exact enough for display clipping, and O(C * 1024) instead of a sort
# of the whole layer.
PERCENTILE_SAMPLES = 1024


# A 1x1 map holds one value: scaled to its own min..max it is always the low colour, so
# every tile of a (C, 1, 1) layer looked the same. Such layers use the layer's scale.
ONE_BY_ONE_NOTE = "1x1 maps: one colour scale for the layer"


def effective_normalize(normalize: str, height: int, width: int) -> tuple[str, str]:
    """(the normalisation really used, a note when it is not ``normalize``): a layer of
    1x1 maps is scaled as one layer."""
    if height * width == 1 and normalize == "channel":
        return "layer", ONE_BY_ONE_NOTE
    return normalize, ""


def as_chw(chw) -> np.ndarray:
    """A (C, H, W) float32 (or float64) numpy view/copy of a tensor or array."""
    if hasattr(chw, "detach") and hasattr(chw, "cpu"):  # a torch tensor; no torch import needed
        chw = chw.detach()
        if not chw.dtype.is_floating_point or chw.dtype.itemsize < 4:
            chw = chw.float()
        chw = chw.cpu().numpy()
    x = np.asarray(chw)
    if x.ndim == 2:
        x = x[None]
    if x.ndim == 4 and x.shape[0] == 1:
        x = x[0]
    if x.ndim != 3:
        raise ValueError(f"Expected a (C, H, W) activation, got shape {tuple(x.shape)}.")
    if x.dtype not in (np.float32, np.float64):
        with np.errstate(over="ignore"):  # float64 beyond float32 range becomes inf, handled later
            x = x.astype(np.float32)
    return x


def finite_min_max(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-row min and max over finite values (float64), and the rows that hold NaN/Inf.

    Plain min/max propagate NaN and reach +-inf, so a row is clean exactly when both are
    finite; only the (usually zero) dirty rows pay for the masked pass.
    """
    lo = flat.min(axis=1).astype(np.float64)
    hi = flat.max(axis=1).astype(np.float64)
    bad = ~(np.isfinite(lo) & np.isfinite(hi))
    if bad.any():
        sub = flat[bad]
        finite = np.isfinite(sub)
        lo[bad] = np.min(sub, axis=1, where=finite, initial=np.inf)
        hi[bad] = np.max(sub, axis=1, where=finite, initial=-np.inf)
        empty = ~np.isfinite(lo)  # no finite value at all
        lo[empty] = 0.0
        hi[empty] = 0.0
    return lo, hi, bad


def layer_limits(flat: np.ndarray, width: int, normalize: str = "channel",
                 clip_percentile: Optional[float] = None, signed: bool = False,
                 min_max: Optional[tuple] = None) -> tuple[np.ndarray, np.ndarray]:
    """Per channel (rows of the (C, H*W) ``flat``; ``width`` the map's W), the values
    shown at the low and high ends of the colormap: float64 arrays (lo, hi). See the
    module docstring for the rules; ``normalize`` must already be the effective one
    (:func:`effective_normalize`). ``min_max``: :func:`finite_min_max` of ``flat`` when
    the caller has it. A range may be empty (a constant channel)."""
    lo, hi, _bad = finite_min_max(flat) if min_max is None else min_max
    if clip_percentile:
        p = float(clip_percentile)
        if not 0.0 <= p < 50.0:
            raise ValueError(f"clip_percentile must be between 0 and 50, got {clip_percentile}.")
        lo, hi = _percentile_limits(flat, width, p, normalize == "channel", signed)
    if normalize == "layer":
        lo = np.full(flat.shape[0], lo.min())
        hi = np.full(flat.shape[0], hi.max())
    if signed:
        amp = np.maximum(np.abs(lo), np.abs(hi))
        lo, hi = -amp, amp
    return lo, hi


def channel_levels(chw, channel: int, normalize: str = "channel",
                   clip_percentile: Optional[float] = None, signed: bool = False) -> tuple[float, float]:
    """The colour-bar limits of channel ``channel`` of the (C, H, W) layer ``chw``: the
    grid's limits for that channel, widened to a non-empty range that keeps the grid's
    colour (a constant channel is its low end; signed, 0 stays in the middle). Per
    channel it reads that channel only; per layer, the whole layer."""
    x = as_chw(chw)
    channels, height, width = x.shape
    normalize, _note = effective_normalize(normalize, height, width)
    if normalize == "layer":
        flat, row = x.reshape(channels, -1), channel
    else:
        flat, row = x[channel].reshape(1, -1), 0
    lo, hi = layer_limits(flat, width, normalize, clip_percentile, signed)
    low, high = float(lo[row]), float(hi[row])
    if not high > low:
        return (-1.0, 1.0) if signed else (low, low + 1.0)
    return low, high


def _sample(flat: np.ndarray, width: int) -> np.ndarray:
    """A strided subsample of each row (at most ~PERCENTILE_SAMPLES values). The stride is
    made coprime with the map width so the sample does not fall on a few columns."""
    step = max(1, flat.shape[1] // PERCENTILE_SAMPLES)
    while step > 1 and math.gcd(step, width) != 1:
        step += 1
    return flat[:, ::step]


def _percentile_limits(flat, width, p, per_channel, signed):
    sample = _sample(flat, width)
    if not per_channel:
        sample = sample.reshape(1, -1)
    if signed:
        sample = np.abs(sample)
        qs = [100.0 - p]
    else:
        qs = [p, 100.0 - p]
    finite = np.isfinite(sample)
    if finite.all():  # the usual case: plain percentile (partition), no per-row Python loop
        limits = np.percentile(sample, qs, axis=1)
    else:
        limits = np.empty((len(qs), sample.shape[0]))
        clean = finite.all(axis=1)
        limits[:, clean] = np.percentile(sample[clean], qs, axis=1)
        dirty = np.where(finite[~clean], sample[~clean], np.nan)
        with np.errstate(all="ignore"), _quiet_nan_warnings():
            limits[:, ~clean] = np.nanpercentile(dirty, qs, axis=1)
    limits = np.where(np.isfinite(limits), limits, 0.0)
    if signed:
        return -limits[0], limits[0]
    return limits[0], limits[1]


class _quiet_nan_warnings:
    """nanpercentile warns 'All-NaN slice' for a channel with no finite value; we map such
    channels to a constant colour on purpose."""

    def __enter__(self):
        import warnings

        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc):
        return self._ctx.__exit__(*exc)
