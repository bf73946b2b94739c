"""Pictures of a channel attribution: a channel's map over the photo, its contribution
map, the deletion curves, and the one-page report ``featurescope why -o`` writes.

The app's Why view shows the same thumbnails (:func:`channel_over_photo`,
:func:`contribution_picture`), so a report and the view agree.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
from PIL import Image, ImageDraw

from featurescope.core.render.annotate import _font, _text_size

# Curve colours: contribution ranking, strongest-activation ranking, random channels.
CURVE_COLOURS = {"top": (214, 39, 40), "strongest": (31, 119, 180), "random": (127, 127, 127)}
CURVE_NAMES = {"top": "top by contribution", "strongest": "strongest activation",
               "random": "random (mean)"}


def _resize(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A float map resized to ``size`` (H, W), bilinear."""
    image = Image.fromarray(np.asarray(values, dtype=np.float32), mode="F")
    return np.asarray(image.resize((size[1], size[0]), Image.BILINEAR), dtype=np.float32)


def channel_over_photo(picture: np.ndarray, activation: np.ndarray, alpha: float = 0.6) -> np.ndarray:
    """One channel's (h, w) map, scaled to its own 0..max and resized, over the (H, W, 3)
    uint8 photo (inferno): where in the photo the channel fires."""
    from featurescope.core.analysis.gradcam import overlay

    values = np.maximum(np.nan_to_num(np.asarray(activation, dtype=np.float32)), 0)
    peak = float(values.max())
    values = values / peak if peak > 0 else values
    return overlay(picture, np.clip(_resize(values, picture.shape[:2]), 0, 1), "inferno", alpha)


def contribution_picture(contribution: np.ndarray, size: tuple[int, int],
                         scale: Optional[float] = None) -> np.ndarray:
    """A (h, w) contribution map as an (H, W, 3) uint8 picture: red where it speaks for the
    class, blue against, white for nothing (coolwarm, symmetric around 0; ``scale``: the
    value drawn fully saturated, default the map's largest magnitude)."""
    from featurescope.core.render.grids import colormap_lut

    values = np.nan_to_num(np.asarray(contribution, dtype=np.float32))
    scale = float(np.abs(values).max()) if scale is None else float(scale)
    normalised = 0.5 + 0.5 * values / scale if scale > 0 else np.full_like(values, 0.5)
    resized = np.clip(_resize(normalised, size), 0, 1)
    lut = colormap_lut("coolwarm")[1:]
    return lut[(resized * (len(lut) - 1) + 0.5).astype(np.intp)]


def deletion_plot(faith, size: tuple[int, int] = (260, 420)) -> np.ndarray:
    """The deletion curves (class probability against k channels off) as an (H, W, 3)
    uint8 picture with a legend giving each curve's area (lower falls faster)."""
    height, width = size
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    font = _font(12)
    left, right, top, bottom = 44, width - 12, 12, height - 84
    draw.rectangle([left, top, right, bottom], outline=(90, 90, 90))
    ks = np.asarray(faith.k, dtype=float)
    positions = np.arange(len(ks))  # one step per k: 0, 1, 2, 5, 10... evenly spaced

    def point(i, p):
        x = left + (right - left) * positions[i] / max(1, positions[-1])
        return x, bottom - (bottom - top) * float(np.clip(p, 0, 1))

    for fraction in (0.0, 0.5, 1.0):
        _x, y = point(0, fraction)
        draw.text((6, y - 7), f"{fraction:.1f}", fill=(60, 60, 60), font=font)
    for i, k in enumerate(faith.k):
        x, _y = point(i, 0)
        label = str(k)
        draw.text((x - _text_size(draw, label, font)[0] / 2, bottom + 4), label, fill=(60, 60, 60), font=font)
    draw.text((left, bottom + 20), "channels switched off (k)", fill=(60, 60, 60), font=font)
    for row, ranking in enumerate(("top", "strongest", "random")):
        values = getattr(faith, ranking)
        colour = CURVE_COLOURS[ranking]
        draw.line([point(i, p) for i, p in enumerate(values)], fill=colour, width=2)
        y = bottom + 36 + 15 * row
        draw.line([(left, y + 6), (left + 18, y + 6)], fill=colour, width=3)
        draw.text((left + 24, y), f"{CURVE_NAMES[ranking]}: AUC {faith.auc[ranking]:.3f}",
                  fill=(30, 30, 30), font=font)
    return np.asarray(image)


