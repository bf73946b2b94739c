"""Export: atomic writes, never overwriting without force, exact pixels, NPZ keys, the JSON sidecar."""
from __future__ import annotations

import errno
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from featurescope.core.io import export, writers
from featurescope.core.errors import ExportError, FileExistsExportError
from featurescope.core.io.writers import safe_filename, write_json, write_npz, write_png
from featurescope.core.render.annotate import annotate_grid
from featurescope.core.progress import CancelToken, Cancelled
from featurescope.core.render.options import DisplayOptions


def _rgb(h=5, w=7):
    rng = np.random.default_rng(3)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


# --- write_png / write_npz / write_json ---------------------------------------------------


def test_png_has_exactly_the_pixels(tmp_path):
    rgb = _rgb()
    path = write_png(tmp_path / "grid.png", rgb)
    assert path == tmp_path / "grid.png"
    np.testing.assert_array_equal(np.asarray(Image.open(path)), rgb)
    assert _leftovers(tmp_path) == []


def test_png_upscale_repeats_pixels(tmp_path):
    rgb = _rgb(3, 4)
    out = np.asarray(Image.open(write_png(tmp_path / "big.png", rgb, upscale=3)))
    assert out.shape == (9, 12, 3)
    np.testing.assert_array_equal(out[::3, ::3], rgb)
    np.testing.assert_array_equal(out[2::3, 2::3], rgb)


def test_png_rejects_arrays_that_are_not_pictures(tmp_path):
    with pytest.raises(ValueError):
        write_png(tmp_path / "f.png", np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError):
        write_png(tmp_path / "f.png", np.zeros((4, 4, 2), np.uint8))


def test_existing_file_is_not_overwritten_without_force(tmp_path):
    target = tmp_path / "grid.png"
    target.write_bytes(b"precious")
    with pytest.raises(FileExistsExportError) as info:
        write_png(target, _rgb())
    assert info.value.path == target
    assert "already exists" in str(info.value) and str(target) in str(info.value)
    assert target.read_bytes() == b"precious"
    write_png(target, _rgb(), force=True)
    np.testing.assert_array_equal(np.asarray(Image.open(target)), _rgb())


def test_missing_parent_folders_are_created(tmp_path):
    path = write_json(tmp_path / "a" / "b" / "meta.json", {"x": 1})
    assert json.loads(path.read_text()) == {"x": 1}


def test_write_goes_through_a_temporary_file_in_the_same_folder(tmp_path, monkeypatch):
    seen = {}
    real_replace = os.replace

    def spy(source, target):
        source, target = Path(source), Path(target)
        seen["same_folder"] = source.parent == target.parent
        seen["target_existed"] = target.exists()
        seen["complete"] = source.read_bytes()
        real_replace(source, target)

    monkeypatch.setattr(writers.os, "replace", spy)
    path = write_json(tmp_path / "meta.json", {"layers": ["features.0"]})
    assert seen["same_folder"] and not seen["target_existed"]
    assert seen["complete"] == path.read_bytes()


def test_full_disk_leaves_no_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    def full(_descriptor):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(writers.os, "fsync", full)
    with pytest.raises(ExportError) as info:
        write_png(tmp_path / "grid.png", _rgb())
    text = str(info.value)
    assert "grid.png" in text and "disk" in text and "full" in text
    assert list(tmp_path.iterdir()) == []

    (tmp_path / "old.npz").write_bytes(b"old contents")
    with pytest.raises(ExportError, match="full"):
        write_npz(tmp_path / "old.npz", {"a": np.zeros(3)}, force=True)
    assert (tmp_path / "old.npz").read_bytes() == b"old contents"
    assert _leftovers(tmp_path) == []


def test_failure_half_way_through_writing_removes_the_partial_file(tmp_path, monkeypatch):
    def half_then_full(handle, **arrays):
        handle.write(b"PK\x03\x04 half an archive")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(writers.np, "savez", half_then_full)
    with pytest.raises(ExportError):
        write_npz(tmp_path / "acts.npz", {"features.0": np.ones(2)})
    assert list(tmp_path.iterdir()) == []


