"""The dataflow graph: fx's nodes, joins as edges, collapse/expand, layout, pictures, CLI."""
from __future__ import annotations

import torch
import torch.fx
import torchvision

from featurescope.core.capture.trace import trace_dataflow
from featurescope.core.graph.dataflow import auto_expanded, block_of, collapse, expand_path
from featurescope.core.graph.draw import to_svg, write_picture
from featurescope.core.graph.layout import layout_graph
from featurescope.core.graph.tracing import build_dataflow


def _edges(graph):
    return {(i, n.id) for n in graph.nodes for i in n.inputs}


def test_graph_has_fx_nodes_resnet18():
    model = torchvision.models.resnet18().eval()
    graph = build_dataflow(model, (1, 3, 64, 64))
    assert graph.source == "fx"
    fx_graph = torch.fx.symbolic_trace(model).graph
    fx_modules = [str(n.target) for n in fx_graph.nodes if n.op == "call_module"]
    ours = [n.layer.partition("#")[0] for n in graph.nodes if n.layer]
    assert ours == fx_modules  # every module call, in fx's order
    adds = [n for n in fx_graph.nodes if getattr(n.target, "__name__", "") in ("add", "iadd")]
    joins = [n for n in graph.nodes if n.join == "+"]
    assert len(joins) == len(adds) == 8  # one residual addition per block
    # a residual join takes the block's input: layer1.0's add reads maxpool's output
    assert set(joins[0].inputs) == {"layer1.0.bn2", "maxpool"}
    assert graph.layer_nodes()["layer1.0.relu#2"].inputs == [joins[0].id]
    assert graph.layer_nodes()["layer2.0.conv1"].shape == (128, 8, 8)


def test_op_trace_fallback_gives_the_same_graph():
    model = torchvision.models.resnet18().eval()
    x = torch.zeros(1, 3, 64, 64)
    fx_graph = build_dataflow(model, tuple(x.shape))
    traced = trace_dataflow(model, x)
    assert traced.source == "trace"
    layer_edges = lambda g: {(a, b) for a, b in _edges(g) if a in g.layer_nodes() and b in g.layer_nodes()}
    assert layer_edges(traced) == layer_edges(fx_graph)
    assert {n.layer: n.shape for n in traced.nodes if n.layer} == \
        {n.layer: n.shape for n in fx_graph.nodes if n.layer}
    assert sum(1 for n in traced.nodes if n.join) == 8


def test_concatenation_is_a_join():
    model = torchvision.models.googlenet(init_weights=False, aux_logits=False).eval()
    graph = build_dataflow(model, (1, 3, 64, 64))
    cats = [n for n in graph.nodes if n.join == "cat"]
    assert len(cats) == 9 and all(len(n.inputs) == 4 for n in cats)  # inception's four branches


def test_collapse_expand_and_layout():
    model = torchvision.models.resnet18().eval()
    graph = build_dataflow(model, (1, 3, 64, 64))
    top = collapse(graph)
    labels = [n.label for n in top.nodes]
    assert labels[:6] == ["input", "conv1", "bn1", "relu", "maxpool", "layer1"]
    layer1 = top.node("block:layer1")
    assert layer1.is_block and layer1.kind == "Sequential" and layer1.shape == (64, 16, 16)
    assert top.node("block:layer2").inputs == ["block:layer1"]
    opened = collapse(graph, expand_path(graph, "layer2.0.conv1", set()))
    assert block_of(opened, "layer2.0.conv1") == "layer2.0.conv1"
    assert block_of(opened, "layer3.1.bn2") == "block:layer3"
    downsample = opened.node("block:layer2.0.downsample")
    assert downsample.inputs == ["block:layer1"]  # the shortcut starts where layer2 does
    assert len(collapse(graph, auto_expanded(graph, 40)).nodes) <= 40
    layout = layout_graph(opened)
    assert set(layout.boxes) == {n.id for n in opened.nodes}
    for src, dst, points in layout.edges:  # data flows downwards
        assert layout.boxes[src].y < layout.boxes[dst].y
        assert points[0][1] <= points[-1][1]
    rows = {}
    for box in layout.boxes.values():
        rows.setdefault(round(box.y), []).append(box)
    for row in rows.values():  # no two boxes of a rank overlap
        row.sort(key=lambda b: b.x)
        assert all(a.x + a.w <= b.x for a, b in zip(row, row[1:]))


def test_pictures(tmp_path):
    model = torchvision.models.resnet18().eval()
    graph = collapse(build_dataflow(model, (1, 3, 32, 32)))
    layout = layout_graph(graph)
    svg = to_svg(graph, layout, highlight="block:layer3")
    assert svg.startswith("<svg") and "layer3" in svg and "#ffe066" in svg
    from PIL import Image

    png = write_picture(graph, layout, tmp_path / "net.png")
    assert Image.open(png).size == (int(layout.width * 1.5), int(layout.height * 1.5))
