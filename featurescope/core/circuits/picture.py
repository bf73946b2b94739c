"""A walked trail as one picture, for a paper or a lecture.

One row per step, from the class (or the first target) down to the first layer: the
target channel's thumbnail and name, then its strongest inputs, each with its
thumbnail, its expanded-weight kernel (blue inhibits, red excites) and its
contribution. Thumbnails are the channel's feature visualisation where the cache has
it, else the channel's map over the photo (core/circuits/trail.py).
"""
from __future__ import annotations

from typing import Optional

import numpy as np
from PIL import Image, ImageDraw

from featurescope.core.circuits.circuit import Circuit
from featurescope.core.circuits.graph import CLASS
from featurescope.core.circuits.trail import cached_visualisation, map_over_photo, photo_of
from featurescope.core.render.annotate import _font, model_label

BACKGROUND = (24, 24, 24)
TEXT = (235, 235, 235)
DIM = (150, 150, 150)
EXCITE = (120, 210, 120)
INHIBIT = (235, 110, 110)


def kernel_picture(kernel: np.ndarray, side: int) -> np.ndarray:
    """A signed (kh, kw) kernel as a ``side`` x ``side`` RGB tile on a diverging scale
    symmetric about zero (coolwarm: blue negative, white zero, red positive)."""
    from featurescope.core.render.grids import colormap_lut

    values = np.nan_to_num(np.asarray(kernel, dtype=np.float32))
    peak = float(np.abs(values).max()) or 1.0
    index = np.clip(np.round(128 + 127 * values / peak), 1, 255).astype(np.intp)
    rgb = colormap_lut("coolwarm")[index]
    return np.asarray(Image.fromarray(rgb).resize((side, side), Image.NEAREST))


def channel_thumbnail(model, layer: str, channel: int, maps: Optional[np.ndarray], picture,
                      cache=None) -> np.ndarray:
    """The channel's visualisation from the cache, else its map over the photo; for a
    class, the photo itself."""
    if layer == CLASS:
        return picture if picture is not None else np.zeros((8, 8, 3), np.uint8)
    found = cached_visualisation(model, layer, channel, cache)
    if found is not None:
        return found
    return map_over_photo(maps[channel], picture)


def _paste(canvas: Image.Image, rgb: np.ndarray, left: int, top: int, side: int) -> None:
    canvas.paste(Image.fromarray(np.ascontiguousarray(rgb)).resize((side, side), Image.BILINEAR), (left, top))


def trail_picture(model, image, trail: list[Circuit], inputs: int = 4, tile: int = 96, cache=None,
                  title: Optional[str] = None) -> np.ndarray:
    """The ``trail`` (from :func:`~featurescope.core.circuits.trail.walk_back`) as one
    (H, W, 3) uint8 picture: per step the target and its ``inputs`` strongest sources."""
    picture = photo_of(model, image)
    small, kernel_side, gap, label_w = tile * 3 // 4, tile * 3 // 8, 10, 200
    column = small + kernel_side + gap
    row_h = max(tile, small + 28) + gap
    title_h = 34
    width = label_w + tile + 40 + inputs * column + gap
    canvas = Image.new("RGB", (width, title_h + len(trail) * row_h + gap), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    font, small_font = _font(15), _font(12)
    heading = title or f"How {_target_name(model, trail[0])} is built - {model_label(model)}"
    draw.text((gap, 9), heading, fill=TEXT, font=font)
    previous_maps = _maps_of(model, image, trail[0].layer)
    for r, step in enumerate(trail):
        top = title_h + r * row_h
        draw.text((gap, top + 4), _target_name(model, step), fill=TEXT, font=font)
        draw.text((gap, top + 26), f"value {step.value:.3g}", fill=DIM, font=small_font)
        draw.text((gap, top + 44), f"inputs from {step.source}", fill=DIM, font=small_font)
        thumb = channel_thumbnail(model, step.layer, step.channel, previous_maps, picture, cache)
        _paste(canvas, thumb, label_w, top, tile)
        draw.text((label_w + tile + 12, top + tile // 2 - 10), "<-", fill=TEXT, font=font)
        for k, source in enumerate(step.sources[:inputs]):
            left = label_w + tile + 40 + k * column
            _paste(canvas, channel_thumbnail(model, step.source, source.channel, step.maps, picture, cache),
                   left, top, small)
            if source.expanded_weight is not None:
                kernel = kernel_picture(source.expanded_weight, kernel_side)
                canvas.paste(Image.fromarray(kernel), (left + small + 2, top))
            colour = EXCITE if source.contribution > 0 else INHIBIT
            draw.text((left, top + small + 3), f"{source.channel}  {source.contribution:+.3g}",
                      fill=colour, font=small_font)
        previous_maps = step.maps
    return np.asarray(canvas)


def _maps_of(model, image, layer: str) -> Optional[np.ndarray]:
    """The (C, H, W) maps of ``layer`` on the photo (None for a class)."""
    if layer == CLASS:
        return None
    from featurescope.core.capture.capture import capture

    return np.asarray(capture(model, image, layers=[layer])[layer], dtype=np.float32)


def _target_name(model, step: Circuit) -> str:
    if step.layer == CLASS:
        return f"class {step.label}" if step.label else f"class {step.channel}"
    return f"{step.layer} ch {step.channel}"
