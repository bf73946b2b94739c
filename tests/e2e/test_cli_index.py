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
    assert set(first) == {"path", "activation", "position", "box"} and len(first["box"]) == 4
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
