"""Feature-map grids: normalisation, tiling, colour lookup, pixel <-> channel geometry.

All channels of a layer become one mosaic of tiles separated by thin lines. The work is
split so that the GUI and the exported PNGs show the same picture:

- :func:`grid_indices` normalises every channel to 1..255 and tiles the channels into one
  uint8 image (0 on separators and empty tiles),
- :func:`colormap_lut` gives a (256, 3) table whose entry 0 is the separator colour,
- :func:`feature_grid` is ``colormap_lut(name)[grid_indices(...)[0]]``, optionally upscaled.

Everything is vectorised over channels: a handful of whole-array numpy passes, and the
tiling is a single strided write into a preallocated mosaic.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from featurescope.core.render.levels import (as_chw, effective_normalize, finite_min_max,
                                             layer_limits)
from featurescope.core.resources import resource_path

# Tables sampled from matplotlib once; see resources/colormaps/README.md for licences.
COLORMAPS = ("gray", "viridis", "magma", "inferno", "plasma", "coolwarm", "rdbu")
# Diverging maps: feature_grid scales values symmetrically around 0 for these by default.
DIVERGING = ("coolwarm", "rdbu")
# Entry 0 of every lookup table: the separator between tiles, a dark neutral grey.
SEPARATOR_RGB = (48, 48, 48)

NORMALIZE_MODES = ("channel", "layer")
ORDER_MODES = ("index", "mean", "max", "sparsity")

@functools.lru_cache(maxsize=1)
def _tables() -> dict:
    with np.load(resource_path("colormaps", "colormaps.npz")) as data:
        return {name: data[name] for name in data.files}


@functools.lru_cache(maxsize=None)
def colormap_lut(name: str = "viridis") -> np.ndarray:
    """The (256, 3) uint8 lookup table of colormap ``name`` (one of :data:`COLORMAPS`).

    Entry 0 is the separator colour (:data:`SEPARATOR_RGB`); entries 1..255 run through
    the colormap from its lowest to its highest colour (both ends exact). The array is
    read-only and shared; copy it to modify it. Raises ValueError for an unknown name.
    """
    key = str(name).lower()
    if key not in COLORMAPS:
        raise ValueError(f"Unknown colormap {name!r}; choose one of {', '.join(COLORMAPS)}.")
    table = _tables()[key]  # (256, 3) from matplotlib
    lut = np.empty((256, 3), np.uint8)
    lut[0] = SEPARATOR_RGB
    # 255 colours spread over the 256-entry table; both ends hit exactly, and index 128
    # (zero for signed maps) falls on the table's centre.
    lut[1:] = table[np.round(np.linspace(0, 255, 255)).astype(np.intp)]
    lut.flags.writeable = False
    return lut


@dataclass(frozen=True, eq=False)
class GridLayout:
    """Where each channel sits in a mosaic of ``rows`` x ``columns`` tiles.

    ``order[position]`` is the true channel index shown at tile ``position`` (row-major).
    Tiles are ``tile_height`` x ``tile_width`` pixels with ``gap`` separator pixels
    between them (none around the outside). Coordinates are in un-upscaled pixels:
    divide by the upscale factor first. ``note`` is a sentence for the user about how
    the grid was drawn ("" when there is nothing to say), e.g. :data:`~featurescope.core.render.levels.ONE_BY_ONE_NOTE`.
    """

    channels: int
    tile_height: int
    tile_width: int
    rows: int
    columns: int
    gap: int
    order: np.ndarray
    note: str = ""

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) of the mosaic in pixels."""
        return (self.rows * self.tile_height + (self.rows - 1) * self.gap,
                self.columns * self.tile_width + (self.columns - 1) * self.gap)

    def locate(self, y: int, x: int) -> Optional[tuple[int, int, int]]:
        """The (channel, row_in_map, col_in_map) shown at mosaic pixel (y, x), or None on a
        separator, an empty tile or outside the mosaic."""
        y, x = int(y), int(x)
        height, width = self.shape
        if not (0 <= y < height and 0 <= x < width):
            return None
        row, ty = divmod(y, self.tile_height + self.gap)
        col, tx = divmod(x, self.tile_width + self.gap)
        if ty >= self.tile_height or tx >= self.tile_width:
            return None
        position = row * self.columns + col
        if position >= self.channels:
            return None
        return int(self.order[position]), ty, tx

    def position(self, channel: int) -> int:
        """The tile position (row-major) of true channel ``channel``."""
        hits = np.flatnonzero(self.order == int(channel))
        if hits.size == 0:
            raise IndexError(f"Channel {channel} is not in this grid of {self.channels} channels.")
        return int(hits[0])

    def tile_origin(self, channel: int) -> tuple[int, int]:
        """(y0, x0) of the top-left pixel of true channel ``channel``'s tile."""
        row, col = divmod(self.position(channel), self.columns)
        return row * (self.tile_height + self.gap), col * (self.tile_width + self.gap)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, GridLayout):
            return NotImplemented
        return (
            (self.channels, self.tile_height, self.tile_width, self.rows, self.columns, self.gap)
            == (other.channels, other.tile_height, other.tile_width, other.rows, other.columns, other.gap)
            and np.array_equal(self.order, other.order)
        )

    __hash__ = None  # mutable-looking array inside; layouts are compared, not hashed