def test_read_only_folder_simulated(tmp_path, monkeypatch):
    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(writers.os, "open", denied)
    with pytest.raises(ExportError) as info:
        write_png(tmp_path / "grid.png", _rgb())
    assert "read-only" in str(info.value) and "grid.png" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_read_only_folder_for_real(tmp_path):
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        probe = folder / "probe"
        try:
            probe.write_bytes(b"")
        except PermissionError:
            pass
        else:
            probe.unlink()
            pytest.skip("running as root (or on a file system without permissions): chmod does not protect")
        with pytest.raises(ExportError, match="read-only"):
            write_png(folder / "grid.png", _rgb())
        assert list(folder.iterdir()) == []
    finally:
        folder.chmod(0o755)


def test_output_folder_that_is_a_file(tmp_path):
    (tmp_path / "out").write_text("not a folder")
    with pytest.raises(ExportError, match="is a file, not a folder"):
        write_png(tmp_path / "out" / "grid.png", _rgb())


def test_npz_keeps_layer_names_exactly(tmp_path):
    import torch

    arrays = {
        "features.0": torch.arange(6, dtype=torch.float32).reshape(1, 2, 3),
        "layer1.0.conv1": np.full((2, 2, 2), 7.5, np.float32),
        "relu#2": np.zeros((1, 1, 1), np.float32),
        "input": torch.ones(1, 3, 4, 4),
    }
    path = write_npz(tmp_path / "acts.npz", arrays)
    with np.load(path) as loaded:
        assert sorted(loaded.files) == sorted(arrays)
        np.testing.assert_array_equal(loaded["features.0"], np.arange(6).reshape(1, 2, 3))
        assert loaded["layer1.0.conv1"].dtype == np.float32
        assert loaded["input"].shape == (1, 3, 4, 4)


def test_json_converts_paths_tuples_and_numpy(tmp_path):
    data = {"path": tmp_path / "cat.png", "shape": (3, 4), "n": np.int64(5), "x": np.float32(0.5), "name": "café"}
    loaded = json.loads(write_json(tmp_path / "m.json", data).read_text(encoding="utf-8"))
    assert loaded == {"path": str(tmp_path / "cat.png"), "shape": [3, 4], "n": 5, "x": 0.5, "name": "café"}


def test_safe_filenames():
    assert safe_filename("features.0") == "features.0"
    assert safe_filename("layer1.0.conv1") == "layer1.0.conv1"
    assert safe_filename("relu#2") == "relu_2"
    assert safe_filename("a/b:c*d") == "a_b_c_d"
    assert safe_filename("") == "layer"
    assert safe_filename("con") == "_con"


# --- annotate_grid ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Layout:
    """Stand-in with GridLayout's fields: 2x2 tiles of 40x40, gap 1."""

    channels: int = 4
    tile_height: int = 40
    tile_width: int = 40
    rows: int = 2
    columns: int = 2
    gap: int = 1
    order: tuple = (3, 1, 0, 2)

    def tile_origin(self, channel):
        position = list(self.order).index(channel)
        row, column = divmod(position, self.columns)
        return row * (self.tile_height + self.gap), column * (self.tile_width + self.gap)


def test_annotate_adds_a_title_bar_and_numbers_on_the_tiles():
    layout = _Layout()
    grid = np.full((81, 81, 3), 200, np.uint8)
    out = annotate_grid(grid, layout, "features.0")
    bar = out.shape[0] - 81
    assert bar > 8 and out.shape[1] == 81
    # The grid itself is underneath the bar, untouched away from the labels.
    np.testing.assert_array_equal(out[bar + 30 :, 30:40], grid[30:, 30:40])
    # The bar holds light text on dark.
    assert out[:bar].min() < 40 and out[:bar].max() > 200
    # Each tile's top-left corner has a dark label box with light digits.
    for channel in range(4):
        y0, x0 = layout.tile_origin(channel)
        corner = out[bar + y0 : bar + y0 + 12, x0 : x0 + 10]
        assert corner.min() == 0 and corner.max() > 180  # anti-aliased light digits on black
    plain = annotate_grid(grid, layout, "features.0", channel_numbers=False)
    np.testing.assert_array_equal(plain[bar:], grid)


