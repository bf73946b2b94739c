"""Open any image a user has as an RGB ``PIL.Image``, with one-sentence errors.

Pillow does the decoding (JPEG, PNG, WebP, BMP, TIFF, GIF and whatever else it knows).
On top of it this module:

- applies the EXIF orientation, so a portrait phone photo comes out the right way up;
- takes the first frame of an animation;
- turns every mode into 8-bit RGB: transparency is composited on white, 16-bit and
  32-bit integer images are scaled (not clipped) to 8 bit, float images are scaled from
  [0, 1] (or from their own range when they leave it);
- decodes the whole image at open time, so a truncated file fails here and not later in
  a worker thread;
- turns every failure (missing file, folder, empty file, truncated file, not an image,
  an SVG, decompression bomb) into an :class:`~featurescope.core.errors.ImageError`
  whose text is one sentence naming the file and the problem.

Pixel limit: Pillow's default (89.5 megapixels, an error at twice that) refuses real
photos from 100-megapixel cameras. :data:`MAX_PIXELS` (250 megapixels, 750 MB as 8-bit
RGB) is ours; the decompression-bomb guard stays for absurd sizes (a 40000 x 40000
header is refused before a byte is decoded). Pillow's own limit is a process-wide
setting owned by whoever set it, so it is not changed: an image between Pillow's error
size and ours is reopened with the check lifted for that one header read, under a lock.
"""
from __future__ import annotations

import io
import os
import threading
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from featurescope.core.errors import ImageError

__all__ = ["load_image", "image_from_bytes", "IMAGE_SUFFIXES", "is_image_file", "IMAGE_FILE_FILTER"]

# The one list of files featurescope takes for images (Pillow's common formats), for
# every folder it reads (export, index, the bundled samples) and every open dialog.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".bmp", ".tif", ".tiff",
                  ".gif", ".ppm", ".pgm", ".pbm", ".pnm", ".tga", ".ico")
# The same list as a file-dialog filter (Qt's syntax, a plain string).
IMAGE_FILE_FILTER = f"Images ({' '.join('*' + s for s in IMAGE_SUFFIXES)});;All files (*)"


def is_image_file(path: Union[str, os.PathLike]) -> bool:
    """True for a name with one of :data:`IMAGE_SUFFIXES` (any case) that is not hidden."""
    name = Path(path).name
    return not name.startswith(".") and name.lower().endswith(IMAGE_SUFFIXES)


# Leading bytes of the formats people drop on the app: a file that starts like one of
# these but does not open is damaged or cut short, not "not an image".
_SIGNATURES = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"BM", "BMP"),
)

# Our pixel limit: a 100 MP camera photo opens, a 40000 x 40000 (1.6 GP) bomb does not.
MAX_PIXELS = 250_000_000
_LIFT_LOCK = threading.Lock()

_TRANSPARENT_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
_SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N"}


def load_image(path: Union[str, os.PathLike]) -> Image.Image:
    """Open the image file at ``path`` as an RGB image, fully decoded.

    The EXIF orientation is applied and an animation gives its first frame. Raises
    :class:`ImageError` (one sentence naming the file) when the path is missing, is a
    folder, is empty, cannot be read, is truncated, is not an image (an SVG is named as
    such), or is a decompression bomb (more pixels than :data:`MAX_PIXELS`).
    """
    path = Path(path)
    name = path.name or str(path)
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise ImageError(f"{name} does not exist (looked for {path}).") from None
    except OSError as error:
        raise ImageError(f"{name} cannot be read ({_os_reason(error)}).") from None
    if path.is_dir():
        raise ImageError(f"{name} is a folder, not an image file; choose one image inside it.")
    if stat.st_size == 0:
        raise ImageError(f"{name} is empty (0 bytes), so it holds no image.")
    try:
        handle = open(path, "rb")
    except OSError as error:
        raise ImageError(f"{name} cannot be read ({_os_reason(error)}).") from None
    with handle:
        return _decode(handle, name, stat.st_size)


def image_from_bytes(data: bytes, name: str = "clipboard") -> Image.Image:
    """The same as :func:`load_image` for bytes in memory (paste, drag and drop).

    ``name`` is what error messages call the data, e.g. the dropped file's name.
    """
    if data is None or len(data) == 0:
        raise ImageError(f"{name} is empty (0 bytes), so it holds no image.")
    return _decode(io.BytesIO(bytes(data)), name, len(data))


def _decode(stream: BinaryIO, name: str, size: int) -> Image.Image:
    """Open, fully decode and convert; every Pillow failure becomes an ImageError."""
    head = stream.read(2048)
    stream.seek(0)
    try:
        image = _open(stream)
        try:
            # Our limit, checked on the header before anything is decoded. (Pillow warns
            # above its own limit; cli.main silences that warning, pytest's config too.)
            if image.width * image.height > MAX_PIXELS:
                raise Image.DecompressionBombError(
                    f"Image size ({image.width * image.height} pixels) exceeds limit")
            image.seek(0)  # first frame of an animation
            image.load()  # decode now: truncation shows up here, not later
            image = _upright(image)
            return to_rgb(image)
        finally:
            image.close()
    except Image.DecompressionBombError as error:
        raise ImageError(_bomb_message(name, str(error))) from None
    except UnidentifiedImageError:
        if _looks_like_svg(head):
            raise ImageError(f"{name} is an SVG, a vector format; export it as PNG "
                             "(or JPEG) and open that.") from None
        kind = _signature(head)
        if kind is not None:
            raise ImageError(
                f"{name} starts like a {kind} file but is damaged or cut short "
                f"({_human_size(size)}), so Pillow cannot read it."
            ) from None
        hint = " (it looks like a text file)" if _looks_like_text(head) else ""
        raise ImageError(f"{name} is not an image Pillow can read{hint}.") from None
    except _ModeError as error:
        raise ImageError(f"{name} cannot be shown: {error}.") from None
    except MemoryError:
        raise ImageError(f"{name} is too large to fit in memory.") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError) as error:
        text = str(error)
        if _is_truncation(text):
            raise ImageError(
                f"{name} is not an image Pillow can read (truncated after {_human_size(size)})."
            ) from None
        detail = text.strip().rstrip(".") or type(error).__name__
        raise ImageError(f"{name} is a damaged image file that Pillow cannot decode ({detail}).") from None


