"""The model registry and its sources: own files with 1 or 4 channels, pickles, what
cannot be shown, and the preprocessing/statistics rules every source shares."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from featurescope.core.errors import ModelError, WeightsError
from featurescope.core.models.load import load_model
from featurescope.core.models.registry import catalogue_entries, source_for
from featurescope.core.models.spec import parse_statistics

MNIST_FILE = '''
import torch
from torch import nn

input_size = 28
categories = [str(i) for i in range(10)]


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.fc = nn.Linear(16 * 7 * 7, 10)

    def forward(self, x):
        x = self.pool(torch.relu(self.conv1(x)))
        x = self.pool(torch.relu(self.conv2(x)))
        return self.fc(x.flatten(1))


class Rgba(nn.Module):
    input_size = 32

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 6, 3)
        self.gap = nn.AdaptiveAvgPool2d(1)

    def forward(self, x):
        return self.gap(self.conv(x)).flatten(1)


class Cifar(nn.Module):
    """Built for 32 px: fails on anything else."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 32 * 32, 10)

    def forward(self, x):
        return self.fc(self.conv(x).flatten(1))


class Audio(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(3, 4, 3)

    def forward(self, x):
        return self.conv(x.flatten(2))


class Volume(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(3, 4, 3)
        self.pool = nn.MaxPool3d(2)

    def forward(self, x):
        return self.pool(self.conv(x.unsqueeze(2)))


def mlp():
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 224 * 224, 10))
'''


@pytest.fixture
def nets(tmp_path):
    path = tmp_path / "nets.py"
    path.write_text(MNIST_FILE)
    return path


PHOTO = Image.fromarray(np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8), "RGB")


def test_each_kind_of_name_finds_its_source(tmp_path):
    assert source_for("efficientnet_lite0").name == "lite"
    assert source_for("resnet18").name == "torchvision"
    assert source_for("timm:resnet18").name == "timm"
    assert source_for("path/to/net.onnx").name == "onnx"
    assert source_for("path/to/net.py:build").name == "pyfile"
    assert source_for("path/to/net.pt").name == "pickle"
    assert source_for("no_such_net").name == "torchvision"  # which says nobody knows it
    with pytest.raises(ModelError, match="timm:NAME or path/to/model.onnx"):
        load_model("no_such_net")
    assert catalogue_entries()[0].name == "efficientnet_lite0"


def test_the_catalogue_lists_the_classifiers_before_the_detectors_and_segmenters():
    """Detectors claim their names before the torchvision classifiers (which claim any
    name), but a user scrolling the list meets resnet and vgg first."""
    from featurescope.core.models.sources.detection import MODELS

    names = [entry.name for entry in catalogue_entries()]
    dense = [i for i, name in enumerate(names) if name in MODELS]
    assert dense and names.index("resnet18") < min(dense) and names.index("vgg16") < min(dense)
    assert dense == list(range(len(names) - len(dense), len(names)))  # all at the end
    assert source_for("fasterrcnn_resnet50_fpn").name == "torchvision-detection"


def test_one_channel_mnist_model_reads_channels_and_size_from_the_model(nets):
    m = load_model(f"{nets}:Net", weights="none", device="cpu", mean="0.1307", std="0.3081")
    assert m.channels == 1 and m.input_size == (28, 28)
    assert m.mean == (0.1307,) and m.std == (0.3081,)
    x = m.preprocess(PHOTO)
    assert x.shape == (1, 1, 28, 28)
    # the reference: Pillow's grey conversion, resized and cropped the same way by hand
    grey = PHOTO.convert("L").resize((37, 28), Image.BILINEAR)  # shorter side 60 -> 28
    expected = (np.asarray(grey, np.float32)[:, 4:32] / 255 - 0.1307) / 0.3081
    assert np.abs(x[0, 0].numpy() - expected).mean() < 0.05  # antialiasing differs slightly
    assert m.layers == ["conv1", "pool", "conv2", "pool#2"]
    assert m.layer_info[0].input_shape == (1, 28, 28)
    assert m.module(x).shape == (1, 10)
    picture = m.input_picture(x)
    assert picture.mode == "L" and picture.size == (28, 28)
    seen = np.asarray(picture, np.int16)
    back = np.clip(np.round((x[0, 0].numpy() * 0.3081 + 0.1307) * 255), 0, 255)
    assert np.array_equal(seen, back)
    rgb = m.deprocess(x)
    assert rgb.shape == (28, 28, 3) and (rgb[..., 0] == seen).all() and (rgb[..., 2] == seen).all()


def test_one_channel_defaults_are_the_grey_imagenet_statistics(nets):
    m = load_model(f"{nets}:Net", weights="none", device="cpu")
    assert m.mean == pytest.approx(((0.485 + 0.456 + 0.406) / 3,))
    with pytest.raises(ModelError, match=r"mean must have 1 value \(the model has one input channel\), not 3"):
        load_model(f"{nets}:Net", weights="none", mean=(0.5, 0.5, 0.5))


def test_four_channel_model_gets_rgba_with_an_opaque_alpha(nets):
    m = load_model(f"{nets}:Rgba", weights="none", device="cpu")
    assert m.channels == 4 and m.input_size == (32, 32) and len(m.mean) == 4
    x = m.preprocess(PHOTO)
    assert x.shape == (1, 4, 32, 32)
    assert torch.allclose(x[0, 3], torch.ones(32, 32))  # alpha 1: mean 0, std 1
    picture = m.input_picture(x)
    assert picture.mode == "RGBA" and np.asarray(picture)[..., 3].min() == 255
    assert m.deprocess(x).shape == (32, 32, 3)
    assert m.layers == ["conv", "gap"]


def test_own_model_path_is_kept_absolute(nets, monkeypatch, tmp_path):
    monkeypatch.chdir(nets.parent)
    m = load_model("nets.py:Net", weights="none")
    assert m.name == "nets.py:Net"
    assert m.source == f"{nets.resolve()}:Net"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert load_model(m.source, weights="none").layers == m.layers


@pytest.mark.parametrize("factory, what", [
    ("Audio", r"nets.py:Audio has only Conv1d layers, and featurescope shows 2-D convolution and pooling layers only"),
    ("Volume", r"nets.py:Volume has only Conv3d, MaxPool3d layers"),
    ("mlp", r"nets.py:mlp has no convolution or pooling layer, so there are no feature maps"),
])
def test_models_without_2d_layers_are_refused_at_load_time(nets, factory, what):
    with pytest.raises(ModelError, match=what):
        load_model(f"{nets}:{factory}", weights="none")


def test_a_forward_failure_names_the_model_and_no_command_line_flag(nets):
    m = load_model(f"{nets}:Cifar", weights="none", device="cpu")  # the file says 28 px
    with pytest.raises(ModelError) as caught:
        m.layer_info
    text = str(caught.value)
    assert text.startswith(f"{nets}:Cifar failed on a 3x28x28 input (")
    assert "input size" in text and "--" not in text
    assert load_model(f"{nets}:Cifar", weights="none", input_size=32).layers == ["conv"]


def test_statistics_parser_one_per_channel_or_one_for_all():
    assert parse_statistics("0.485,0.456,0.406") == (0.485, 0.456, 0.406)
    assert parse_statistics("0.1307") == (0.1307,)
    assert parse_statistics("0.5", channels=3) == (0.5, 0.5, 0.5)
    assert parse_statistics("  ") is None and parse_statistics(None) is None
    with pytest.raises(ModelError, match="std must not contain 0"):
        parse_statistics("0.2,0,0.2", what="std")
    with pytest.raises(ModelError, match=r"mean must have 4 values \(one per input channel\) or one for all, not 2"):
        parse_statistics("0.5,0.5", channels=4)
    with pytest.raises(ModelError, match=r"mean 'a,b' is not numbers"):
        parse_statistics("a,b")


def test_a_trusted_whole_model_pickle_loads_as_a_model(nets, tmp_path):
    net = load_model(f"{nets}:Net", weights="none").module
    path = tmp_path / "whole.pt"
    torch.save(net, path)
    with pytest.raises(WeightsError, match="full pickle"):
        load_model(str(path))
    with pytest.warns(UserWarning, match="full unpickler"):
        m = load_model(str(path), trust_pickle=True)
    assert m.channels == 1 and m.weights_label == "pickled weights"
    x = m.preprocess(PHOTO)
    assert torch.equal(m.module(x), net(x))
    state = tmp_path / "state.pt"
    torch.save(net.state_dict(), state)
    with pytest.raises(ModelError, match="not a whole network; give its architecture as --model"):
        load_model(str(state))


def test_one_default_model_everywhere():
    """The CLI's --model, the app's first start and the registry name one model, whose
    weights ship with the package (nothing to download)."""
    from featurescope.cli.main import build_parser
    from featurescope.core.models.registry import DEFAULT_MODEL, catalogue_entries
    from featurescope.gui.model.settings import Settings

    assert build_parser().parse_args(["predict", "cat.png"]).model == DEFAULT_MODEL
    assert Settings().model_spec()["name"] == DEFAULT_MODEL
    entry = next(e for e in catalogue_entries() if e.name == DEFAULT_MODEL)
    assert entry.weights_status == "embedded"


def test_the_downloader_knows_no_model_source():
    """core/models/download.py and core/models/sources/ imported each other (a circle that
    only lazy imports kept working); the downloader now imports no model code."""
    import ast
    from pathlib import Path

    import featurescope.core.models.download as download

    tree = ast.parse(Path(download.__file__).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not {m for m in imported if m and m.startswith("featurescope.core.models")}
