"""`featurescope circuit`: the ranking, its JSON, the trail picture and one-sentence errors."""
import json

import pytest
import torch
from PIL import Image

from featurescope.cli.main import main
from featurescope.core.resources import default_sample

NET = '''
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 6, 3, padding=1)
        self.b = nn.Conv2d(6, 8, 3, padding=1, stride=2)
        self.c = nn.Conv2d(8, 5, 3, padding=1)
        self.fc = nn.Linear(5, 4)

    def forward(self, x):
        x = self.c(torch.relu(self.b(torch.relu(self.a(x)))))
        return self.fc(x.mean(dim=(2, 3)))


def make():
    torch.manual_seed(0)
    return Net()
'''


@pytest.fixture
def small_model(tmp_path):
    path = tmp_path / "net.py"
    path.write_text(NET)
    return ["--model", f"{path}:make", "--input-size", "32"]


def test_circuit_json_lists_sources_and_check(small_model, capsys):
    code = main(["circuit", str(default_sample()), *small_model, "--layer", "c", "--channel", "2",
                 "--top", "3", "--json"])
    assert code == 0
    record = json.loads(capsys.readouterr().out)
    assert record["layer"] == "c" and record["channel"] == 2 and record["source"] == "b"
    assert len(record["sources"]) == 3
    assert {"channel", "contribution", "activation"} <= set(record["sources"][0])
    sizes = [abs(s["contribution"]) for s in record["sources"]]
    assert sizes == sorted(sizes, reverse=True)
    check = record["check"]
    assert {"top_contribution", "most_active", "random"} <= set(check)
    assert check["random"]["fall"] == pytest.approx(check["target"] - check["random"]["value"])


def test_circuit_trail_picture_from_the_class(small_model, tmp_path, capsys):
    out = tmp_path / "trail.png"
    code = main(["circuit", str(default_sample()), *small_model, "--layer", "class", "--channel", "1",
                 "-o", str(out)])
    assert code == 0
    text = capsys.readouterr().out
    assert "trail (3 steps): class:1 <- c:" in text
    with Image.open(out) as picture:
        assert picture.width > 300 and picture.height > 3 * 60
    assert main(["circuit", str(default_sample()), *small_model, "--layer", "class", "--channel", "1",
                 "-o", str(out)]) == 2  # exists: refused without --force
    assert "already exists" in capsys.readouterr().err


@pytest.mark.parametrize("arguments, message", [
    (["--layer", "cc", "--channel", "0"], "has no layer called 'cc'; did you mean 'c'?"),
    (["--layer", "c", "--channel", "9"], "c has channels 0 to 4; 9 is not among them."),
    (["--layer", "a", "--channel", "0"], "it is a first layer"),
    (["--layer", "b", "--channel", "0", "--from", "c"], "c does not feed b"),
    (["--layer", "c", "--channel", "0", "--at", "40,0"], "outside c's 16x16 map"),
])
def test_bad_requests_are_one_sentence_and_exit_2(small_model, capsys, arguments, message):
    assert main(["circuit", str(default_sample()), *small_model, *arguments]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and err.count("\n") == 0 and "Traceback" not in err


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the TorchScript ONNX exporter
def test_a_model_without_gradients_gets_one_sentence(tmp_path, capsys):
    pytest.importorskip("onnx")
    from torch import nn

    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 3)).eval()
    path = tmp_path / "net.onnx"
    torch.onnx.export(net, torch.zeros(1, 3, 32, 32), str(path), dynamo=False)
    assert main(["circuit", str(default_sample()), "--model", str(path), "--layer", "2",
                 "--channel", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert "needs gradients" in err and err.count("\n") == 0