def grid_layout(channels: int, tile_height: int, tile_width: int, columns: Optional[int] = None,
                gap: int = 1, order: Optional[Sequence[int]] = None, note: str = "") -> GridLayout:
    """A near-square layout for ``channels`` tiles (square in pixels, so wide maps get
    fewer columns). ``columns`` forces the column count; ``order`` is the true channel
    for each position (a permutation of range(channels); default: index order);
    ``note`` is carried to the layout's ``note``."""
    channels, tile_height, tile_width, gap = int(channels), int(tile_height), int(tile_width), int(gap)
    if channels < 1 or tile_height < 1 or tile_width < 1:
        raise ValueError(f"A grid needs at least one channel and one pixel, got {channels} "
                         f"channels of {tile_height}x{tile_width}.")
    if gap < 0:
        raise ValueError(f"The gap between tiles must be 0 or more pixels, got {gap}.")
    if columns is None:
        aspect = (tile_height + gap) / (tile_width + gap)
        columns = math.ceil(math.sqrt(channels * aspect))
    columns = max(1, min(int(columns), channels))
    rows = math.ceil(channels / columns)
    if order is None:
        order_array = np.arange(channels, dtype=np.intp)
    else:
        order_array = np.asarray(order, dtype=np.intp).reshape(-1)
        if order_array.size != channels or not np.array_equal(np.sort(order_array), np.arange(channels)):
            raise ValueError(f"order must be a permutation of the {channels} channel indices.")
    order_array.flags.writeable = False
    return GridLayout(channels, tile_height, tile_width, rows, columns, gap, order_array, str(note))


# --------------------------------------------------------------------------- internals

def _channel_scores(flat: np.ndarray, order: str, hi: Optional[np.ndarray] = None,
                    bad: Optional[np.ndarray] = None) -> np.ndarray:
    if order == "max":
        if hi is None:
            _, hi, _ = finite_min_max(flat)
        return hi
    score = flat.mean(axis=1, dtype=np.float64)
    if bad is None:
        bad = ~np.isfinite(score)
    if bad.any():
        sub = flat[bad]
        finite = np.isfinite(sub)
        with np.errstate(invalid="ignore", divide="ignore"):
            total = np.sum(sub, axis=1, where=finite, dtype=np.float64)
            count = finite.sum(axis=1)
            score[bad] = np.where(count > 0, total / np.maximum(count, 1), -np.inf)
    return score


def _order_from(flat: np.ndarray, order, hi=None, bad=None) -> np.ndarray:
    channels = flat.shape[0]
    if isinstance(order, str):
        if order == "index":
            return np.arange(channels, dtype=np.intp)
        if order not in ORDER_MODES:
            raise ValueError(f"Unknown channel order {order!r}; choose one of {', '.join(ORDER_MODES)}.")
        if order == "sparsity":  # most active first, exactly as stats.rank_channels ranks
            from featurescope.core.analysis.stats import rank_channels

            return rank_channels(flat[:, None, :], "sparsity").astype(np.intp)
        score = _channel_scores(flat, order, hi, bad)
        score = np.where(np.isnan(score), -np.inf, score)
        return np.argsort(-score, kind="stable").astype(np.intp)
    return np.asarray(order, dtype=np.intp).reshape(-1)


