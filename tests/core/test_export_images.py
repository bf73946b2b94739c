"""Exporting image files and folders (core.io.export_images) and the one "exists,
confirm, force" check every export makes (core.io.writers.check_overwrite)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from featurescope.core.errors import FileExistsExportError, ImageError
from featurescope.core.index.walk import list_images
from featurescope.core.io.export_images import export_images, image_files, sub_folders
from featurescope.core.io.writers import check_overwrite


def _picture(path: Path, seed: int) -> Path:
    pixels = np.random.default_rng(seed).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def test_check_overwrite_refuses_asks_or_forces(tmp_path):
    a, b, c = tmp_path / "a.png", tmp_path / "b.json", tmp_path / "c.png"
    assert check_overwrite([a, b, c]) is False  # nothing there: write, nothing to replace
    a.write_bytes(b"x")
    b.symlink_to(tmp_path / "gone")  # a broken link is something in the way too
    with pytest.raises(FileExistsExportError, match=r"a\.png already exists and 1 more and nothing "
                                                    r"was written; use --force") as error:
        check_overwrite([a, b, c])
    assert error.value.path == a
    asked = []
    assert check_overwrite([a, b, c], confirm=lambda paths: asked.append(paths) or True) is True
    assert asked == [[a, b]]
    assert check_overwrite([a, b, c], confirm=lambda paths: False) is None
    assert check_overwrite([a, b, c], force=True, confirm=lambda paths: 1 / 0) is True


def test_export_and_index_take_the_same_files(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    names = ["a.JPG", "b.jpeg", "c.tif", "d.jfif", "e.ppm", "f.png"]
    for n, name in enumerate(names):
        _picture(folder / name, n)
    (folder / "notes.txt").write_text("not a picture")
    _picture(folder / ".hidden.png", 9)
    files, batch = image_files([folder])
    assert batch and [p.name for p in files] == names
    assert [record.path for record in list_images(folder)] == names
    with pytest.raises(ImageError, match="holds no image files"):
        image_files([_empty(tmp_path)])


def _empty(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("nothing")
    return empty


def test_sub_folders_are_unique_ignoring_case():
    folders = sub_folders([Path("x/cat.png"), Path("y/Cat.jpg"), Path("z/dog.png")], "out")
    assert folders == [Path("out/cat"), Path("out/Cat_2"), Path("out/dog")]


@pytest.fixture(scope="module")
def model():
    from featurescope.core.models.load import load_model

    return load_model("resnet18", weights="none", device="cpu", input_size=64)


def test_export_a_folder_checks_every_file_first_and_skips_what_it_cannot_read(tmp_path, model):
    folder = tmp_path / "in"
    folder.mkdir()
    _picture(folder / "cat.png", 1)
    _picture(folder / "cat.jpg", 2)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    out = tmp_path / "out"
    warnings, reported = [], []
    done = export_images(model, [folder], out, ["conv1", "maxpool"], gradcam_layer="maxpool",
                         warn=warnings.append, report=reported.append)
    assert reported == done and [r.folder.name for r in done] == ["broken", "cat", "cat_2"]
    assert done[0].error.startswith("broken.png") and done[0].written == []
    assert "nearest convolution before it, conv1" in warnings[0] and "untrained" in warnings[1]
    for record in done[1:]:
        assert {p.name for p in record.written} == {
            "conv1.png", "maxpool.png", "featurescope.json", "gradcam_conv1.png", "gradcam_conv1.json"}
        assert json.loads((record.folder / "gradcam_conv1.json").read_text())["layer"] == "conv1"

    # one file of the last image in the way: nothing at all is written without force
    import shutil

    shutil.rmtree(out / "cat")
    for path in (out / "cat_2").iterdir():
        if path.name != "conv1.png":
            path.unlink()
    os.utime(out / "cat_2" / "conv1.png", (0, 0))
    with pytest.raises(FileExistsExportError, match=r"cat_2.conv1\.png already exists and nothing"):
        export_images(model, [folder], out, ["conv1", "maxpool"])
    assert not (out / "cat").exists() and not (out / "cat_2" / "maxpool.png").exists()
    # the app's question: "no" writes nothing, "yes" replaces
    assert export_images(model, [folder], out, ["conv1", "maxpool"], confirm=lambda paths: False) == []
    assert not (out / "cat").exists()
    export_images(model, [folder], out, ["conv1", "maxpool"], confirm=lambda paths: True)
    assert (out / "cat" / "conv1.png").exists() and os.stat(out / "cat_2" / "conv1.png").st_mtime > 0


def test_one_image_goes_into_the_folder_itself_and_a_broken_one_fails_first(tmp_path, model):
    picture = _picture(tmp_path / "dog.png", 3)
    done = export_images(model, [picture], tmp_path / "out", ["conv1"], formats=("png", "npz"))
    assert [p.name for p in done[0].written] == ["conv1.png", "activations.npz", "featurescope.json"]
    assert done[0].folder == tmp_path / "out"
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(ImageError, match="broken.png"):
        export_images(model, [broken], tmp_path / "out2", ["conv1"])
    assert not (tmp_path / "out2").exists()
