"""The whole network at a glance: one tile per captured layer, from the photo to the
last layer, each drawn at a size that shows how the spatial size shrinks.

:func:`overview_tiles` picks one map per layer (the channel most active for this photo,
or the mean over channels); :func:`overview_poster` lays them out as one labelled
picture (``featurescope overview``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

REDUCTIONS = ("most_active", "mean", "max")


@dataclass
class OverviewTile:
    """One layer in the overview: ``map`` (H, W) float32, ``channel`` the channel shown
    (-1 for a reduction over channels), ``shape`` the layer's (C, H, W)."""

    layer: str
    kind: str
    channel: int
    map: np.ndarray
    shape: tuple[int, int, int]


def overview_tiles(result, reduction: str = "most_active",
                   layers: Optional[list[str]] = None) -> list[OverviewTile]:
    """One :class:`OverviewTile` per captured layer of ``result`` in network order.

    ``reduction``: "most_active" (the channel with the largest mean activation),
    "mean" or "max" (over channels). Layers not kept within a memory budget are
    skipped. Raises ValueError for an unknown reduction.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {', '.join(REDUCTIONS)}, not {reduction!r}")
    tiles = []
    for name in layers or result.layers:
        if name not in result:
            continue
        maps = result[name]
        if maps.dim() != 3:
            continue
        if reduction == "most_active":
            channel = int(maps.flatten(1).mean(dim=1).argmax())
            chosen = maps[channel]
        elif reduction == "mean":
            channel, chosen = -1, maps.mean(dim=0)
        else:
            channel, chosen = -1, maps.amax(dim=0)
        tiles.append(OverviewTile(name, result.info[name].kind, channel,
                                  chosen.numpy().astype(np.float32), tuple(maps.shape)))
    return tiles


def tile_side(height: int, input_height: int, largest: int = 160, smallest: int = 28) -> int:
    """The drawn side of a tile for a map ``height`` rows tall: proportional to the map's
    size against the input (so halving shows as halving), never below ``smallest``."""
    return max(smallest, int(round(largest * height / max(1, input_height))))


def tile_picture(map_: np.ndarray, side: int, colormap: str = "viridis") -> np.ndarray:
    """A map as a ``side`` x ``side`` RGB picture (its own min..max, nearest-neighbour)."""
    from PIL import Image

    from featurescope.core.render.grids import colormap_lut

    lo, hi = float(np.nanmin(map_)), float(np.nanmax(map_))
    scaled = np.zeros_like(map_) if hi <= lo else (map_ - lo) / (hi - lo)
    indices = np.clip((scaled * 255).round(), 0, 255).astype(np.uint8)
    rgb = colormap_lut(colormap)[indices]
    return np.asarray(Image.fromarray(rgb).resize((side, side), Image.NEAREST))


def input_label(channels: int, height: int, width: int) -> str:
    """"224x224 RGB", "28x28 grey" or "64x64, 4 channels": what the network's input is."""
    kind = {1: "grey", 3: "RGB"}.get(channels)
    return f"{height}x{width} {kind}" if kind else f"{height}x{width}, {channels} channels"


def overview_poster(result, picture: Optional[np.ndarray] = None, reduction: str = "most_active",
                    colormap: str = "viridis", width: int = 1600, title: str = "") -> np.ndarray:
    """The poster: the photo the network saw (``picture``, (H, W, 3) uint8) and one
    labelled tile per layer, in network order, wrapped into rows at most ``width``
    pixels wide. Returns an (H, W, 3) uint8 array."""
    from PIL import Image, ImageDraw

    from featurescope.core.render.annotate import _font

    tiles = overview_tiles(result, reduction)
    input_height = int(result.input.shape[-2])
    font, small = _font(13), _font(11)
    gap, label_h, margin = 10, 30, 16
    items = []
    if picture is not None:
        side = tile_side(input_height, input_height)
        image = np.asarray(Image.fromarray(picture).resize((side, side), Image.BILINEAR))
        items.append((image, "input", input_label(int(result.input.shape[1]), *picture.shape[:2])))
    for tile in tiles:
        c, h, w = tile.shape
        which = f"ch {tile.channel}" if tile.channel >= 0 else reduction
        items.append((tile_picture(tile.map, tile_side(h, input_height), colormap),
                      tile.layer, f"{c}x{h}x{w}  {which}"))
    label_w = 150  # each cell at least as wide as its label
    rows, row, x = [], [], margin
    for item in items:
        cell = max(item[0].shape[1], label_w)
        if row and x + cell > width - margin:
            rows.append(row)
            row, x = [], margin
        row.append((x, item))
        x += cell + gap
    if row:
        rows.append(row)
    heights = [max(item[0].shape[0] for _x, item in r) + label_h for r in rows]
    header = 34 if title else 10
    canvas = Image.new("RGB", (width, header + sum(heights) + gap * len(rows) + margin), (250, 250, 250))
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((margin, 8), title, fill=(20, 20, 20), font=_font(18))
    y = header
    for r, height in zip(rows, heights):
        for x, (image, name, detail) in r:
            canvas.paste(Image.fromarray(image), (x, y))
            top = y + image.shape[0] + 2
            draw.text((x, top), name, fill=(20, 20, 20), font=font)
            draw.text((x, top + 14), detail, fill=(90, 90, 90), font=small)
        y += height + gap
    return np.asarray(canvas)
