"""``featurescope export``'s display flags build the app's DisplayOptions, its annotated
grids carry the one title, and its option errors are sentences (in this process)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from featurescope.cli.main import main

REPO = Path(__file__).resolve().parents[2]
CAT = REPO / "resources" / "samples" / "chelsea.png"
MODEL = ["--model", "resnet18", "--weights", "none", "--device", "cpu", "--input-size", "64"]


def test_export_flags_give_the_grid_the_app_shows_and_the_one_title(tmp_path):
    from featurescope.core.render.annotate import annotate_grid
    from featurescope.core.render.options import DisplayOptions, render_grid

    out = tmp_path / "out"
    argv = ["export", str(CAT), *MODEL, "--layers", "layer1.0.conv1,avgpool", "--format", "both",
            "--colormap", "plasma", "--normalize", "layer", "--sort", "max", "--columns", "7",
            "--clip", "2.5", "--upscale", "2", "--annotate", "-o", str(out)]
    assert main(argv) == 0
    options = DisplayOptions(colormap="plasma", normalize="layer", order="max", columns=7,
                             upscale=2, clip_percentile=2.5)
    meta = json.loads((out / "featurescope.json").read_text())
    assert meta["options"] == options.to_dict()
    with np.load(out / "activations.npz") as npz:
        chw = npz["layer1.0.conv1"]
    rgb, layout = render_grid(chw, options)
    assert layout.columns == 7
    np.testing.assert_array_equal(np.asarray(Image.open(out / "layer1.0.conv1.png")), rgb)
    titled = annotate_grid(rgb, layout, "layer1.0.conv1 - resnet18 (untrained)", upscale=2)
    np.testing.assert_array_equal(np.asarray(Image.open(out / "layer1.0.conv1_annotated.png")), titled)
    # avgpool is 512 x 1 x 1: with per-channel normalisation (the default) its tiles
    # still differ, as the layer-normalised grid, and the sidecar says why
    assert main(["export", str(CAT), *MODEL, "--layers", "avgpool", "-o", str(tmp_path / "pool")]) == 0
    pool = json.loads((tmp_path / "pool" / "featurescope.json").read_text())
    assert pool["layers"][0]["note"] == "1x1 maps: one colour scale for the layer"
    tiles = np.asarray(Image.open(tmp_path / "pool" / "avgpool.png"))[::2, ::2]
    assert len({tuple(p) for p in tiles.reshape(-1, 3)}) > 2


def test_empty_layers_option_is_named(tmp_path, capsys):
    assert main(["export", str(CAT), *MODEL, "--layers", "", "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--layers option is empty" in err and "no  layers" not in err
    assert main(["export", str(CAT), *MODEL, "--layers", "conv1", "--clip", "60",
                 "-o", str(tmp_path / "o")]) == 2
    assert "--clip must be a percentile" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
