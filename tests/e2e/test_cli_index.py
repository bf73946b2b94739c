"""``featurescope index`` and ``featurescope examples`` as a user runs them, Ctrl-C included."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from featurescope.cli.main import main
from featurescope.core.index.store import open_index

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "core"))
from test_index import make_folder  # noqa: E402

MODEL = ["-m", "resnet18", "-w", "none", "--input-size", "64", "-d", "cpu"]


def test_index_then_examples_as_json_and_a_contact_sheet(tmp_path, capsys):
    folder = make_folder(tmp_path / "photos")
    out = tmp_path / "photos.fsindex"
    assert main(["index", str(folder), *MODEL, "--layers", "conv1,layer4.1.conv2", "--top", "3",
                 "--batch", "4", "--workers", "0", "-o", str(out)]) == 0
    captured = capsys.readouterr()
    assert "11 images, 2 layers, top 3 per channel, 3 files skipped" in captured.out
    assert "skipped notes.jpg" in captured.err

    assert main(["examples", str(out), "--layer", "layer4.1.conv2", "--channel", "5", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    expected = open_index(out).top("layer4.1.conv2", 5)
    assert listed["examples"] == [e.to_dict() for e in expected]
    first = listed["examples"][0]
    assert set(first) == {"path", "activation", "position", "box", "file"} and len(first["box"]) == 4
    assert listed["complete"] is True and first["file"] == "ok"
    assert [e["activation"] for e in listed["examples"]] == sorted((e["activation"] for e in listed["examples"]), reverse=True)

    sheet = tmp_path / "sheet.png"
    assert main(["examples", str(out), "--layer", "conv1", "--channel", "0", "--top", "2",
                 "-o", str(sheet)]) == 0
    with Image.open(sheet) as image:
        assert image.width == 2 * (160 + 4) + 4  # two tiles of 160 px side by side

    overlaid = tmp_path / "overlay.png"
    assert main(["examples", str(out), "--layer", "layer4.1.conv2", "--channel", "5", "--overlay",
                 "-o", str(overlaid)]) == 0
    with Image.open(overlaid) as image, Image.open(sheet) as plain:
        assert image.width == 2 * (160 + 4) + 4 and image.height > plain.height  # 3 tiles: 2 rows

    assert main(["examples", str(out), "--layer", "fc", "--channel", "0"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "no layer 'fc'" in error[0]
    assert main(["index", str(folder / "chelsea.png"), *MODEL, "-o", str(out)]) == 2


def test_ctrl_c_saves_and_the_same_command_resumes(tmp_path):
    folder = tmp_path / "many"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i in range(60):
        Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(folder / f"{i:03d}.png")
    out = tmp_path / "many.fsindex"
    command = [sys.executable, "-m", "featurescope", "index", str(folder), *MODEL, "--layers", "conv1",
               "--batch", "2", "--workers", "0", "--checkpoint-every", "0.001", "-o", str(out)]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        while not out.exists() and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.05)  # polling for the first checkpoint, not waiting for time to pass
        assert out.exists()
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    if process.returncode == 0:
        pytest.skip("the run finished before Ctrl-C arrived")
    assert process.returncode == 130 and "Traceback" not in stderr, stderr
    assert "run the same command to resume" in stderr
    partial = open_index(out)
    read = int((partial.files["state"] != 0).sum())
    assert not partial.complete and 0 < read < 60

    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    final = open_index(out)
    assert final.complete and final.images == 60


@pytest.mark.parametrize("every", ["0", "-5", "nan"])
def test_a_checkpoint_interval_of_no_time_is_refused(tmp_path, capsys, every):
    out = tmp_path / "x.fsindex"
    assert main(["index", str(tmp_path), *MODEL, "--checkpoint-every", every, "-o", str(out)]) == 2
    assert "--checkpoint-every" in capsys.readouterr().err and not out.exists()


def _small_index(tmp_path, capsys):
    """Four pictures (one named with a newline) indexed at conv1, top 4: the folder, the
    index and channel 0's examples, best first."""
    folder = tmp_path / "shots"
    folder.mkdir()
    rng = np.random.default_rng(3)
    for name in ("a.png", "b.png", "c.png", "new\nline.png"):
        Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(folder / name)
    out = tmp_path / "shots.fsindex"
    assert main(["index", str(folder), *MODEL, "--layers", "conv1", "--top", "4", "--workers", "0",
                 "-o", str(out)]) == 0
    capsys.readouterr()
    return folder, out, open_index(out).top("conv1", 0, 4)


def _examples_json(out, capsys, *extra):
    assert main(["examples", str(out), "--layer", "conv1", "--channel", "0", "--json", *extra]) == 0
    captured = capsys.readouterr()
    return json.loads(captured.out), captured.err


