"""The command line as a user runs it: ``python -m featurescope ...`` in a subprocess.

Each subprocess that touches a model imports torch (about 3 s), so the slow paths are
few; the cheaper checks call ``featurescope.cli.main.main`` in this process.
"""
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
CAT_CLASSES = {"tabby", "tiger cat", "Egyptian cat", "Persian cat", "Siamese cat", "lynx", "tabby cat"}


def run(*args: str, cwd: Path, env_drop: tuple = (), extra: tuple = ()) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    for name in env_drop:
        env.pop(name, None)
    return subprocess.run(
        [sys.executable, *extra, "-m", "featurescope", *args],
        capture_output=True, text=True, env=env, cwd=cwd, timeout=120,
    )


def assert_one_line_error(done: subprocess.CompletedProcess, *words: str) -> str:
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("featurescope: "), done.stderr
    for word in words:
        assert word in lines[0]
    return lines[0]


def test_version_and_help_import_neither_torch_nor_qt(tmp_path):
    done = run("--version", cwd=tmp_path, extra=("-X", "importtime"))
    assert done.returncode == 0
    assert done.stdout.strip() == "featurescope 0.1.0"
    imported = {line.split("|")[-1].strip().split(".")[0] for line in done.stderr.splitlines() if "|" in line}
    assert "featurescope" in imported
    assert not imported & {"torch", "torchvision", "PySide6", "pyqtgraph", "numpy"}

    code = (
        "import sys, contextlib, io\n"
        "from featurescope.cli.main import main\n"
        "for argv in (['--help'], ['export', '--help'], ['screenshot', '--help']):\n"
        "    with contextlib.redirect_stdout(io.StringIO()):\n"
        "        assert main(argv) == 0\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'PySide6', 'pyqtgraph')))\n"
    )
    checked = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env=dict(os.environ, PYTHONPATH=str(REPO)), cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.strip() == "[]"


def test_models_json(capsys):
    assert main(["models", "--json"]) == 0
    models = json.loads(capsys.readouterr().out)["models"]
    assert models[0] == {"name": "efficientnet_lite0", "family": "EfficientNet-Lite",
                         "weights_status": "embedded", "weights_name": "embedded ImageNet"}
    names = {m["name"] for m in models}
    assert {"resnet18", "vgg16", "squeezenet1_0", "convnext_tiny"} <= names
    assert not any(n.startswith(("vit_", "swin_")) for n in names)
    assert {m["weights_status"] for m in models} <= {"embedded", "cached", "downloadable"}