def _open(stream: BinaryIO) -> Image.Image:
    """``Image.open`` with our pixel limit instead of Pillow's (see the module docstring)."""
    try:
        return Image.open(stream)
    except Image.DecompressionBombError as error:
        pixels = _pixels_in(str(error))
        if pixels is None or pixels > MAX_PIXELS:
            raise
    # Over Pillow's error size but within ours: read the header once more without its
    # check. Our own check follows in _decode, before the pixels are decoded.
    stream.seek(0)
    with _LIFT_LOCK:
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            return Image.open(stream)
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _pixels_in(text: str):
    """The pixel count in Pillow's "Image size (N pixels) exceeds limit ..." message."""
    import re

    match = re.search(r"\((\d+) pixels\)", text)
    return int(match.group(1)) if match else None


def _upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation; a malformed EXIF block leaves the image as it is."""
    try:
        turned = ImageOps.exif_transpose(image)
    except Exception:  # broken EXIF must not make a good picture unreadable
        return image
    return image if turned is None else turned


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB (a new image, never ``image`` itself).

    Transparent pixels are composited on white; 16/32-bit integer and float images are
    scaled to 0..255 rather than clipped.
    """
    mode = image.mode
    rgba_palette = mode == "P" and image.palette is not None and image.palette.mode == "RGBA"
    if mode in {"P", "L", "RGB", "1"} and ("transparency" in image.info or rgba_palette):
        image = image.convert("RGBA")
        mode = "RGBA"
    if mode in _TRANSPARENT_MODES:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if mode in _SIXTEEN_BIT_MODES or mode.startswith("I;16"):
        values = np.asarray(image).astype(np.float64)
        return _gray_to_rgb(values / 257.0)
    if mode == "I":
        values = np.asarray(image).astype(np.float64)
        lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
        if lo >= 0 and hi <= 65535:  # 16-bit data held in a 32-bit image (PNG, TIFF)
            return _gray_to_rgb(values / 257.0)
        return _gray_to_rgb(_stretch(values))
    if mode == "F":
        values = np.asarray(image).astype(np.float64)
        finite = values[np.isfinite(values)]
        if finite.size and finite.min() >= 0.0 and finite.max() <= 1.0:
            scaled = np.where(np.isfinite(values), values, 0.0) * 255.0
        else:
            scaled = _stretch(values)
        return _gray_to_rgb(scaled)
    try:
        return image.convert("RGB")
    except (ValueError, OSError) as error:
        raise _ModeError(f"its colour mode {mode} cannot be converted to RGB ({error})") from None


class _ModeError(ValueError):
    """A mode Pillow cannot turn into RGB; _decode adds the file name."""


def _stretch(values: np.ndarray) -> np.ndarray:
    """Scale finite values linearly onto 0..255; NaN/Inf and constant images give 0."""
    finite = np.isfinite(values)
    if not finite.any():
        return np.zeros_like(values)
    lo = float(values[finite].min())
    hi = float(values[finite].max())
    if hi <= lo:
        return np.zeros_like(values)
    out = (np.where(finite, values, lo) - lo) * (255.0 / (hi - lo))
    return out


def _gray_to_rgb(values: np.ndarray) -> Image.Image:
    gray = np.clip(np.rint(values), 0, 255).astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2)), "RGB")


def _bomb_message(name: str, text: str) -> str:
    # Pillow: "Image size (1600000000 pixels) exceeds limit of 178956970 pixels, ..."
    pixels = _pixels_in(text)
    if pixels is not None:
        return (
            f"{name} is too large to open safely ({pixels:,} pixels; the limit is "
            f"{MAX_PIXELS:,}), which guards against decompression bombs."
        )
    return f"{name} is too large to open safely (a possible decompression bomb)."


def _looks_like_svg(head: bytes) -> bool:
    """An SVG file: XML text whose first element is <svg (maybe after a prolog)."""
    text = head.lstrip(b"\xef\xbb\xbf").lstrip().lower()
    return text.startswith(b"<svg") or (text.startswith(b"<") and b"<svg" in text)


def _signature(head: bytes):
    for magic, kind in _SIGNATURES:
        if head.startswith(magic):
            return kind
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    return None


def _looks_like_text(head: bytes) -> bool:
    if not head or b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        # a multi-byte character cut at the 64-byte boundary is still text
        try:
            head[:-3].decode("utf-8")
        except UnicodeDecodeError:
            return False
    return True


def _is_truncation(text: str) -> bool:
    text = text.lower()
    return any(
        marker in text
        for marker in ("truncated", "could not create decoder", "premature end", "unexpected end")
    )


def _human_size(size: int) -> str:
    if size < 1024:
        return f"{size} bytes"
    if size < 1024 * 1024:
        return f"{size // 1024} KB"
    return f"{size / (1024 * 1024):.1f} MB"


def _os_reason(error: OSError) -> str:
    if isinstance(error, PermissionError):
        return "permission denied"
    return (error.strerror or str(error)).rstrip(".").lower() or type(error).__name__