def test_annotate_enlarges_tiny_tiles_until_numbers_fit_keeping_thin_separators():
    layout = _Layout(tile_height=3, tile_width=3, order=(0, 1, 2, 3))
    grid = np.zeros((7, 7, 3), np.uint8)  # separators black (row 3 and column 3)
    colours = {0: (200, 0, 0), 1: (0, 200, 0), 2: (0, 0, 200), 3: (200, 200, 0)}
    for channel, colour in colours.items():
        y0, x0 = layout.tile_origin(channel)
        grid[y0 : y0 + 3, x0 : x0 + 3] = colour
    out = annotate_grid(grid, layout, "x", channel_numbers=True)
    width = out.shape[1]
    factor = (width - 1) // 6
    assert factor >= 4 and width == 6 * factor + 1  # tiles enlarged, separator still 1 px
    bar = out.shape[0] - width
    body = out[bar:]
    tile = 3 * factor
    assert (body[tile] == 0).all() and (body[:, tile] == 0).all()  # the 1-px separators
    for channel, colour in colours.items():
        row, column = divmod(channel, 2)
        y, x = row * (tile + 1), column * (tile + 1)
        # bottom-right of each tile is free of its label and keeps the tile's colour
        assert tuple(body[y + tile - 1, x + tile - 1]) == colour


# --- export_layers ------------------------------------------------------------------------

grids = pytest.importorskip("featurescope.core.render.grids")


@dataclass(frozen=True)
class _Info:
    name: str
    module_name: str
    kind: str
    index: int
    in_channels: int
    out_channels: int
    kernel_size: tuple | None
    stride: tuple | None
    padding: tuple | None
    dilation: tuple | None
    groups: int
    input_shape: tuple
    output_shape: tuple
    parameters: int
    output_size: tuple | None = None


class _Result:
    """A CaptureResult-shaped object holding two small layers with real numbers."""

    def __init__(self):
        import torch

        generator = torch.Generator().manual_seed(0)
        self._maps = {
            "features.0": torch.randn(6, 8, 8, generator=generator),
            "features.2#2": torch.randn(4, 4, 4, generator=generator),
        }
        self.layers = list(self._maps)
        self.input = torch.randn(1, 3, 16, 16, generator=generator)
        self.logits = None
        self.model_name = "tiny"
        self.info = {
            "features.0": _Info("features.0", "features.0", "Conv2d", 0, 3, 6, (3, 3), (2, 2), (1, 1), (1, 1), 1, (3, 16, 16), (6, 8, 8), 168),
            "features.2#2": _Info("features.2#2", "features.2", "MaxPool2d", 1, 4, 4, (2, 2), (2, 2), (0, 0), (1, 1), 1, (4, 8, 8), (4, 4, 4), 0),
        }

    def __getitem__(self, name):
        return self._maps[name]

    def __contains__(self, name):
        return name in self._maps