def test_a_deleted_or_changed_top_image_is_marked_and_the_others_drawn(tmp_path, capsys):
    folder, out, examples = _small_index(tmp_path, capsys)
    Path(examples[0].path).unlink()
    changed = Path(examples[1].path)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(changed)  # smaller: the box is off it
    listed, err = _examples_json(out, capsys)
    assert [e["file"] for e in listed["examples"]][:2] == ["missing", "changed"]
    assert all(e["file"] == "ok" for e in listed["examples"][2:])
    sheet = tmp_path / "sheet.png"
    assert main(["examples", str(out), "--layer", "conv1", "--channel", "0", "-o", str(sheet)]) == 0
    err = capsys.readouterr().err
    assert "2 of 4 examples changed since indexing" in err and "(missing)" in err and "(changed)" in err
    picture = np.asarray(Image.open(sheet)).astype(int)
    head = picture.shape[0] - 2 * (160 + 18 + 4) - 4
    mark = np.array([235, 140, 40])
    first, second = picture[head + 4:head + 164, 4:164], picture[head + 4:head + 164, 168:328]
    for tile in (first, second):  # both framed in the warning colour
        assert (np.abs(tile[80, :3] - mark).sum(axis=1) < 30).any()
    third = picture[head + 4 + 182:head + 164 + 182, 4:164]
    assert third.std() > 20  # the others are still drawn


def test_a_newline_in_a_file_name_is_drawn_on_one_line(tmp_path, capsys):
    folder, out, examples = _small_index(tmp_path, capsys)
    assert any("\n" in e.path for e in examples)
    sheet = tmp_path / "sheet.png"
    assert main(["examples", str(out), "--layer", "conv1", "--channel", "0", "-o", str(sheet)]) == 0
    assert main(["examples", str(out), "--layer", "conv1", "--channel", "0"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert len(table) == 1 + len(examples) and any("new?line.png" in line for line in table)


def test_a_moved_folder_is_found_again_with_root(tmp_path, capsys):
    folder, out, _examples = _small_index(tmp_path, capsys)
    moved = folder.rename(tmp_path / "moved")
    listed, err = _examples_json(out, capsys)
    assert all(e["file"] == "missing" for e in listed["examples"])
    assert "--root" in err and err.count("\n") == 1
    listed, err = _examples_json(out, capsys, "--root", str(moved))
    assert all(e["file"] == "ok" and e["path"].startswith(str(moved)) for e in listed["examples"]) and not err
    assert main(["examples", str(out), "--layer", "conv1", "--channel", "0", "--root", str(tmp_path / "nope")]) == 2
    assert "--root" in capsys.readouterr().err


def test_an_interrupted_index_is_not_shown_as_complete(tmp_path, capsys):
    folder, out, _examples = _small_index(tmp_path, capsys)
    index = open_index(out)
    index.meta["complete"] = False
    index.files["state"][-1] = 0  # as a stopped run leaves a file it has not read
    index.save(out)
    listed, _err = _examples_json(out, capsys)
    assert listed["complete"] is False and listed["unread"] == 1
    complete = tmp_path / "complete.png"
    sheet = tmp_path / "sheet.png"
    assert main(["examples", str(out), "--layer", "conv1", "--channel", "0", "--top", "1", "-o", str(sheet)]) == 0
    assert "index incomplete: 3 of 4 images read" in capsys.readouterr().err
    index.meta["complete"] = True
    index.save(out)
    assert main(["examples", str(out), "--layer", "conv1", "--channel", "0", "--top", "1", "-o", str(complete)]) == 0
    with Image.open(sheet) as partial, Image.open(complete) as whole:
        assert partial.height >= whole.height + 2 * 18  # the note's lines above the tiles


def test_a_title_wider_than_a_narrow_sheet_wraps_instead_of_being_cut():
    from featurescope.core.index.sheet import contact_sheet

    title = "blocks.15.depthwise channel 1151 - a model with a long name (ImageNet weights)"
    one_line = contact_sheet([], tile=160, columns=1, title="short")
    wrapped = contact_sheet([], tile=160, columns=1, title=title)
    assert wrapped.shape[1] == one_line.shape[1] and wrapped.shape[0] >= one_line.shape[0] + 2 * 18


def test_a_folder_given_as_the_index_is_called_a_folder(tmp_path, capsys):
    assert main(["examples", str(tmp_path), "--layer", "conv1", "--channel", "0"]) == 2
    err = capsys.readouterr().err
    assert "is a folder, not an index file" in err and "does not exist" not in err
