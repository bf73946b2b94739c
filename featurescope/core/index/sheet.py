"""A contact sheet of a channel's examples: the crops each image's unit saw, best first,
each captioned with its rank, activation and file name; optionally with the channel's
map laid over each crop (then the crop is the network's own view of the image)."""
from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

if TYPE_CHECKING:  # the store imports torch; the Examples view imports this at start-up
    from featurescope.core.index.store import Example

_BACKGROUND = (24, 24, 28)
_CAPTION = 18


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def _fit(image: Image.Image, tile: int) -> Image.Image:
    """``image`` scaled so its longer side is ``tile`` (up or down), centred on a tile."""
    scale = tile / max(image.width, image.height, 1)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    resample = Image.Resampling.NEAREST if scale >= 4 else Image.Resampling.BICUBIC
    fitted = image.resize(size, resample)
    canvas = Image.new("RGB", (tile, tile), _BACKGROUND)
    canvas.paste(fitted, ((tile - size[0]) // 2, (tile - size[1]) // 2))
    return canvas


def example_crop(example: Example) -> Image.Image:
    """The part of the original image the unit saw (its receptive field, clipped)."""
    from featurescope.core.io.images import load_image

    top, left, bottom, right = example.box
    return load_image(example.path).crop((left, top, max(right, left + 1), max(bottom, top + 1)))


def overlay_crop(model, example: Example, layer: str, channel: int, alpha: float = 0.55) -> Image.Image:
    """The network's view of the example's receptive field with ``channel``'s map over it."""
    import torch
    import torch.nn.functional as F

    from featurescope.core.capture.capture import capture
    from featurescope.core.io.images import load_image
    from featurescope.core.render.grids import colormap_lut

    result = capture(model, load_image(example.path), layers=[layer])
    seen = model.deprocess(result.input)  # (H, W, 3) uint8
    fmap = result[layer][channel]  # (H, W)
    height, width = seen.shape[:2]
    up = F.interpolate(fmap[None, None].float(), size=(height, width), mode="bilinear",
                       align_corners=False)[0, 0]
    low, high = float(up.min()), float(up.max())
    scaled = ((up - low) / (high - low) if high > low else torch.zeros_like(up)).numpy()
    colours = colormap_lut("inferno")[1 + np.clip((scaled * 254).round().astype(int), 0, 254)]  # 0 = separator
    blended = (seen * (1 - alpha) + colours * alpha).round().astype(np.uint8)
    top, left, bottom, right = example.input_box
    return Image.fromarray(blended).crop((left, top, right, bottom))


_MARK = (235, 140, 40)  # the tiles whose file is missing or changed since indexing


def printable(name: str) -> str:
    """``name`` with control characters (a newline in a file name) shown as "?": Pillow
    draws a newline as a second line and cannot measure multi-line text."""
    return "".join("?" if ord(c) < 32 or ord(c) == 127 else c for c in name)


def _wrapped(draw, text: str, font, width: int) -> list[str]:
    """``text`` broken at spaces (or anywhere, for a long word) into lines of ``width``."""
    lines, line = [], ""
    for word in printable(text).split(" "):
        candidate = f"{line} {word}" if line else word
        if draw.textlength(candidate, font=font) <= width:
            line = candidate
            continue
        if line:
            lines.append(line)
        while draw.textlength(word, font=font) > width and len(word) > 1:
            cut = len(word) - 1
            while cut > 1 and draw.textlength(word[:cut], font=font) > width:
                cut -= 1
            lines.append(word[:cut])
            word = word[cut:]
        line = word
    return lines + [line] if line else lines


def _mark_tile(tile: int, text: str, font) -> Image.Image:
    canvas = Image.new("RGB", (tile, tile), (48, 40, 36))
    draw = ImageDraw.Draw(canvas)
    draw.rectangle((0, 0, tile - 1, tile - 1), outline=_MARK, width=3)
    width = draw.textlength(text, font=font)
    draw.text(((tile - width) / 2, tile / 2 - 7), text, fill=_MARK, font=font)
    return canvas


def contact_sheet(examples: Sequence[Example], tile: int = 160, columns: Optional[int] = None,
                  crops: Optional[Sequence[Optional[Image.Image]]] = None, title: str = "",
                  note: str = "") -> np.ndarray:
    """An (H, W, 3) uint8 sheet of ``examples`` (their crops, or ``crops`` when given).

    A file that is missing now is drawn as a marked empty tile (a crop given as None too),
    one changed since indexing as its crop in a marked frame, captioned so; the others as
    usual. ``title`` and ``note`` (a second line, e.g. that the index is incomplete) wrap
    to the sheet's width."""
    count = max(len(examples), 1)
    columns = columns or math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    gap = 4
    width = columns * (tile + gap) + gap
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    heading = [(line, (235, 235, 235)) for line in _wrapped(measure, title, _font(14), width - 2 * gap)]
    heading += [(line, _MARK) for line in _wrapped(measure, note, _font(14), width - 2 * gap)]
    head = len(heading) * _CAPTION + 6 if heading else 0
    sheet = Image.new("RGB", (width, head + rows * (tile + _CAPTION + gap) + gap), _BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    font = _font(12)
    for row, (line, colour) in enumerate(heading):
        draw.text((gap, 4 + row * _CAPTION), line, fill=colour, font=_font(14))
    for i, example in enumerate(examples):
        problem = example.problem()
        crop = crops[i] if crops is not None else None
        if crops is None and problem != "missing":
            try:
                crop = example_crop(example)
            except Exception:  # unreadable now (replaced by something else): marked below
                problem = problem or "unreadable"
        x = gap + (i % columns) * (tile + gap)
        y = head + gap + (i // columns) * (tile + _CAPTION + gap)
        if crop is None:
            sheet.paste(_mark_tile(tile, problem or "missing", font), (x, y))
        else:
            sheet.paste(_fit(crop, tile), (x, y))
            if problem:
                draw.rectangle((x, y, x + tile - 1, y + tile - 1), outline=_MARK, width=3)
        name = printable(Path(example.path).name)
        caption = f"#{i + 1} " + (f"{problem}: {name}" if problem else f"{example.activation:.3g}  {name}")
        while len(caption) > 4 and draw.textlength(caption, font=font) > tile:
            caption = caption[:-2] + "~"
        draw.text((x + 2, y + tile + 2), caption, fill=_MARK if problem else (220, 220, 220), font=font)
    if not examples:
        draw.text((gap, head + gap), "no examples", fill=(220, 220, 220), font=font)
    return np.asarray(sheet)


def crop_pictures(examples, tile: int = 128) -> list[np.ndarray]:
    """(h, w, 3) uint8 crops of ``examples``, longer side ``tile`` (worker thread); a file
    that cannot be read any more is a tile marked "missing"."""
    pictures = []
    for example in examples:
        try:
            crop = example_crop(example)
        except Exception:  # the file moved or was replaced since it was indexed
            crop = _mark_tile(tile, "missing", _font(12))
        scale = tile / max(crop.width, crop.height, 1)
        size = (max(1, round(crop.width * scale)), max(1, round(crop.height * scale)))
        pictures.append(np.asarray(crop.resize(size, Image.Resampling.BICUBIC).convert("RGB")))
    return pictures


def problems_note(examples, problems: Sequence[str]) -> str:
    """One sentence on the examples whose file is missing or changed since indexing
    ("2 of 9 examples changed since indexing: a.png (missing), b.png (changed)."), or ""."""
    named = [f"{printable(Path(e.path).name)} ({p})" for e, p in zip(examples, problems) if p]
    if not named:
        return ""
    shown = ", ".join(named[:3]) + (f" and {len(named) - 3} more" if len(named) > 3 else "")
    return f"{len(named)} of {len(problems)} examples changed since indexing: {shown}."
