"""`featurescope layers --all`, `export --layers` with groups, and `featurescope graph`."""
from __future__ import annotations

import json

import numpy as np
import pytest

from featurescope.cli.main import main

NET = (
    "import torch.nn as nn\n"
    "input_size = 32\n"
    "class Block(nn.Module):\n"
    "    def __init__(self):\n"
    "        super().__init__()\n"
    "        self.conv = nn.Conv2d(8, 8, 3, padding=1)\n"
    "        self.bn = nn.BatchNorm2d(8)\n"
    "        self.act = nn.ReLU()\n"
    "    def forward(self, x):\n"
    "        return self.act(self.bn(self.conv(x))) + x\n"
    "def net():\n"
    "    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), Block(), nn.MaxPool2d(2),\n"
    "                         nn.Flatten(), nn.Linear(8 * 16 * 16, 10))\n"
)


@pytest.fixture
def net(tmp_path):
    path = tmp_path / "net.py"
    path.write_text(NET)
    return f"{path}:net"


def test_layers_all_lists_every_module_with_its_shape(net, capsys):
    assert main(["layers", "--model", net, "--all", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    rows = {row["name"]: row for row in data["layers"]}
    assert list(rows) == ["0", "1", "2.conv", "2.bn", "2.act", "2", "3"]
    assert rows["2"]["kind"] == "Block" and rows["2"]["output_shape"] == [8, 32, 32]
    assert rows["2.bn"]["kernel_size"] is None and rows["2.bn"]["parameters"] == 16
    assert data["not_feature_maps"] == [{"name": "4", "output_shape": [2048]},
                                        {"name": "5", "output_shape": [10]}]
    assert main(["layers", "--model", net]) == 0
    assert "3 conv and pooling layers" in capsys.readouterr().out  # 0, 2.conv, 3


def test_export_groups_and_module_names(net, tmp_path, capsys):
    from PIL import Image

    image = tmp_path / "photo.png"
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(image)
    out = tmp_path / "out"
    assert main(["export", str(image), "--model", net, "--layers", "act,block", "--format", "npz",
                 "-o", str(out)]) == 0
    with np.load(next(out.glob("*.npz"))) as npz:
        assert sorted(set(npz.files) - {"input"}) == ["1", "2", "2.act"]
    assert main(["export", str(image), "--model", net, "--layers", "5", "-o", str(tmp_path / "o2")]) == 2
    assert "not a (C, H, W) feature map" in capsys.readouterr().err


def test_graph_writes_svg_and_png(net, tmp_path, capsys):
    svg = tmp_path / "net.svg"
    assert main(["graph", "--model", net, "-o", str(svg), "--expand", "all", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    joins = [n for n in data["nodes"] if n["join"] == "+"]
    assert len(joins) == 1 and sorted(joins[0]["inputs"]) == ["1", "2.act"]  # the residual
    assert "<svg" in svg.read_text()
    png = tmp_path / "net.png"
    assert main(["graph", "--model", net, "-o", str(png), "--highlight", "2.bn"]) == 0
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert main(["graph", "--model", net, "-o", str(png)]) == 2  # exists
    assert "--force" in capsys.readouterr().err
    assert main(["graph", "--model", net, "-o", str(tmp_path / "x.pdf")]) == 2
    assert main(["graph", "--model", net, "-o", str(tmp_path / "y.svg"), "--highlight", "nope"]) == 2
