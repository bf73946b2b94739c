"""ONNX files: every 2-D Conv and pooling node is a layer, with onnxruntime's values."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from featurescope.core.capture.capture import capture  # noqa: E402
from featurescope.core.errors import ModelError  # noqa: E402
from featurescope.core.models.load import load_model  # noqa: E402

OPS = ("Conv", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "ReduceMean")


class SmallCNN(nn.Module):
    def __init__(self, channels: int = 3):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, 8, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(8, 12, 3, stride=2, groups=4, bias=False)
        self.avg = nn.AvgPool2d(2)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(12, 5)

    def forward(self, x):
        x = self.pool(torch.relu(self.conv1(x)))
        x = self.avg(torch.relu(self.conv2(x)))
        return self.fc(self.gap(x).flatten(1))


def export(module, path, shape, dynamo=False):
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), (torch.zeros(shape),), str(path), dynamo=dynamo,
                          input_names=["image"], output_names=["logits"])
    return path


def onnxruntime_node_outputs(path, x):
    """The reference: onnxruntime's own values of every conv/pool node output, in order."""
    model = onnx.load(str(path))
    names = [n.output[0] for n in model.graph.node if n.op_type in OPS]
    for name in names:
        model.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return [torch.from_numpy(v[0]) for v in session.run(names, {"image": x.numpy()})]


@pytest.mark.parametrize("dynamo", [False, True])
def test_small_cnn_layers_equal_onnxruntime_and_torch(tmp_path, dynamo):
    torch.manual_seed(0)
    net = SmallCNN().eval()
    path = export(net, tmp_path / "small.onnx", (1, 3, 40, 40), dynamo)
    m = load_model(str(path), device="cpu")
    assert m.input_size == (40, 40) and m.channels == 3 and m.mean == (0.485, 0.456, 0.406)
    assert not m.supports_gradients and m.spec.source == "onnx" and m.categories is None
    assert [info.kind for info in m.layer_info] == ["Conv2d", "MaxPool2d", "Conv2d", "AvgPool2d",
                                                    "AdaptiveAvgPool2d"]
    conv2 = m.layer_info[2]
    assert (conv2.in_channels, conv2.out_channels, conv2.stride, conv2.groups) == (8, 12, (2, 2), 4)
    x = torch.randn(1, 3, 40, 40)
    result = capture(m, x)
    reference = onnxruntime_node_outputs(path, x)
    assert len(reference) == len(m.layers) == 5
    for layer, expected in zip(m.layers, reference):
        assert torch.allclose(result[layer], expected, atol=1e-4), layer
    with torch.no_grad():
        a = net.pool(torch.relu(net.conv1(x)))
        b = net.avg(torch.relu(net.conv2(a)))
        torch_values = [net.conv1(x), a, net.conv2(a), b, net.gap(b)]
        logits = net(x)
    for layer, expected in zip(m.layers, torch_values):
        assert torch.allclose(result[layer], expected[0], atol=1e-4), layer
    assert torch.allclose(result.logits, logits[0], atol=1e-4)
    # the filter view reads the conv weights from the stand-ins
    assert torch.allclose(getattr(m.module, m.layers[0]).weight, net.conv1.weight)


def test_resnet18_from_torchs_exporter_equals_onnxruntime(tmp_path):
    import torchvision

    torch.manual_seed(0)
    path = export(torchvision.models.resnet18(weights=None), tmp_path / "resnet18.onnx", (1, 3, 64, 64))
    m = load_model(str(path), device="cpu")
    assert m.layers[:3] == ["conv1", "maxpool", "layer1_0_conv1"] and len(m.layers) == 22
    assert m.categories[282] == "tiger cat"  # 1000 outputs: ImageNet's classes
    x = torch.randn(1, 3, 64, 64)
    result = capture(m, x)
    for layer, expected in zip(m.layers, onnxruntime_node_outputs(path, x)):
        assert torch.allclose(result[layer], expected, atol=1e-4), layer


def test_one_channel_onnx_model_takes_its_size_and_channels_from_the_graph(tmp_path):
    from PIL import Image

    path = export(SmallCNN(channels=1), tmp_path / "mnist.onnx", (1, 1, 28, 28))
    m = load_model(str(path), device="cpu", mean="0.1307", std="0.3081")
    assert m.channels == 1 and m.input_size == (28, 28) and m.mean == (0.1307,)
    x = m.preprocess(Image.new("RGB", (50, 40), (200, 100, 50)))
    assert x.shape == (1, 1, 28, 28)
    assert m.input_picture(x).mode == "L"


def test_onnx_refuses_gradients_and_weights_files_in_one_sentence(tmp_path):
    from featurescope.core.analysis.gradcam import compute_grad_cam

    path = export(SmallCNN(), tmp_path / "small.onnx", (1, 3, 32, 32))
    m = load_model(str(path), device="cpu")
    with pytest.raises(ModelError, match=r"^Grad-CAM needs gradients, which the ONNX model small.onnx does not give\.$"):
        compute_grad_cam(m, torch.zeros(1, 3, 32, 32), m.layers[0])
    with pytest.raises(ModelError, match=r"small.onnx carries its own weights"):
        load_model(str(path), weights=str(tmp_path / "w.pth"))
    (tmp_path / "broken.onnx").write_bytes(b"not onnx")
    with pytest.raises(ModelError, match=r"broken.onnx is not an ONNX model onnx can read"):
        load_model(str(tmp_path / "broken.onnx"))
    with pytest.raises(ModelError, match=r"The ONNX file .*missing.onnx does not exist"):
        load_model(str(tmp_path / "missing.onnx"))