def channel_order(chw, order: str = "index") -> np.ndarray:
    """Channel indices in display order: "index" (0, 1, 2, ...), or "mean" / "max" with
    the strongest channel first (ties keep index order; all-NaN channels come last), or
    "sparsity": the channels positive at the most positions first (stats.rank_channels)."""
    x = as_chw(chw)
    return _order_from(x.reshape(x.shape[0], -1), order)


def _tile_views(mosaic: np.ndarray, layout: GridLayout):
    """(rows, columns, th, tw) writable view of the tiles inside ``mosaic``."""
    th, tw, gap = layout.tile_height, layout.tile_width, layout.gap
    width = mosaic.shape[1]
    item = mosaic.itemsize
    return np.lib.stride_tricks.as_strided(
        mosaic, shape=(layout.rows, layout.columns, th, tw),
        strides=((th + gap) * width * item, (tw + gap) * item, width * item, item))


def tile_mosaic(values: np.ndarray, layout: GridLayout, offset: float = 0) -> np.ndarray:
    """The uint8 mosaic of ``layout`` with ``values + offset`` in the tiles and 0 on
    separators and empty tiles. ``values``: (C, th, tw) in tile-position order; the sum
    is cast unsafely (truncated) into the tiles in one strided write per tile row block."""
    channels, height, width = layout.channels, layout.tile_height, layout.tile_width
    mosaic = np.zeros(layout.shape, np.uint8)
    tiles = _tile_views(mosaic, layout)
    full_rows, rest = divmod(channels, layout.columns)
    count = full_rows * layout.columns
    if full_rows:
        np.add(values[:count].reshape(full_rows, layout.columns, height, width), offset,
               out=tiles[:full_rows], casting="unsafe")
    if rest:
        np.add(values[count:], offset, out=tiles[full_rows, :rest], casting="unsafe")
    return mosaic


