"""Channel statistics for one layer's activations: ranking, dead channels, histogram.

All functions take a (C, H, W) torch tensor or numpy array (one image's activations at
one layer) and are vectorised over channels. Non-finite values (NaN, +-Inf) are left out
of every statistic, so a broken channel never poisons the others or warns.
"""
from __future__ import annotations

import numpy as np

RANKINGS = ("mean", "max", "sparsity")


def _as_chw(chw) -> np.ndarray:
    if hasattr(chw, "detach"):  # a torch tensor, on any device
        chw = chw.detach().cpu().numpy()
    array = np.asarray(chw)
    if array.ndim != 3:
        raise ValueError(f"expected (C, H, W) activations, got shape {array.shape}")
    return array.reshape(array.shape[0], -1).astype(np.float64, copy=False)


def channel_scores(chw, by: str = "mean") -> np.ndarray:
    """One number per channel, higher = stronger, as :func:`rank_channels` uses it.

    - ``"mean"``: the mean activation over positions;
    - ``"max"``: the largest activation;
    - ``"sparsity"``: returned here as *activity*, 1 - sparsity, where sparsity is the
      fraction of positions whose value is <= 0 (a unit silent everywhere scores 0).

    Non-finite values are ignored; a channel with no finite value scores -inf.
    """
    if by not in RANKINGS:
        raise ValueError(f"unknown ranking {by!r}; choose one of {', '.join(RANKINGS)}")
    return _scores(_as_chw(chw), by)


def _scores(flat: np.ndarray, by: str) -> np.ndarray:
    """channel_scores on the (C, H*W) float64 array from _as_chw."""
    finite = np.isfinite(flat)
    counts = finite.sum(axis=1)
    empty = counts == 0
    if by == "mean":
        scores = np.where(finite, flat, 0.0).sum(axis=1) / np.maximum(counts, 1)
    elif by == "max":
        scores = np.where(finite, flat, -np.inf).max(axis=1, initial=-np.inf)
    else:
        scores = (finite & (flat > 0)).sum(axis=1) / np.maximum(counts, 1)
    return np.where(empty, -np.inf, scores)


def rank_channels(chw, by: str = "mean") -> np.ndarray:
    """Channel indices, strongest first.

    ``by="mean"`` or ``"max"``: largest mean / maximum activation first. ``by="sparsity"``:
    least sparse first, that is the channels positive at the largest fraction of
    positions (sparsity = fraction of values <= 0); ties there go to the larger mean. Any
    remaining ties keep channel order, so the ranking is deterministic. Returns an int64
    array, a permutation of ``range(C)``.
    """
    if by not in RANKINGS:
        raise ValueError(f"unknown ranking {by!r}; choose one of {', '.join(RANKINGS)}")
    flat = _as_chw(chw)  # once: the sparsity ranking also needs the means
    scores = _scores(flat, by)
    index = np.arange(scores.shape[0])
    if by == "sparsity":
        # np.lexsort sorts by the last key first.
        return np.lexsort((index, -_scores(flat, "mean"), -scores)).astype(np.int64)
    return np.lexsort((index, -scores)).astype(np.int64)


def sparsity(chw) -> np.ndarray:
    """Per channel, the fraction of finite values that are <= 0 (1.0 for a dead channel)."""
    scores = channel_scores(chw, "sparsity")
    return np.where(np.isfinite(scores), 1.0 - scores, 1.0)


def dead_channels(chw) -> np.ndarray:
    """Indices (int64, ascending) of the channels never positive for this image."""
    flat = _as_chw(chw)
    alive = (np.isfinite(flat) & (flat > 0)).any(axis=1)
    return np.flatnonzero(~alive).astype(np.int64)


def activation_histogram(chw, bins: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Histogram of all finite activations of the layer.

    Returns ``(counts, edges)``: ``bins`` int64 counts and ``bins + 1`` float64 edges
    spanning the finite minimum to maximum (a constant layer gets a unit-wide range
    around its value, a layer with no finite value zero counts over [0, 1]).
    """
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    flat = _as_chw(chw).ravel()
    values = flat[np.isfinite(flat)]
    if values.size == 0:
        return np.zeros(bins, dtype=np.int64), np.linspace(0.0, 1.0, bins + 1)
    counts, edges = np.histogram(values, bins=bins)
    return counts.astype(np.int64), edges.astype(np.float64)


def channel_stats(channel_map: np.ndarray) -> dict[str, float]:
    """min, mean, max and the fractions of exact zeros and of negative values."""
    finite = channel_map[np.isfinite(channel_map)]
    if finite.size == 0:
        return {"min": float("nan"), "mean": float("nan"), "max": float("nan"),
                "zeros": 0.0, "negative": 0.0}
    return {"min": float(finite.min()), "mean": float(finite.mean()), "max": float(finite.max()),
            "zeros": float(np.mean(channel_map == 0)), "negative": float(np.mean(channel_map < 0))}
