"""ONNX graphs as torch exports them by default: channels really switched off (against
onnxruntime on the same file with those filters zeroed), and fixed shapes run one batch
of their size at a time (or refused in one sentence), never a raw onnxruntime error."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import featurescope as fs  # noqa: E402
from featurescope.core.analysis.ablate import ablate  # noqa: E402
from featurescope.core.capture.capture import capture, capture_batch  # noqa: E402
from featurescope.core.errors import FeaturescopeError, ModelError  # noqa: E402
from featurescope.core.index.build import build_index  # noqa: E402
from featurescope.core.index.store import open_index  # noqa: E402
from featurescope.core.models.load import load_model  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_model_onnx import SmallCNN, export  # noqa: E402

OPS = ("Conv", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "ReduceMean")


def _zeroed_reference(path: Path, conv_index: int, channels, x: torch.Tensor):
    """onnxruntime on the file with the output channels of its ``conv_index``-th Conv
    zeroed in the weights and bias: (logits, [every conv/pool node output])."""
    model = onnx.load(str(path))
    inits = {init.name: init for init in model.graph.initializer}
    producers = {out: node for node in model.graph.node for out in node.output}

    def tensor_of(name):  # the weights, seen through Identity nodes (opset 19 exports)
        if name in inits:
            return inits[name]
        node = producers[name]
        if node.op_type == "Identity":
            return tensor_of(node.input[0])
        return next(a.t for a in node.attribute if a.name == "value")  # a Constant

    conv = [n for n in model.graph.node if n.op_type == "Conv"][conv_index]
    for name in conv.input[1:]:
        tensor = tensor_of(name)
        array = onnx.numpy_helper.to_array(tensor).copy()
        array[list(channels)] = 0
        tensor.CopyFrom(onnx.numpy_helper.from_array(array, tensor.name))
    names = [n.output[0] for n in model.graph.node if n.op_type in OPS]
    for name in names:
        model.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    out = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    return torch.from_numpy(out[0]), [torch.from_numpy(v) for v in out[1:]]


@pytest.mark.parametrize("network, size, layer, conv_index, channels", [
    (SmallCNN, 40, "conv1", 0, [0, 2, 5]),
    ("resnet18", 64, "layer1_0_conv1", 1, list(range(0, 64, 3))),  # inside a residual block
])
def test_ablate_on_onnx_switches_the_channels_off(tmp_path, network, size, layer, conv_index, channels):
    import torchvision

    torch.manual_seed(0)
    module = SmallCNN() if network is SmallCNN else torchvision.models.resnet18(weights=None)
    path = export(module, tmp_path / "net.onnx", (1, 3, size, size))
    m = load_model(str(path), device="cpu")
    x = torch.rand(1, 3, size, size)
    done = ablate(m, x, layer, channels)
    logits, nodes = _zeroed_reference(path, conv_index, channels, x)
    expected = torch.softmax(logits[0].double(), 0)
    for change in done.changes:
        assert change.after == pytest.approx(float(expected[change.index]), abs=1e-5)
    assert max(abs(c.change) for c in done.changes) > 1e-4  # something did change
    for name, reference in zip(m.layers, nodes):  # every later map is the edited network's
        assert torch.allclose(done.result[name], reference[0], atol=1e-4), name
    assert torch.equal(capture(m, x)[layer], done.original[layer])  # the plain run is untouched


@pytest.fixture(scope="module")
def fixed(tmp_path_factory):
    torch.manual_seed(0)
    return export(SmallCNN(), tmp_path_factory.mktemp("onnx") / "fixed.onnx", (1, 3, 40, 40))


def test_a_fixed_batch_graph_runs_batches_one_image_at_a_time(fixed):
    m = load_model(str(fixed), device="cpu")
    x = torch.rand(3, 3, 40, 40)
    batch = capture_batch(m, x)
    for i in range(3):
        one = capture(m, x[i:i + 1])
        for layer in m.layers:
            assert torch.allclose(batch[layer][i], one[layer], atol=1e-6), layer
        assert torch.allclose(batch.logits[i], one.logits, atol=1e-6)


def test_a_fixed_size_graph_refuses_another_size_in_one_sentence(fixed, tmp_path, capsys):
    from PIL import Image

    from featurescope.cli.main import main

    m = load_model(str(fixed), device="cpu", input_size=64)
    with pytest.raises(ModelError, match=r"fixed.onnx takes 40x40 images only .*not 64x64"):
        capture(m, torch.rand(1, 3, 64, 64))
    photo = tmp_path / "photo.png"
    Image.new("RGB", (50, 50), "red").save(photo)
    for command in (["overview", str(photo), "-o", str(tmp_path / "poster.png")],
                    ["explain", str(photo), "--layer", "conv1", "--channel", "0", "--at", "3,3"]):
        assert main([*command, "-m", str(fixed), "--input-size", "64"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "40x40 images only" in err[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo.png"]


def test_index_on_a_fixed_batch_graph_matches_one_image_at_a_time(fixed, tmp_path):
    from PIL import Image

    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(5):
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    m = load_model(str(fixed), device="cpu")
    output = tmp_path / "fixed.fsindex"
    index = build_index(m, folder, top=2, batch_size=4, workers=0, output=output)
    assert index.images == 5 and open_index(output).images == 5
    for path in sorted(folder.iterdir()):
        maxima = capture(m, Image.open(path))["conv1"].flatten(1).amax(1)
        best = index.top("conv1", 0, 2)[0]
        assert best.activation >= float(maxima[0]) - 1e-5


def test_a_failing_index_run_leaves_no_empty_index(fixed, tmp_path):
    from PIL import Image

    folder = tmp_path / "photos"
    folder.mkdir()
    Image.new("RGB", (40, 40)).save(folder / "a.png")
    m = load_model(str(fixed), device="cpu", input_size=64)  # every batch fails
    output = tmp_path / "never.fsindex"
    with pytest.raises(FeaturescopeError, match="40x40 images only"):
        build_index(m, folder, workers=0, output=output)
    assert list(tmp_path.iterdir()) == [folder]
