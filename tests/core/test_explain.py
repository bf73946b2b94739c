"""The teaching numbers: formulas filled in, parameters vs fully connected, pooling factors."""
from __future__ import annotations

import pytest
import torch
import torchvision

from featurescope.core.capture.capture import describe_layers
from featurescope.core.capture.layers import LayerInfo
from featurescope.core.analysis.explain import explain_layer, fmt_ratio


@pytest.fixture(scope="module")
def resnet18_layers():
    module = torchvision.models.resnet18(weights=None).eval()
    return {info.name: info for info in describe_layers(module, (1, 3, 224, 224))}


def test_resnet18_conv1_numbers(resnet18_layers):
    e = explain_layer(resnet18_layers["conv1"])
    facts = dict(e.facts)
    assert facts["channels"] == "3 -> 64"
    assert facts["kernel"] == "7x7" and facts["stride"] == "2" and facts["padding"] == "3"
    assert e.formulas[0].axis == "H and W"
    assert e.formulas[0].text == "out = floor((224 + 2*3 - 1*(7-1) - 1) / 2) + 1 = 112"
    assert e.parameters == 9408 and e.weights == 9408 and e.biases == 0
    n_in, n_out = 3 * 224 * 224, 64 * 112 * 112
    assert e.fc_parameters == n_in * n_out + n_out
    assert e.saving == pytest.approx((n_in * n_out + n_out) / 9408)
    assert "1 : 12,800,000" in " ".join(e.sentences)
    assert "9,408" in e.as_text() and "120,847,089,664" in e.as_text()


def test_resnet18_maxpool_downsampling(resnet18_layers):
    e = explain_layer(resnet18_layers["maxpool"])
    assert e.formulas[0].text == "out = floor((112 + 2*1 - 1*(3-1) - 1) / 2) + 1 = 56"
    assert e.downsampling == pytest.approx(4.0)
    assert e.parameters == 0 and e.fc_parameters is None
    assert "112x112 -> 56x56: 4x fewer positions, channels unchanged (64)." in e.sentences


def test_resnet18_global_pool_is_fixed_size(resnet18_layers):
    e = explain_layer(resnet18_layers["avgpool"])
    assert e.formulas[0].text == "fixed by the layer, whatever the input size: out = 1"
    assert e.downsampling == pytest.approx(49.0)
    assert any("Global pooling" in s for s in e.sentences)


def test_every_resnet18_formula_matches_the_real_output(resnet18_layers):
    for info in resnet18_layers.values():
        for f in explain_layer(info).formulas:
            assert f.text.endswith(f"= {f.size_out}"), (info.name, f.text)
            assert f.size_out == info.output_shape[1]


def test_depthwise_and_same_padding_on_efficientnet_lite0():
    from featurescope.core.models.load import load_model

    model = load_model("efficientnet_lite0", weights="none", device="cpu", input_size=64)
    depthwise = [i for i in model.layer_info if i.kind == "Conv2d" and i.groups > 1
                 and i.groups == i.in_channels]
    assert depthwise
    info = depthwise[0]
    e = explain_layer(info)
    kh, kw = info.kernel_size
    assert e.weights == info.out_channels * kh * kw
    assert any(s.startswith(f"Depthwise convolution (groups = {info.groups})") for s in e.sentences)
    for i in model.layer_info:
        for f in explain_layer(i).formulas:
            assert f.text.endswith(f"= {f.size_out}"), (i.name, f.text)


def _info(kind="Conv2d", c_in=8, c_out=8, k=(3, 3), s=(1, 1), p=(1, 1), d=(1, 1), g=1,
          hw_in=(32, 32), hw_out=(32, 32), params=None):
    if params is None:
        params = c_out * (c_in // g) * k[0] * k[1] + c_out if kind == "Conv2d" else 0
    return LayerInfo("x", "x", kind, 0, c_in, c_out, k, s, p, d, g,
                     (c_in, *hw_in), (c_out, *hw_out), params)


def test_ceil_mode_pool_formula_says_ceil():
    # torchvision's googlenet pools with ceil_mode=True: 112 -> 56 with k3 s2 p0
    real = torch.nn.MaxPool2d(3, 2, ceil_mode=True)(torch.zeros(1, 1, 112, 112)).shape[-1]
    e = explain_layer(_info("MaxPool2d", p=(0, 0), s=(2, 2), hw_in=(112, 112), hw_out=(real, real)))
    assert e.formulas[0].text == f"out = ceil((112 + 2*0 - 1*(3-1) - 1) / 2) + 1 = {real}"


def test_rectangular_dilated_grouped_conv():
    conv = torch.nn.Conv2d(8, 16, (3, 5), stride=(1, 2), padding=(2, 4), dilation=2, groups=4)
    out = conv(torch.zeros(1, 8, 20, 30)).shape
    e = explain_layer(_info(c_in=8, c_out=16, k=(3, 5), s=(1, 2), p=(2, 4), d=(2, 2), g=4,
                            hw_in=(20, 30), hw_out=tuple(out[-2:]),
                            params=sum(t.numel() for t in conv.parameters())))
    assert [f.axis for f in e.formulas] == ["H", "W"]
    assert e.formulas[1].text == f"out = floor((30 + 2*4 - 2*(5-1) - 1) / 2) + 1 = {out[-1]}"
    assert e.weights == 16 * 2 * 3 * 5 and e.biases == 16
    assert any(s.startswith("Grouped convolution (groups = 4)") for s in e.sentences)
    assert any("covers 5x9 input pixels" in s for s in e.sentences)


def test_ratio_formatting():
    assert fmt_ratio(2_312_345.0) == "1 : 2,310,000"
    assert fmt_ratio(512.4) == "1 : 512"
    assert fmt_ratio(2.5) == "1 : 2.5"