def grid_indices(chw, normalize: str = "channel", order="index", columns: Optional[int] = None,
                 gap: int = 1, clip_percentile: Optional[float] = None,
                 signed: bool = False) -> tuple[np.ndarray, GridLayout]:
    """Normalise and tile a (C, H, W) activation into one uint8 index image.

    Arguments: ``normalize`` "channel" (each channel to its own min..max) or "layer" (one
    min..max for all); ``order`` "index" / "mean" / "max" or an explicit permutation;
    ``columns`` / ``gap`` the layout; ``clip_percentile`` p clips to the p-th..(100-p)-th
    percentile (estimated on a subsample); ``signed`` scales symmetrically around 0 so
    that 0 maps to 128 (for diverging colormaps).

    Returns (indices, layout): indices is (H, W) uint8 with 0 on separators and empty
    tiles, 1..255 the normalised values (1 = low, 255 = high). NaN maps to the low end
    (the middle when signed), +Inf to 255, -Inf to 1; a constant channel maps to 1 (128
    when signed and zero). No warnings are emitted for any of these.

    A layer of 1x1 maps is always scaled as one ("layer"): per-channel scaling of a
    single value would paint every tile the same colour. The layout's ``note`` then
    says so (:func:`~featurescope.core.render.levels.effective_normalize`).
    """
    if normalize not in NORMALIZE_MODES:
        raise ValueError(f"Unknown normalisation {normalize!r}; choose one of {', '.join(NORMALIZE_MODES)}.")
    x = as_chw(chw)
    channels, height, width = x.shape
    flat = x.reshape(channels, -1)

    normalize, note = effective_normalize(normalize, height, width)
    min_max = finite_min_max(flat)
    perm = _order_from(flat, order, min_max[1], min_max[2])
    layout = grid_layout(channels, height, width, columns=columns, gap=gap, order=perm, note=note)
    lo, hi = layer_limits(flat, width, normalize, clip_percentile, signed, min_max)
    bad = min_max[2]
    clip = bool(clip_percentile)

    # Scale to the index range, before the +offset: unsigned -> [0, 254] then +1.5,
    # signed -> [-127, 127] then +128.5; truncating the cast then rounds to 1..255.
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if signed:
            amp = np.maximum(np.abs(lo), np.abs(hi))
            scale = np.where(amp > 0, 127.0 / np.where(amp > 0, amp, 1.0), 0.0)
            shift, offset, low, high = None, 128.5, -127.0, 127.0
        else:
            span = hi - lo
            scale = np.where(span > 0, 254.0 / np.where(span > 0, span, 1.0), 0.0)
            shift, offset, low, high = lo, 1.5, 0.0, 254.0
        # float32 unless (x - lo) could overflow it (values near 3e38).
        dtype = np.float32 if np.all(np.abs(np.stack([lo, hi])) < 1e37) else np.float64

    identity = np.array_equal(perm, np.arange(channels))
    if identity:  # first pass reads x and writes the work buffer
        buf = np.empty((channels, height, width), dtype)
        first = x
    else:  # the reordering gather is the first pass; the rest works in place
        buf = np.take(x, perm, axis=0).astype(dtype, copy=False)
        first = buf
    if shift is None:
        np.multiply(first, scale[perm].astype(dtype)[:, None, None], out=buf)
    else:
        np.subtract(first, shift[perm].astype(dtype)[:, None, None], out=buf)
        np.multiply(buf, scale[perm].astype(dtype)[:, None, None], out=buf)
    if clip:
        np.clip(buf, low, high, out=buf)
    bad_pos = np.flatnonzero(bad[perm])
    if bad_pos.size:
        with np.errstate(invalid="ignore", over="ignore"):
            raw = x[perm[bad_pos]]
            fixed = buf[bad_pos]
            fixed[np.isnan(fixed)] = 0.0 if signed else low  # NaN, and inf * 0 on flat channels
            fixed[raw == np.inf] = high
            fixed[raw == -np.inf] = low
            np.clip(fixed, low, high, out=fixed)
            buf[bad_pos] = fixed

    return tile_mosaic(buf, layout, offset), layout


def apply_lut(indices: np.ndarray, lut: np.ndarray, upscale: int = 1) -> np.ndarray:
    """``lut[indices]`` as a contiguous (H*upscale, W*upscale, 3) uint8 image.

    Uses Pillow's palette conversion: about 3x faster than numpy fancy indexing, and
    upscaling the 1-byte index image before the lookup is the cheapest integer repeat.
    """
    from PIL import Image

    upscale = int(upscale)
    if upscale < 1:
        raise ValueError(f"upscale must be a whole number of 1 or more, got {upscale}.")
    indices = np.ascontiguousarray(indices, dtype=np.uint8)
    height, width = indices.shape
    image = Image.frombytes("P", (width, height), indices.tobytes())
    image.putpalette(np.ascontiguousarray(lut, dtype=np.uint8).tobytes())
    if upscale > 1:
        image = image.resize((width * upscale, height * upscale), Image.Resampling.NEAREST)
    return np.asarray(image.convert("RGB"))


def feature_grid(chw_tensor_or_array, normalize: str = "channel", colormap: str = "viridis",
                 order="index", columns: Optional[int] = None, gap: int = 1,
                 clip_percentile: Optional[float] = None, upscale: int = 1,
                 signed: Optional[bool] = None) -> np.ndarray:
    """All channels of a (C, H, W) activation as one (H, W, 3) uint8 RGB mosaic.

    Equal to ``colormap_lut(colormap)[grid_indices(...)[0]]``, each pixel repeated
    ``upscale`` times in both directions. ``signed`` None means: symmetric around 0 for
    diverging colormaps (coolwarm, rdbu), min..max otherwise. Accepts a torch tensor or
    a numpy array. See :func:`grid_indices` for the other arguments.
    """
    if signed is None:
        signed = str(colormap).lower() in DIVERGING
    lut = colormap_lut(colormap)
    indices, _ = grid_indices(chw_tensor_or_array, normalize=normalize, order=order,
                              columns=columns, gap=gap, clip_percentile=clip_percentile,
                              signed=signed)
    return apply_lut(indices, lut, upscale)
