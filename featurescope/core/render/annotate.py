"""Titles and channel numbers drawn on a feature or filter grid, with Pillow.

Tiles too small for their numbers are enlarged by a whole factor first (nearest
neighbour, separators keep their width), so every number is readable and covers at most
half of its tile.
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# Title bar and channel-number colours of annotated grids.
_BAR_BACKGROUND = (24, 24, 24)
_BAR_TEXT = (245, 245, 245)
_LABEL_BACKGROUND = (0, 0, 0)
_LABEL_TEXT = (255, 255, 255)
_MAX_ANNOTATED_SIDE = 8000  # pixels; annotation enlarges tiny tiles at most this far


def model_label(model) -> str:
    """How a title names a model: "resnet18 (untrained)", "efficientnet_lite0 (IMAGENET1K_V1)".

    The README promises "untrained" wherever a model with random weights is named.
    ``model`` is a LoadedModel (or anything with ``name``, ``trained`` and
    ``weights_label``); None gives "".
    """
    if model is None:
        return ""
    name = str(getattr(model, "name", "") or "")
    if getattr(model, "trained", True) is False:
        return f"{name} (untrained)"
    weights = getattr(model, "weights_label", None)
    return f"{name} ({weights})" if weights else name


def grid_title(layer: str, model=None, detail: str = "") -> str:
    """The title of every annotated picture: "layer - model (untrained)".

    Used by every export path (the app's Export grid, Export all/selected layers, the
    command line's --annotate, comparisons), so the same layer gets the same title.
    ``detail`` is appended after two spaces (e.g. "A: cat.jpg"). A plain hyphen, not a
    dash: Pillow's built-in font draws ASCII only.
    """
    label = model_label(model)
    title = f"{layer} - {label}" if label else str(layer)
    return f"{title}  {detail}" if detail else title


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: only the fixed bitmap font
        return ImageFont.load_default()


def _text_size(draw: ImageDraw.ImageDraw, text: str, font) -> tuple[int, int]:
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    return right - left, bottom - top


def _enlarge_tiles(array: np.ndarray, rows: int, columns: int, tile_h: int, tile_w: int,
                   gap: int, factor: int) -> np.ndarray:
    """Repeat every tile's pixels ``factor`` times while separators keep their width."""

    def source(count: int, tile: int) -> np.ndarray:
        out = np.arange(count * tile * factor + (count - 1) * gap)
        cell, offset = np.divmod(out, tile * factor + gap)
        inside = offset < tile * factor
        return cell * (tile + gap) + np.where(inside, offset // factor, tile + (offset - tile * factor))

    return array[np.ix_(source(rows, tile_h), source(columns, tile_w))]


def annotate_grid(
    rgb: np.ndarray,
    layout,
    title: str,
    channel_numbers: bool = True,
    upscale: int = 1,
) -> np.ndarray:
    """Return a copy of a feature or filter grid with a title bar and channel numbers.

    ``rgb`` is the grid (already enlarged ``upscale`` times, as ``feature_grid(...,
    upscale=upscale)`` returns it) and ``layout`` its ``GridLayout``. A dark bar above the
    grid shows ``title`` (e.g. the layer name); each tile gets its true channel number in
    its top-left corner. When tiles are too small for their numbers, every tile is enlarged
    further by a whole factor (nearest neighbour; separators keep their width) so that
    each number fits and covers at most half of its tile.
    """
    array = np.asarray(rgb, dtype=np.uint8)
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    array = array[:, :, :3]
    upscale = max(1, int(upscale))
    tile_h = layout.tile_height * upscale
    tile_w = layout.tile_width * upscale

    number_size = 10
    font = _font(number_size)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    extra = 1
    if channel_numbers and layout.channels:
        widest = str(max(int(c) for c in np.asarray(layout.order).ravel()))
        text_w, text_h = _text_size(probe, widest, font)
        needed_w, needed_h = text_w + 3, text_h + 3
        # Smallest whole factor that makes the number fit on its tile and leaves at least
        # half of the tile visible, capped so that a huge layer stays a sane picture.
        extra = max(1, -(-needed_w // max(tile_w, 1)), -(-2 * needed_h // max(tile_h, 1)))
        longest = max(tile_w * layout.columns, tile_h * layout.rows)
        extra = max(1, min(extra, _MAX_ANNOTATED_SIDE // max(longest, 1)))
    gap = layout.gap * upscale
    if extra > 1:
        array = _enlarge_tiles(array, layout.rows, layout.columns, tile_h, tile_w, gap, extra)
    tile_h, tile_w = tile_h * extra, tile_w * extra

    height, width = array.shape[:2]
    title_size = int(min(28, max(12, width // 40)))
    title_font = _font(title_size)
    title_w, title_h = _text_size(probe, title, title_font)
    bar = title_h + 2 * max(4, title_size // 3)
    canvas_w = max(width, title_w + 2 * max(6, title_size // 2))
    canvas = Image.new("RGB", (canvas_w, height + bar), _BAR_BACKGROUND)
    canvas.paste(Image.fromarray(np.ascontiguousarray(array)), (0, bar))
    draw = ImageDraw.Draw(canvas)
    draw.text((max(6, title_size // 2), (bar - title_h) // 2), title, fill=_BAR_TEXT, font=title_font, anchor="lt")

    if channel_numbers:
        for position, channel in enumerate(np.asarray(layout.order).ravel()):
            row, column = divmod(position, layout.columns)
            x = column * (tile_w + gap)
            y = row * (tile_h + gap) + bar
            label = str(int(channel))
            text_w, text_h = _text_size(draw, label, font)
            draw.rectangle((x, y, x + text_w + 2, y + text_h + 2), fill=_LABEL_BACKGROUND)
            draw.text((x + 1, y + 1), label, fill=_LABEL_TEXT, font=font, anchor="lt")
    return np.asarray(canvas)
