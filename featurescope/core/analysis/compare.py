"""Compare two images at one layer: A, B, |A - B| on one colour scale, and similarity.

Both results come from :func:`featurescope.core.capture.capture.capture` with the same model
(anything with ``layer in result`` and ``result[layer]`` -> (C, H, W) works, a dict of
arrays included). Everything is vectorised over channels.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from featurescope.core.errors import FeaturescopeError


class ComparisonError(FeaturescopeError):
    """Two results that cannot be compared at a layer (missing layer, different shapes)."""


@dataclass(frozen=True)
class LayerComparison:
    """Image A against image B at one layer.

    ``a``, ``b``: the (C, H, W) float32 activations; ``difference``: ``|a - b|``.
    ``shared_levels``: ``(low, high)``, one colour scale for the A, B and difference
    pictures (the finite minimum and maximum over all three), so equal colours mean equal
    values. ``channel_levels``: (C, 2) the same per channel, for per-channel normalisation.
    ``channel_similarity``: (C,) cosine similarity of each channel of A with the same
    channel of B, in [-1, 1]. ``similarity``: the cosine similarity of the whole layer.
    Non-finite values count as 0; two all-zero channels are identical (1.0), an all-zero
    channel against a non-zero one is 0.0, so there is never a NaN.
    """

    layer: str
    a: np.ndarray
    b: np.ndarray
    difference: np.ndarray
    shared_levels: tuple[float, float]
    channel_levels: np.ndarray
    channel_similarity: np.ndarray
    similarity: float

    @property
    def mean_abs_difference(self) -> float:
        """The mean of |A - B| over the finite values of the layer (0.0 if none)."""
        finite = self.difference[np.isfinite(self.difference)]
        return float(finite.mean()) if finite.size else 0.0

    def most_different_channels(self) -> np.ndarray:
        """Channel indices, least similar first (ties in channel order)."""
        order = np.lexsort((np.arange(self.channel_similarity.size), self.channel_similarity))
        return order.astype(np.int64)


def _array(result, layer: str, which: str) -> np.ndarray:
    try:
        present = layer in result
    except TypeError:
        present = False
    if not present:
        raise ComparisonError(f"Image {which}'s capture has no layer {layer!r}; capture that "
                              f"layer for both images to compare them.")
    value = result[layer]
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    value = np.asarray(value, dtype=np.float32)
    if value.ndim != 3:
        raise ComparisonError(f"Layer {layer!r} of image {which} is not a (C, H, W) feature "
                              f"map (shape {value.shape}).")
    return value


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of (N, K) arrays, with the zero rules above."""
    dot = np.einsum("nk,nk->n", a, b)
    squares_a = np.einsum("nk,nk->n", a, a)
    squares_b = np.einsum("nk,nk->n", b, b)
    both_zero = (squares_a == 0) & (squares_b == 0)
    # sqrt of the product, not a product of sqrts: identical rows then give exactly 1.
    denominator = np.sqrt(squares_a * squares_b)
    safe = np.where(denominator > 0, denominator, 1.0)
    cosine = np.where(denominator > 0, dot / safe, 0.0)
    return np.clip(np.where(both_zero, 1.0, cosine), -1.0, 1.0)


def _levels(stack: np.ndarray, axis) -> tuple[np.ndarray, np.ndarray]:
    finite = np.isfinite(stack)
    low = np.where(finite, stack, np.inf).min(axis=axis)
    high = np.where(finite, stack, -np.inf).max(axis=axis)
    empty = ~finite.any(axis=axis)
    return np.where(empty, 0.0, low), np.where(empty, 0.0, high)


def compare_layer(result_a, result_b, layer: str) -> LayerComparison:
    """Compare two captures at ``layer``; see :class:`LayerComparison` for what comes back.

    Raises ComparisonError when a result lacks the layer or the two feature maps differ
    in shape (images captured with different models or input sizes).
    """
    a = _array(result_a, layer, "A")
    b = _array(result_b, layer, "B")
    if a.shape != b.shape:
        raise ComparisonError(f"Layer {layer!r} has shape {a.shape} for image A but {b.shape} "
                              f"for image B; capture both with the same model and input size.")
    with np.errstate(invalid="ignore", over="ignore"):
        difference = np.abs(a - b)
    channels = a.shape[0]
    # (3, C, H*W): A, B and the difference, for one scale over all three pictures.
    stack = np.stack([a, b, difference]).reshape(3, channels, -1).astype(np.float64)
    low, high = _levels(stack.transpose(1, 0, 2).reshape(channels, -1), axis=1)
    all_low, all_high = _levels(stack.reshape(-1), axis=0)
    flat_a = np.nan_to_num(a.reshape(channels, -1).astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    flat_b = np.nan_to_num(b.reshape(channels, -1).astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    return LayerComparison(
        layer=layer,
        a=a,
        b=b,
        difference=difference,
        shared_levels=(float(all_low), float(all_high)),
        channel_levels=np.stack([low, high], axis=1),
        channel_similarity=_cosine(flat_a, flat_b),
        similarity=float(_cosine(flat_a.reshape(1, -1), flat_b.reshape(1, -1))[0]),
    )


def shared_index_grids(comparison: LayerComparison, columns=None, gap: int = 1, order=None):
    """A, B and |A - B| tiled like feature grids, all three on ``shared_levels``.

    Returns ``({"a": idx, "b": idx, "difference": idx}, layout)``: uint8 (H, W) index
    mosaics (0 on separators, 1..255 from ``shared_levels[0]`` to ``shared_levels[1]``,
    non-finite values at the low end) and the one ``GridLayout`` they share. Colour them
    with ``grids.colormap_lut(name)[idx]``, so equal colours mean equal values in all
    three pictures. ``order``: an optional permutation (position -> true channel).
    """
    from featurescope.core.render.grids import grid_layout, tile_mosaic

    channels, height, width = comparison.a.shape
    layout = grid_layout(channels, height, width, columns=columns, gap=gap, order=order)
    low, high = comparison.shared_levels
    span = (high - low) if high > low else 1.0
    pictures = {}
    for key, chw in (("a", comparison.a), ("b", comparison.b), ("difference", comparison.difference)):
        with np.errstate(invalid="ignore", over="ignore"):
            scaled = (np.nan_to_num(chw[np.asarray(layout.order)].astype(np.float64), nan=low,
                                    posinf=high, neginf=low) - low) / span
        values = (1 + np.rint(np.clip(scaled, 0.0, 1.0) * 254)).astype(np.uint8)
        pictures[key] = tile_mosaic(values, layout)
    return pictures, layout


def compare_with_grids(result_a, result_b, layer: str):
    """(comparison, its three shared-scale index mosaics, their layout): what the Compare
    view shows, in one call for its worker."""
    comparison = compare_layer(result_a, result_b, layer)
    pictures, layout = shared_index_grids(comparison)
    return comparison, pictures, layout