def why_report(picture: np.ndarray, attribution, faith=None, top: int = 8,
               title: str = "") -> np.ndarray:
    """One page: the photo, the ``top`` channels that speak most for the class (each its
    map over the photo above its contribution map, with its number and contribution),
    and the deletion curves when ``faith`` is given. (H, W, 3) uint8."""
    tile = 150
    channels = attribution.top(top)
    scale = float(max((np.abs(attribution.maps[c]).max() for c in channels), default=0.0))
    columns = max(1, len(channels))
    width = max(tile + 16 + columns * (tile + 8), 700)
    plot = deletion_plot(faith) if faith is not None else None
    height = 40 + 2 * (tile + 22) + (plot.shape[0] + 12 if plot is not None else 0)
    page = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(page)
    font = _font(13)
    draw.text((8, 8), title, fill=(0, 0, 0), font=_font(15))
    photo = Image.fromarray(picture).resize((tile, tile), Image.BILINEAR)
    page.paste(photo, (8, 40))
    draw.text((8, 40 + tile + 4), "photo", fill=(30, 30, 30), font=font)
    for i, channel in enumerate(channels):
        x = tile + 16 + i * (tile + 8)
        over = channel_over_photo(picture, attribution.activations[channel])
        page.paste(Image.fromarray(over).resize((tile, tile), Image.BILINEAR), (x, 40))
        draw.text((x, 40 + tile + 4), f"channel {channel}", fill=(30, 30, 30), font=font)
        contribution = contribution_picture(attribution.maps[channel], (tile, tile), scale)
        y = 40 + tile + 22
        page.paste(Image.fromarray(contribution), (x, y))
        draw.text((x, y + tile + 4), f"{attribution.channels[channel]:+.3g}", fill=(30, 30, 30), font=font)
    if plot is not None:
        page.paste(Image.fromarray(plot), (8, 40 + 2 * (tile + 22) + 4))
    return np.asarray(page)


_PLACEHOLDER = (236, 236, 236)  # a picture still to come (or none to show)


def square_tile(picture: Optional[np.ndarray], side: int) -> np.ndarray:
    """``picture`` fitted (aspect kept) on a ``side`` square; a pale square for None."""
    tile = Image.new("RGB", (side, side), _PLACEHOLDER)
    if picture is not None:
        image = Image.fromarray(np.ascontiguousarray(np.asarray(picture)[:, :, :3]))
        scale = side / max(image.width, image.height, 1)
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                             Image.BILINEAR)
        tile.paste(image, ((side - image.width) // 2, (side - image.height) // 2))
    return np.asarray(tile)


def channel_row(pair: np.ndarray, visualisation: Optional[np.ndarray] = None,
                crops: Optional[list] = None, gap: int = 4) -> np.ndarray:
    """One listed channel's pictures side by side: its (side, w, 3) thumbnail pair, its
    feature visualisation (a pale square until there is one) and, when ``crops`` is not
    None, up to 3 dataset-example crops in a 2x2 block of the same height."""
    side = pair.shape[0]
    white = np.full((side, gap, 3), 255, np.uint8)
    parts = [pair, white, square_tile(visualisation, side)]
    if crops is not None:
        small = (side - gap) // 2
        block = np.full((side, side, 3), 255, np.uint8)
        for k, crop in enumerate(list(crops)[:3]):
            y, x = (k // 2) * (small + gap), (k % 2) * (small + gap)
            block[y:y + small, x:x + small] = square_tile(crop, small)
        parts += [white, block]
    return np.ascontiguousarray(np.concatenate(parts, axis=1))
