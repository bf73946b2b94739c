"""``featurescope explain``, ``overview`` and ``ablate`` as a student runs them (Lite0, the cat)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from featurescope.cli.main import main

REPO = Path(__file__).resolve().parents[2]
CAT = REPO / "resources" / "samples" / "chelsea.png"


def _json(capsys, *args):
    assert main([*args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_explain_json_equals_the_exported_activation(capsys, tmp_path):
    data = _json(capsys, "explain", str(CAT), "--layer", "stem", "--channel", "4", "--at", "111,0")
    assert data["matches"] is True and len(data["window"]) == 3  # RGB patch
    assert data["rows"] == [222, 223, 224] and data["padded"][2] == [True, True, True]
    # the captured value against an independent path: the NPZ that export writes
    assert main(["export", str(CAT), "--layers", "stem", "--format", "npz", "-o", str(tmp_path)]) == 0
    capsys.readouterr()
    npz = np.load(next(tmp_path.glob("*.npz")))
    assert data["captured"] == pytest.approx(float(npz["stem"][4, 111, 0]), rel=1e-5)
    assert data["value"] == pytest.approx(data["captured"], rel=1e-4)


def test_explain_text_for_a_conv_and_a_pool(capsys):
    assert main(["explain", str(CAT), "--layer", "blocks.1.depthwise", "--channel", "7", "--at", "3,4"]) == 0
    text = capsys.readouterr().out
    assert "groups 96" in text and "kernel [7, 0]" in text and "products:" in text
    assert "(equal)" in text
    assert main(["explain", str(CAT), "--layer", "pool", "--channel", "0", "--at", "0,0"]) == 0
    text = capsys.readouterr().out
    assert "average:" in text and "/ 49" in text and "(equal)" in text


def test_explain_user_errors_are_one_line(capsys):
    assert main(["explain", str(CAT), "--layer", "stem", "--channel", "40", "--at", "0,0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "channels 0 to 31" in err[0]
    assert main(["explain", str(CAT), "--layer", "stem", "--channel", "0", "--at", "500,0"]) == 2
    assert "outside" in capsys.readouterr().err


def test_overview_poster(capsys, tmp_path):
    out = tmp_path / "poster.png"
    assert main(["overview", str(CAT), "-o", str(out)]) == 0
    assert "50 layers" in capsys.readouterr().out
    poster = Image.open(out)
    assert poster.width == 1600 and poster.height > 300
    assert main(["overview", str(CAT), "-o", str(out)]) == 2  # exists: refused
    assert "already exists" in capsys.readouterr().err


def test_ablate_json(capsys):
    data = _json(capsys, "ablate", str(CAT), "--layer", "head", "--channels", "0-639")
    assert data["channels"] == list(range(640))
    assert data["before"][0]["label"] in {"tiger cat", "Egyptian cat", "tabby"}
    assert data["before"] != data["after"]


def test_subprocess_smoke(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    for args in (["explain", str(CAT), "--layer", "stem", "--channel", "0", "--at", "5,5"],
                 ["overview", str(CAT), "-o", str(tmp_path / "p.png")],
                 ["ablate", str(CAT), "--layer", "stem", "--channels", "0,1"]):
        done = subprocess.run([sys.executable, "-m", "featurescope", *args], capture_output=True,
                              text=True, env=env, cwd=tmp_path, timeout=180)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip()


def test_explain_numbers_never_run_together(capsys):
    # resnet18 untrained: kernel weights like -0.001788 fill a 9-character column
    assert main(["explain", str(CAT), "--layer", "conv1", "--channel", "0", "--at", "5,5",
                 "-m", "resnet18", "-w", "none", "--input-size", "64"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = [line for line in lines if line.lstrip().startswith("y ")]
    assert rows
    for row in rows:
        cells = row.split()[2:]  # "y", the row number, then one number (or pad) per column
        assert len(cells) == 7, row
        for cell in cells:
            assert cell in ("pad", "0") or float(cell) == float(cell)  # each parses on its own


def test_ablate_names_many_channels_as_ranges(capsys):
    assert main(["ablate", str(CAT), "--layer", "head", "--channels", "0-1279"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first == "head: channels 0-1279 switched off (1,280 of them)"
    from featurescope.cli.teach import channel_ranges

    assert channel_ranges([9, 0, 1, 2, 3, 7, 10]) == "0-3, 7, 9-10"
    assert channel_ranges(range(0, 60, 2)).endswith(", ... (30 channels)")
