"""Any module: every module's capture equals torchvision's create_feature_extractor.

The reference is torchvision's own fx-based extractor, independent of our taps. Its graph
runs the model's in-place operations for real (``out += identity`` is traced as
``operator.iadd``, ReLU(inplace=True) stays in place), which overwrites the very outputs
it returns; the reference graph is therefore rewritten to out-of-place operations first.
torchvision's tracer also keeps every torchvision.ops module (Conv2dNormActivation,
SqueezeExcitation, ...) as one leaf; the tests let it trace into them, so that the
convolutions, norms and activations inside have nodes of their own.
"""
from __future__ import annotations

import operator

import pytest
import torch
import torchvision
from torchvision.models import feature_extraction
from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names

from featurescope.core.capture.capture import capture, describe_layers
from featurescope.core.capture.selection import group_members
from featurescope.core.errors import ModelError

MODELS = ["resnet18", "vgg16", "efficientnet_b0", "mobilenet_v3_large", "convnext_tiny"]


def _out_of_place(graph_module):
    for node in graph_module.graph.nodes:
        if node.target is operator.iadd:
            node.target = operator.add
        if node.op == "call_method" and node.target.endswith("_") and not node.target.startswith("_"):
            node.target = node.target[:-1]
    for sub in graph_module.modules():
        if getattr(sub, "inplace", False) is True:
            sub.inplace = False
    graph_module.recompile()
    return graph_module


def _fx_node(name: str, nodes: list) -> str:
    """The fx node of layer ``name``: the module's node ("relu#2" -> "relu_1") or, for
    a module fx traced through (a block), the last node inside it."""
    qualified, _, call = name.partition("#")
    node = qualified if not call else f"{qualified}_{int(call) - 1}"
    if node in nodes:
        return node
    inside = [n for n in nodes if n.startswith(qualified + ".")]
    assert inside, f"{name} has no node in fx's graph"
    return inside[-1]


@pytest.mark.parametrize("arch", MODELS)
def test_every_module_equals_create_feature_extractor(arch, monkeypatch):
    monkeypatch.setattr(feature_extraction, "_get_leaf_modules_for_ops", lambda: [])
    model = torchvision.models.get_model(arch).eval()
    x = torch.randn(1, 3, 64, 64)
    result = capture(model, x, layers="all")
    names = result.layers
    # Blocks, activations, batch norms and the default conv/pool layers are all there.
    kinds = {result.info[n].kind for n in names}
    assert "Conv2d" in kinds
    assert kinds & {"ReLU", "SiLU", "Hardswish"} or arch == "convnext_tiny"  # its GELU is channels-last
    assert kinds & {"BatchNorm2d", "LayerNorm2d"} or arch == "vgg16"
    assert len(names) > len(capture(model, x).layers)
    nodes = get_graph_node_names(model)[1]
    wanted = {_fx_node(name, nodes) for name in names}
    extractor = _out_of_place(create_feature_extractor(model, return_nodes=sorted(wanted)))
    with torch.no_grad():
        reference = extractor(x)
    for name in names:
        expected = reference[_fx_node(name, nodes)][0]
        torch.testing.assert_close(result[name], expected, rtol=1e-4, atol=1e-5, msg=name)


def test_second_call_and_blocks_resnet18():
    model = torchvision.models.resnet18().eval()
    x = torch.randn(1, 3, 64, 64)
    result = capture(model, x, layers=["layer1.0.relu#2", "layer3", "layer1.0"])
    assert result.layers == ["layer1.0.relu#2", "layer1.0", "layer3"]  # network order
    # The block's output is its last ReLU's second call.
    torch.testing.assert_close(result["layer1.0"], result["layer1.0.relu#2"])
    assert result.info["layer3"].kind == "Sequential"
    assert result.info["layer3"].output_shape == (256, 4, 4)
    assert result.info["layer3"].kernel_size is None
    assert result.info["layer3"].parameters == sum(p.numel() for p in model.layer3.parameters())
    assert result.logits is None  # stopped after layer3


def test_groups_resnet18():
    model = torchvision.models.resnet18().eval()
    shape = (1, 3, 64, 64)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(describe_layers(model, shape, layers="conv")) == len(convs)
    acts = describe_layers(model, shape, layers="act")
    assert {i.kind for i in acts} == {"ReLU"}
    assert len(acts) == 17  # the stem's ReLU and two calls in each of 8 blocks
    blocks = {i.name for i in describe_layers(model, shape, layers="block")}
    assert {f"layer{s}.{b}" for s in range(1, 5) for b in range(2)} <= blocks
    assert "layer2.0.downsample" in blocks  # a Sequential holding a 1x1 convolution
    assert "layer2" not in blocks  # its children are blocks, not convolutions
    default = describe_layers(model, shape)
    assert [i.name for i in describe_layers(model, shape, layers="conv,pool")] == [i.name for i in default]


def test_convnext_channels_last_modules_are_not_feature_maps():
    model = torchvision.models.convnext_tiny().eval()
    members = {name for name, _m in group_members(model, "all")}
    assert "features.1.0.block.0" in members  # the depthwise convolution
    assert "features.1.0.block.2" not in members  # LayerNorm on (N, H, W, C)
    assert "features.1.0.block" in members  # permuted back: a feature map again


def test_unknown_and_non_spatial_names_are_sentences():
    model = torchvision.models.resnet18().eval()
    x = torch.randn(1, 3, 32, 32)
    with pytest.raises(ModelError, match="did you mean 'layer4'"):
        capture(model, x, layers=["layer9"])
    with pytest.raises(ModelError, match="not a \\(C, H, W\\) feature map"):
        capture(model, x, layers=["fc"])
    with pytest.raises(ModelError, match="runs 1 time"):
        capture(model, x, layers=["conv1#2"])


def test_all_modules_within_memory_budget():
    model = torchvision.models.resnet18().eval()
    x = torch.randn(1, 3, 64, 64)
    full = capture(model, x, layers="all")
    budget = full.stored_bytes // 3
    kept = capture(model, x, layers="all", memory_budget=budget)
    assert kept.stored_bytes <= budget
    assert kept.layers == full.layers and kept.missing
