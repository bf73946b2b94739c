"""``featurescope visualize``: PNGs and sidecar, the cache, refusals, the hierarchy poster."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from featurescope.cli.main import main

REPO = Path(__file__).resolve().parents[2]
CAT = REPO / "resources" / "samples" / "chelsea.png"


def test_writes_one_png_per_channel_and_a_sidecar_then_reads_the_cache(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FEATURESCOPE_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "out"
    args = ["visualize", "--layer", "blocks.8.project", "--channels", "2-3,7", "--steps", "12",
            "--size", "48", "--device", "cpu", "-o", str(out)]
    assert main(args) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["blocks.8.project_ch0002.png", "blocks.8.project_ch0003.png",
                     "blocks.8.project_ch0007.png", "blocks.8.project_visualize.json"]
    sidecar = json.loads((out / "blocks.8.project_visualize.json").read_text())
    assert sidecar["settings"]["steps"] == 12 and sidecar["settings"]["size"] == [48, 48]
    assert [c["channel"] for c in sidecar["channels"]] == [2, 3, 7]
    assert sidecar["provenance"]["model"]["name"] == "efficientnet_lite0"
    first = np.asarray(Image.open(out / "blocks.8.project_ch0003.png"))
    assert first.shape == (48, 48, 3) and first.std() > 5  # a picture, not a flat grey

    # the same command again refuses to overwrite, and leaves the files alone
    assert main(args) == 2
    assert "already exists" in capsys.readouterr().err
    # with --force it comes from the cache: the same pixels, said so
    assert main(args + ["--force"]) == 0
    assert "3 from the cache" in capsys.readouterr().out
    np.testing.assert_array_equal(np.asarray(Image.open(out / "blocks.8.project_ch0003.png")), first)


def test_user_errors_are_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FEATURESCOPE_CACHE_DIR", str(tmp_path / "cache"))
    assert main(["visualize", "-o", str(tmp_path / "x")]) == 2
    assert "needs --layer" in capsys.readouterr().err
    assert main(["visualize", "--layer", "stem", "--channels", "40", "--steps", "1", "--size", "16",
                 "--device", "cpu", "-o", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "channel 40 does not exist" in err
    assert main(["visualize", "--layer", "stem", "--objective", "max", "-o", str(tmp_path)]) == 2


def test_hierarchy_poster(tmp_path, monkeypatch):
    monkeypatch.setenv("FEATURESCOPE_CACHE_DIR", str(tmp_path / "cache"))
    poster = tmp_path / "poster.png"
    assert main(["visualize", "--hierarchy", "--layer", "stem,blocks.8.project,head", "--per-layer", "2",
                 "--steps", "2", "--size", "16", "--image", str(CAT), "--device", "cpu",
                 "-o", str(poster)]) == 0
    picture = np.asarray(Image.open(poster))
    assert picture.ndim == 3 and picture.shape[0] > 3 * 128  # three rows of tiles
    assert main(["visualize", "--hierarchy", "--steps", "1", "--size", "16", "-o", str(poster)]) == 2


def test_an_empty_channel_list_is_refused_not_read_as_the_first_eight(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FEATURESCOPE_CACHE_DIR", str(tmp_path / "cache"))
    for empty in ("", " , "):
        assert main(["visualize", "--layer", "stem", "--channels", empty, "--steps", "1", "--size", "16",
                     "--weights", "none", "--device", "cpu", "-o", str(tmp_path / "x")]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "channel" in err
    assert not (tmp_path / "x").exists()


def test_a_poster_name_without_png_is_refused_before_any_work(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FEATURESCOPE_CACHE_DIR", str(tmp_path / "cache"))
    assert main(["visualize", "--hierarchy", "--steps", "1", "--size", "16", "-o", str(tmp_path / "poster")]) == 2
    assert "should end in .png" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