def test_layers_json_names_and_shapes(capsys):
    assert main(["layers", "--model", "resnet18", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    layers = data["layers"]
    names = [layer["name"] for layer in layers]
    assert names[:3] == ["conv1", "maxpool", "layer1.0.conv1"]
    assert names[-1] == "avgpool"
    assert layers[0]["kind"] == "Conv2d" and layers[0]["output_shape"] == [64, 112, 112]
    assert layers[0]["parameters"] == 64 * 3 * 7 * 7
    assert data["input_size"] == [224, 224]
    assert data["weights"] is None  # not asked for: the layers do not depend on them

    assert main(["layers", "--model", "resnet18"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0] == "resnet18: 22 conv and pooling layers, input 3x224x224"
    assert len(table) == 2 + 22 and "layer1.0.conv1" in table[4]


def test_predict_json_on_the_cat_with_the_embedded_model(tmp_path):
    done = run("predict", str(CAT), "--json", "--top", "3", "--device", "cpu", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)  # stdout holds the JSON and nothing else
    assert list(data) == ["predictions"]
    predictions = data["predictions"]
    assert len(predictions) == 3
    assert set(predictions[0]) == {"label", "index", "probability"}
    assert predictions[0]["label"] in CAT_CLASSES
    probabilities = [p["probability"] for p in predictions]
    assert probabilities == sorted(probabilities, reverse=True) and 0 < sum(probabilities) <= 1.0001


def test_export_writes_png_npz_json_and_refuses_to_overwrite(tmp_path):
    out = tmp_path / "out"
    done = run("export", str(CAT), "--model", "resnet18", "--weights", "none", "--device", "cpu",
               "--layers", "conv1,layer1.0.conv1,maxpool", "--format", "both", "--annotate",
               "--colormap", "magma", "-o", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(["conv1.png", "conv1_annotated.png", "layer1.0.conv1.png",
                            "layer1.0.conv1_annotated.png", "maxpool.png", "maxpool_annotated.png",
                            "activations.npz", "featurescope.json"])
    grid = np.asarray(Image.open(out / "conv1.png"))
    assert grid.dtype == np.uint8 and grid.shape[2] == 3 and grid.shape[0] >= 8 * 112
    with np.load(out / "activations.npz") as npz:
        assert sorted(npz.files) == ["conv1", "input", "layer1.0.conv1", "maxpool"]
        assert npz["conv1"].shape == (64, 112, 112) and npz["input"].shape == (1, 3, 224, 224)
    meta = json.loads((out / "featurescope.json").read_text())
    assert meta["model"]["name"] == "resnet18" and meta["model"]["weights"] == "untrained"
    assert meta["grid"]["colormap"] == "magma"
    assert len(meta["source_image"]["sha256"]) == 64


def test_export_refuses_to_overwrite_without_force(tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["export", str(CAT), "--model", "resnet18", "--weights", "none", "--device", "cpu",
            "--layers", "layer4.1.conv2", "-o", str(out)]
    assert main(argv) == 0
    before = (out / "layer4.1.conv2.png").read_bytes()
    capsys.readouterr()
    assert main(argv + ["--colormap", "gray"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already exists" in err and "--force" in err
    assert (out / "layer4.1.conv2.png").read_bytes() == before
    assert main(argv + ["--colormap", "gray", "--force"]) == 0
    assert (out / "layer4.1.conv2.png").read_bytes() != before


def test_export_a_folder_gives_one_sub_folder_per_image_and_force_overwrites(tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.open(CAT).convert("RGB").resize((64, 48)).save(photos / "a.jpg")
    Image.open(CAT).convert("L").resize((40, 60)).save(photos / "b.png")
    (photos / "notes.txt").write_text("not an image")
    argv = ["export", str(photos), "--model", "resnet18", "--weights", "none", "--device", "cpu",
            "--layers", "conv", "--sort", "max", "-o", str(tmp_path / "out")]
    assert main(argv[:8] + ["--layers", "layer4.1.conv2"] + argv[10:]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a", "b"]
    assert (tmp_path / "out" / "b" / "layer4.1.conv2.png").is_file()
    assert main(argv[:8] + ["--layers", "layer4.1.conv2"] + argv[10:]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(argv + ["--force"]) == 0
    assert len(list((tmp_path / "out" / "a").glob("*.png"))) == 20  # resnet18's 20 convolutions


def test_broken_image_is_one_line_and_exit_2(tmp_path):
    (tmp_path / "notes.png").write_text("shopping list\n")
    done = run("predict", "notes.png", cwd=tmp_path)
    assert_one_line_error(done, "notes.png", "not an image")


def test_unknown_model_is_one_line_and_exit_2(tmp_path):
    done = run("layers", "--model", "resnet1800", cwd=tmp_path)
    assert_one_line_error(done, "resnet1800", "featurescope models")


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_a_gpu_is_one_line_and_exit_2(capsys):
    assert main(["predict", str(CAT), "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("featurescope: ") and "cuda" in err


def test_user_errors_in_process(tmp_path, capsys):
    assert main(["export", str(tmp_path / "missing.jpg"), "-o", str(tmp_path / "o")]) == 2
    assert "missing.jpg does not exist" in capsys.readouterr().err
    assert main(["export", str(CAT), "--colormap", "rainbowish", "-o", str(tmp_path / "o")]) == 2
    assert "rainbowish" in capsys.readouterr().err
    assert main(["export", str(CAT), "--layers", "conv99", "-o", str(tmp_path / "o")]) == 2
    assert "conv99" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_no_display_says_so_in_one_line(tmp_path):
    if not sys.platform.startswith("linux"):
        pytest.skip("the no-display check is for Linux")
    done = run(cwd=tmp_path, env_drop=("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"))
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert "QT_QPA_PLATFORM=offscreen" in done.stderr and "screenshot" in done.stderr


@pytest.mark.parametrize("interruption", ["cancelled", "ctrl-c"])
def test_cancel_and_ctrl_c_exit_130_quietly(monkeypatch, capsys, interruption):
    from featurescope.cli import main as cli
    from featurescope.core.progress import Cancelled

    def stop(args):
        raise Cancelled("cancelled") if interruption == "cancelled" else KeyboardInterrupt()

    monkeypatch.setitem(cli._COMMANDS, "models", stop)
    assert main(["models"]) == 130
    captured = capsys.readouterr()
    assert captured.out == "" and "Traceback" not in captured.err and captured.err.strip() == ""


def test_predict_for_a_model_without_category_names_says_each_class_once(tmp_path, capsys):
    (tmp_path / "tiny.py").write_text(
        "import torch.nn as nn\n"
        "def make():\n"
        "    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))\n"
    )
    from featurescope.cli.main import main
    from featurescope.core.resources import default_sample

    code = main(["predict", str(default_sample()), "--model", f"{tmp_path / 'tiny.py'}:make",
                 "--input-size", "32", "--top", "3"])
    out = capsys.readouterr().out
    assert code == 0
    lines = [line for line in out.splitlines() if line.strip()[:2].rstrip(".").isdigit()]
    assert len(lines) == 3
    for line in lines:
        assert line.count("class ") == 1, line
