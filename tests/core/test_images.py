"""load_image / image_from_bytes: every format and mode a user has, and every way a file can be broken."""
from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from featurescope.core.errors import FeaturescopeError, ImageError
from featurescope.core.io import images
from featurescope.core.io.images import image_from_bytes, load_image


def _pattern(h=24, w=32):
    """A colourful deterministic picture: red ramp across, green ramp down, blue constant."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack(
        [(x * 255 // (w - 1)), (y * 255 // (h - 1)), np.full_like(x, 90)], axis=2
    ).astype(np.uint8)


# --- formats ---------------------------------------------------------------------------

LOSSLESS = [("png", {}), ("bmp", {}), ("tiff", {}), ("webp", {"lossless": True})]


@pytest.mark.parametrize("suffix, options", LOSSLESS)
def test_lossless_formats_round_trip_exactly(tmp_path, suffix, options):
    rgb = _pattern()
    path = tmp_path / f"picture.{suffix}"
    Image.fromarray(rgb).save(path, **options)
    image = load_image(path)
    assert image.mode == "RGB"
    assert image.size == (32, 24)
    np.testing.assert_array_equal(np.asarray(image), rgb)


def test_jpeg_loads_close_to_the_original(tmp_path):
    rgb = _pattern()
    path = tmp_path / "photo.jpg"
    Image.fromarray(rgb).save(path, quality=95)
    image = load_image(path)
    assert image.mode == "RGB" and image.size == (32, 24)
    assert np.abs(np.asarray(image).astype(int) - rgb).mean() < 4


def test_gif_animation_gives_the_first_frame(tmp_path):
    frames = [Image.new("RGB", (8, 6), colour) for colour in [(255, 0, 0), (0, 0, 255), (0, 255, 0)]]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)
    image = load_image(path)
    assert image.mode == "RGB"
    assert tuple(np.asarray(image)[3, 4]) == (255, 0, 0)


def test_animated_webp_gives_the_first_frame(tmp_path):
    frames = [Image.new("RGB", (8, 6), colour) for colour in [(0, 0, 255), (255, 0, 0)]]
    path = tmp_path / "anim.webp"
    frames[0].save(path, save_all=True, append_images=frames[1:], lossless=True)
    pixel = np.asarray(load_image(path))[3, 4]
    assert pixel[2] > 200 and pixel[0] < 50


# --- modes ------------------------------------------------------------------------------


def test_gray_and_bilevel_become_rgb(tmp_path):
    gray = np.arange(0, 240, 10, dtype=np.uint8).reshape(4, 6)
    Image.fromarray(gray, "L").save(tmp_path / "gray.png")
    out = np.asarray(load_image(tmp_path / "gray.png"))
    assert out.shape == (4, 6, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], gray)

    Image.fromarray(gray > 100).convert("1").save(tmp_path / "bw.png")
    out = np.asarray(load_image(tmp_path / "bw.png"))
    np.testing.assert_array_equal(out[:, :, 0], np.where(gray > 100, 255, 0))


def test_rgba_and_la_are_composited_on_white(tmp_path):
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (255, 0, 0, 255)  # opaque red
    rgba[0, 1] = (255, 0, 0, 0)  # fully transparent -> white
    rgba[1, 0] = (0, 0, 0, 128)  # half-transparent black -> mid grey
    rgba[1, 1] = (0, 0, 255, 255)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    out = np.asarray(load_image(tmp_path / "rgba.png")).astype(int)
    assert tuple(out[0, 0]) == (255, 0, 0)
    assert tuple(out[0, 1]) == (255, 255, 255)
    assert all(abs(v - 127) <= 1 for v in out[1, 0])
    assert tuple(out[1, 1]) == (0, 0, 255)

    la = Image.fromarray(np.array([[[0, 0], [0, 255]]], np.uint8), "LA")
    la.save(tmp_path / "la.png")
    out = np.asarray(load_image(tmp_path / "la.png"))
    assert tuple(out[0, 0]) == (255, 255, 255) and tuple(out[0, 1]) == (0, 0, 0)


def test_palette_with_transparency(tmp_path):
    image = Image.new("P", (4, 1))
    image.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    image.putdata([0, 1, 0, 1])
    image.info["transparency"] = 1  # green is transparent
    image.save(tmp_path / "pal.png", transparency=1)
    assert Image.open(tmp_path / "pal.png").mode == "P"
    out = np.asarray(load_image(tmp_path / "pal.png"))
    assert tuple(out[0, 0]) == (255, 0, 0)
    assert tuple(out[0, 1]) == (255, 255, 255)

    image.save(tmp_path / "pal.gif", transparency=1)
    out = np.asarray(load_image(tmp_path / "pal.gif"))
    assert tuple(out[0, 1]) == (255, 255, 255) and tuple(out[0, 2]) == (255, 0, 0)


def test_cmyk_jpeg_and_tiff(tmp_path):
    cmyk = Image.new("CMYK", (5, 4), (0, 255, 255, 0))  # pure red in CMYK
    cmyk.save(tmp_path / "cmyk.tiff")
    out = np.asarray(load_image(tmp_path / "cmyk.tiff"))
    assert tuple(out[0, 0]) == (255, 0, 0)
    cmyk.save(tmp_path / "cmyk.jpg", quality=95)
    out = np.asarray(load_image(tmp_path / "cmyk.jpg")).astype(int)
    assert out[0, 0, 0] > 230 and out[0, 0, 1] < 30 and out[0, 0, 2] < 30


@pytest.mark.parametrize("suffix", ["png", "tiff"])
def test_sixteen_bit_gray_is_scaled_not_clipped(tmp_path, suffix):
    values = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / f"deep.{suffix}")
    assert Image.open(tmp_path / f"deep.{suffix}").mode.startswith("I")
    out = np.asarray(load_image(tmp_path / f"deep.{suffix}"))
    np.testing.assert_array_equal(out[0, :, 0], [0, 1, 128, 255])


def test_32_bit_integer_and_float_images(tmp_path):
    ints = Image.fromarray(np.array([[0, 65535, 32896]], dtype=np.int32), "I")
    ints.save(tmp_path / "int.tiff")
    np.testing.assert_array_equal(np.asarray(load_image(tmp_path / "int.tiff"))[0, :, 1], [0, 255, 128])

    wide = Image.fromarray(np.array([[-100, 0, 100]], dtype=np.int32), "I")
    wide.save(tmp_path / "wide.tiff")
    wide_out = np.asarray(load_image(tmp_path / "wide.tiff"))[0, :, 0].astype(int)
    np.testing.assert_allclose(wide_out, [0, 127.5, 255], atol=0.5)  # own range stretched, not clipped

    unit = Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32), "F")
    unit.save(tmp_path / "unit.tiff")
    np.testing.assert_array_equal(np.asarray(load_image(tmp_path / "unit.tiff"))[0, :, 2], [0, 128, 255])

    big = Image.fromarray(np.array([[10.0, 20.0, 30.0]], dtype=np.float32), "F")
    big.save(tmp_path / "big.tiff")
    big_out = np.asarray(load_image(tmp_path / "big.tiff"))[0, :, 0].astype(int)
    np.testing.assert_allclose(big_out, [0, 127.5, 255], atol=0.5)


# --- EXIF, size ----------------------------------------------------------------------------


def test_exif_orientation_6_rotates_a_portrait_photo(tmp_path):
    # Stored as 40 wide x 20 high, left half red; orientation 6 = "rotate 90 degrees clockwise to view".
    stored = np.zeros((20, 40, 3), np.uint8)
    stored[:, :20] = (255, 0, 0)
    stored[:, 20:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(tmp_path / "phone.jpg", exif=exif, quality=95)
    image = load_image(tmp_path / "phone.jpg")
    assert image.size == (20, 40)  # now portrait: 20 wide, 40 high
    pixels = np.asarray(image).astype(int)
    # Rotating clockwise puts the stored left (red) half at the top.
    assert pixels[5, 10, 0] > 200 and pixels[5, 10, 2] < 60
    assert pixels[35, 10, 2] > 200 and pixels[35, 10, 0] < 60


def test_very_thin_and_large_images(tmp_path):
    Image.new("RGB", (1, 3000), (1, 2, 3)).save(tmp_path / "thin.png")
    assert load_image(tmp_path / "thin.png").size == (1, 3000)
    Image.new("RGB", (3000, 1), (1, 2, 3)).save(tmp_path / "flat.bmp")
    assert load_image(tmp_path / "flat.bmp").size == (3000, 1)
    Image.new("L", (6000, 4000), 7).save(tmp_path / "large.png")  # 24 megapixels, under the limit
    image = load_image(tmp_path / "large.png")
    assert image.size == (6000, 4000) and image.getpixel((5999, 3999)) == (7, 7, 7)


def test_image_from_bytes_matches_load_image(tmp_path):
    buffer = io.BytesIO()
    Image.fromarray(_pattern()).save(buffer, "PNG")
    image = image_from_bytes(buffer.getvalue(), "dropped.png")
    np.testing.assert_array_equal(np.asarray(image), _pattern())
    with pytest.raises(ImageError, match="clipboard is empty"):
        image_from_bytes(b"")
    with pytest.raises(ImageError, match="^paste is not an image"):
        image_from_bytes(b"hello there", "paste")


# --- broken input ---------------------------------------------------------------------------


def _one_sentence(error: Exception, name: str) -> str:
    text = str(error)
    assert name in text
    assert "\n" not in text and text.endswith(".")
    assert isinstance(error, FeaturescopeError)
    return text


def test_missing_file(tmp_path):
    with pytest.raises(ImageError) as info:
        load_image(tmp_path / "nowhere.jpg")
    assert "does not exist" in _one_sentence(info.value, "nowhere.jpg")


def test_folder(tmp_path):
    (tmp_path / "holiday").mkdir()
    with pytest.raises(ImageError) as info:
        load_image(tmp_path / "holiday")
    assert "is a folder" in _one_sentence(info.value, "holiday")


def test_empty_file(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageError) as info:
        load_image(tmp_path / "empty.png")
    assert "empty (0 bytes)" in _one_sentence(info.value, "empty.png")


def test_text_file_renamed_png(tmp_path):
    (tmp_path / "notes.png").write_text("shopping list: milk, eggs\n")
    with pytest.raises(ImageError) as info:
        load_image(tmp_path / "notes.png")
    text = _one_sentence(info.value, "notes.png")
    assert "not an image" in text and "text file" in text


def test_random_bytes_are_not_an_image(tmp_path):
    (tmp_path / "noise.jpg").write_bytes(bytes(np.random.default_rng(1).integers(1, 256, 500, dtype=np.uint8)))
    with pytest.raises(ImageError) as info:
        load_image(tmp_path / "noise.jpg")
    assert "not an image" in _one_sentence(info.value, "noise.jpg")


@pytest.mark.parametrize("fmt, suffix", [("JPEG", "jpg"), ("PNG", "png"), ("WEBP", "webp"), ("TIFF", "tif"), ("GIF", "gif")])
def test_truncated_files(tmp_path, fmt, suffix):
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    Image.fromarray((rng.random((200, 300, 3)) * 255).astype(np.uint8)).save(buffer, fmt)
    data = buffer.getvalue()
    path = tmp_path / f"cut.{suffix}"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError) as info:
        load_image(path)
    text = _one_sentence(info.value, f"cut.{suffix}")
    assert f"truncated after {len(data) // 2 // 1024} KB" in text


def test_file_cut_inside_the_header_says_damaged(tmp_path):
    buffer = io.BytesIO()
    Image.fromarray(_pattern()).save(buffer, "GIF")
    (tmp_path / "stub.gif").write_bytes(buffer.getvalue()[:8])
    with pytest.raises(ImageError) as info:
        load_image(tmp_path / "stub.gif")
    text = _one_sentence(info.value, "stub.gif")
    assert "GIF" in text and "cut short" in text and "8 bytes" in text


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height: enough for Pillow to judge its size."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")


def test_decompression_bomb_40000_squared(tmp_path):
    (tmp_path / "bomb.png").write_bytes(_png_header_only(40000, 40000))
    with pytest.raises(ImageError) as info:
        load_image(tmp_path / "bomb.png")
    text = _one_sentence(info.value, "bomb.png")
    assert "1,600,000,000 pixels" in text
    assert f"{images.MAX_PIXELS:,}" in text


@pytest.mark.parametrize("size", [(10000, 10000), (15000, 15000)])
def test_camera_sized_photos_are_not_refused_as_bombs(tmp_path, size):
    # 100 MP is a real camera photo (over Pillow's 89.5 MP default); 225 MP is over
    # Pillow's error size (twice that) and still within ours. The header-only files
    # then fail as truncated, which shows the size itself was accepted.
    assert Image.MAX_IMAGE_PIXELS and size[0] * size[1] > Image.MAX_IMAGE_PIXELS
    limit = Image.MAX_IMAGE_PIXELS
    (tmp_path / "camera.png").write_bytes(_png_header_only(*size))
    with pytest.raises(ImageError) as info:
        load_image(tmp_path / "camera.png")
    text = _one_sentence(info.value, "camera.png")
    assert "too large" not in text and "truncated" in text
    assert Image.MAX_IMAGE_PIXELS == limit  # Pillow's own setting is left as it was


def test_over_pillows_limit_but_within_ours_opens_whole(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow errors over 2000
    monkeypatch.setattr(images, "MAX_PIXELS", 5000)
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (60, 60, 3), dtype=np.uint8)  # 3600 pixels
    Image.fromarray(pixels).save(tmp_path / "big.png")
    np.testing.assert_array_equal(np.asarray(load_image(tmp_path / "big.png")), pixels)
    assert Image.MAX_IMAGE_PIXELS == 1000
    Image.new("L", (80, 80)).save(tmp_path / "huge.png")  # 6400 pixels: over ours
    with pytest.raises(ImageError) as info:
        load_image(tmp_path / "huge.png")
    text = _one_sentence(info.value, "huge.png")
    assert "6,400 pixels" in text and "limit is 5,000" in text


def test_between_our_limit_and_pillows_error_is_refused_too(tmp_path, monkeypatch):
    # Pillow only warns here; featurescope refuses, with the numbers.
    monkeypatch.setattr(images, "MAX_PIXELS", 1000)
    Image.new("L", (40, 40)).save(tmp_path / "over.png")  # 1600 pixels: > 1000
    with pytest.raises(ImageError) as info:
        load_image(tmp_path / "over.png")
    text = _one_sentence(info.value, "over.png")
    assert "1,600 pixels" in text and "limit is 1,000" in text
    Image.new("L", (10, 100)).save(tmp_path / "at.png")  # exactly the limit: fine
    assert load_image(tmp_path / "at.png").size == (10, 100)


def test_an_svg_is_named_as_a_vector_format(tmp_path):
    (tmp_path / "logo.svg").write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n<!-- drawn by hand -->\n'
        '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>\n')
    with pytest.raises(ImageError) as info:
        load_image(tmp_path / "logo.svg")
    text = _one_sentence(info.value, "logo.svg")
    assert "logo.svg is an SVG, a vector format; export it as PNG" in text
    assert "text file" not in text
    (tmp_path / "bare.svg").write_text('<svg viewBox="0 0 1 1"/>')
    with pytest.raises(ImageError, match="bare.svg is an SVG"):
        load_image(tmp_path / "bare.svg")


def test_the_pixel_limit_holds_on_a_worker_thread(tmp_path, monkeypatch):
    # The app opens images on a worker thread: the limit must not rely on warnings filters,
    # which are process-wide and not thread-safe to change.
    import threading

    monkeypatch.setattr(images, "MAX_PIXELS", 1000)
    Image.new("L", (40, 40)).save(tmp_path / "over.png")
    outcome = {}

    def open_it():
        try:
            load_image(tmp_path / "over.png")
        except ImageError as error:
            outcome["error"] = str(error)

    thread = threading.Thread(target=open_it)
    thread.start()
    thread.join()
    assert "1,600 pixels" in outcome["error"]