def test_export_writes_pngs_npz_and_sidecar(tmp_path):
    result = _Result()
    source = tmp_path / "cat.png"
    Image.new("RGB", (4, 4), (9, 9, 9)).save(source)
    calls = []
    out = tmp_path / "out" / "cat"
    paths = export.export_layers(
        result, out, formats="both", options=DisplayOptions(colormap="magma", order="max", upscale=2),
        annotate=True, source_path=source,
        progress=lambda done, total, text: calls.append((done, total)),
    )
    names = sorted(p.name for p in paths)
    assert names == sorted([
        "features.0.png", "features.0_annotated.png", "features.2_2.png", "features.2_2_annotated.png",
        "activations.npz", "featurescope.json",
    ])
    expected = grids.feature_grid(result["features.0"], normalize="channel", colormap="magma", order="max", upscale=2)
    np.testing.assert_array_equal(np.asarray(Image.open(out / "features.0.png")), expected)
    with np.load(out / "activations.npz") as npz:
        assert sorted(npz.files) == ["features.0", "features.2#2", "input"]
        np.testing.assert_array_equal(npz["features.2#2"], result["features.2#2"].numpy())
        np.testing.assert_array_equal(npz["input"], result.input.numpy())
    meta = json.loads((out / "featurescope.json").read_text())
    assert meta["source_image"]["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    assert meta["grid"] == {"normalize": "channel", "colormap": "magma", "channel_order": "max",
                            "columns": None, "clip_percentile": None,
                            "upscale": 2, "annotated": True, "filters": False,
                            "filters_upscale": None}
    assert meta["options"] == DisplayOptions(colormap="magma", order="max", upscale=2).to_dict()
    assert [layer["name"] for layer in meta["layers"]] == ["features.0", "features.2#2"]
    assert meta["layers"][0]["shape"] == [6, 8, 8] and meta["layers"][0]["kind"] == "Conv2d"
    assert sorted(meta["layers"][0]["channel_order"]) == list(range(6))
    assert meta["featurescope_version"] and meta["created"] and meta["npz"] == "activations.npz"
    assert calls[-1] == (4, 4) and [c[0] for c in calls] == sorted(c[0] for c in calls)
    assert _leftovers(out) == []


def test_export_checks_every_target_before_writing_anything(tmp_path):
    result = _Result()
    (tmp_path / "featurescope.json").write_text("{}")  # only the last file to be written exists
    with pytest.raises(FileExistsExportError) as info:
        export.export_layers(result, tmp_path, formats="both")
    assert info.value.path == tmp_path / "featurescope.json"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["featurescope.json"]
    paths = export.export_layers(result, tmp_path, formats="both", force=True)
    assert len(paths) == 4


def test_export_cancelled_mid_layer_leaves_no_file_of_that_layer(tmp_path):
    result = _Result()
    token = CancelToken()
    count = {"n": 0}

    def progress(done, total, text):
        if done == 1:
            token.cancel()

    real = export.write_png

    def counting(path, rgb, force=False, **kw):
        count["n"] += 1
        written = real(path, rgb, force=force, **kw)
        if Path(path).name == "features.2_2.png":
            token.cancel()  # cancel after the first of this layer's two files
        return written

    export.write_png = counting
    try:
        with pytest.raises(Cancelled):
            export.export_layers(result, tmp_path, annotate=True, cancel=token)
    finally:
        export.write_png = real
    assert sorted(p.name for p in tmp_path.iterdir()) == ["features.0.png", "features.0_annotated.png"]


def test_export_unknown_layer_is_a_sentence(tmp_path):
    with pytest.raises(ExportError, match="'conv9' was not captured"):
        export.export_layers(_Result(), tmp_path, layers=["conv9"])
    assert list(tmp_path.iterdir()) == []


def test_export_with_a_real_model_writes_filters(tmp_path):
    from featurescope.core.capture.capture import capture
    from featurescope.core.render.filters import filter_grid
    from featurescope.core.models.load import load_model

    model = load_model("resnet18", weights="none", device="cpu")
    result = capture(model, Image.new("RGB", (64, 64), (120, 60, 30)), layers=["conv1", "maxpool"])
    paths = export.export_layers(result, tmp_path, filters=True, model=model)
    names = sorted(p.name for p in paths)
    assert names == ["conv1.png", "conv1_filters.png", "featurescope.json", "maxpool.png"]  # no kernels in a pool
    expected, _ = filter_grid(model.module.conv1.weight, upscale=export.FILTER_MIN_UPSCALE)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "conv1_filters.png")), expected)
    meta = json.loads((tmp_path / "featurescope.json").read_text())
    assert meta["model"]["weights"] == "untrained" and meta["model"]["trained"] is False
    assert meta["input"]["mean"] == list(model.mean)
    assert meta["layers"][0]["files"] == ["conv1.png", "conv1_filters.png"]
