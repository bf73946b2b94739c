"""The network as a dataflow graph: module calls and the joins between them.

:func:`build_dataflow` traces a network with torch.fx (every module without children is
a leaf node, so our own modules with Python control flow inside, such as Lite0's
TensorFlow-style padding, stay one node); where fx cannot trace the network it falls
back to the op trace of a real forward pass (core/capture/trace.py). Each node knows
the layer name it has in a capture ("layer1.0.relu#2" for a module's second call), the
module path it sits in (its *scope*: "layer1", "layer1.0"), its output shape, and its
inputs, so residual additions and concatenations are nodes with two or more inputs.

:func:`collapse` shows a block (any module with a scope) as one node until it is
expanded; the graph view and ``featurescope graph`` draw what it returns.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Iterable, Optional

import torch
from torch import nn

from featurescope.core.errors import ModelError
from featurescope.core.progress import CancelToken, ProgressCallback, check

# Functions whose two or more tensor inputs are a join drawn as such.
JOIN_KINDS = {"add": "+", "iadd": "+", "mul": "*", "imul": "*", "cat": "cat", "concat": "cat",
              "stack": "stack", "sub": "-"}


@dataclass
class GraphNode:
    """One node: ``id`` unique; ``label`` what is written on it (a layer or module name,
    or the function); ``kind`` the module class or function name ("Conv2d", "add");
    ``layer`` the capture's layer name for a module call (None for a function);
    ``scope`` the module paths it sits in, outermost first; ``shape`` the output shape
    without the batch dimension (None: not a tensor); ``inputs`` ids of its input nodes;
    ``join`` "+", "cat", ... when it joins two or more tensors; ``members`` how many
    nodes a collapsed block stands for (0 for a plain node)."""

    id: str
    label: str
    kind: str
    layer: Optional[str]
    scope: tuple
    shape: Optional[tuple]
    inputs: list = field(default_factory=list)
    join: Optional[str] = None
    members: int = 0

    @property
    def is_block(self) -> bool:
        return self.members > 0


@dataclass
class Dataflow:
    """``nodes`` in topological order; ``source`` "fx" or "trace" (how it was found);
    ``blocks`` {module path: class name} of the modules that can collapse."""

    nodes: list
    source: str
    blocks: dict

    def node(self, node_id: str) -> GraphNode:
        return self._by_id()[node_id]

    def _by_id(self) -> dict:
        return {n.id: n for n in self.nodes}

    def layer_nodes(self) -> dict:
        """{layer name: node} of the module calls."""
        return {n.layer: n for n in self.nodes if n.layer}


class _LeafTracer(torch.fx.Tracer):
    """fx's tracer with every module that has no children as a leaf."""

    def is_leaf_module(self, module: nn.Module, qualified: str) -> bool:
        return next(iter(module.children()), None) is None or super().is_leaf_module(module, qualified)


def _shape(meta) -> Optional[tuple]:
    shape = getattr(meta, "shape", None)
    if shape is None:
        return None
    return tuple(int(s) for s in shape[1:]) if len(shape) > 1 else tuple(int(s) for s in shape)


def _scope_of(node, qualified: Optional[str]) -> tuple:
    stack = [re.sub(r"@\d+$", "", key) for key in node.meta.get("nn_module_stack", {})]
    if qualified is not None and stack and stack[-1] == qualified:
        stack = stack[:-1]
    if qualified is not None and not stack:  # older fx: derive it from the module path
        parts = qualified.split(".")
        stack = [".".join(parts[:i]) for i in range(1, len(parts))]
    return tuple(dict.fromkeys(stack))


def _fx_dataflow(module: nn.Module, x: torch.Tensor) -> Dataflow:
    graph = _LeafTracer().trace(module)
    traced = torch.fx.GraphModule(module, graph)
    _propagate_shapes(traced, x)
    modules = dict(module.named_modules())
    calls: dict = {}
    nodes, kept = [], {}
    for fx_node in graph.nodes:
        meta = fx_node.meta.get("val", fx_node.meta.get("tensor_meta"))
        shape = _shape(meta) if isinstance(getattr(meta, "shape", None), (tuple, torch.Size)) \
            else None  # (a tuple of outputs, or no tensor)
        inputs = list(dict.fromkeys(kept[i.name] for i in fx_node.all_input_nodes if i.name in kept))
        if fx_node.op == "placeholder":
            node = GraphNode(fx_node.name, "input", "input", None, (), shape)
        elif fx_node.op == "output":
            node = GraphNode("output", "output", "output", None, (), None, inputs)
        elif fx_node.op == "call_module":
            qualified = str(fx_node.target)
            count = calls[qualified] = calls.get(qualified, 0) + 1
            layer = qualified if count == 1 else f"{qualified}#{count}"
            kind = type(modules[qualified]).__name__
            node = GraphNode(layer, layer, kind, layer, _scope_of(fx_node, qualified), shape, inputs)
        elif fx_node.op in ("call_function", "call_method"):
            if shape is None:  # x.size(), getattr(x, "shape"): bookkeeping, not dataflow
                for i in fx_node.all_input_nodes:
                    if i.name in kept:
                        kept[fx_node.name] = kept[i.name]
                        break
                continue
            kind = getattr(fx_node.target, "__name__", str(fx_node.target)).strip("_")
            join = JOIN_KINDS.get(kind) if len(inputs) >= 2 else None
            node = GraphNode(fx_node.name, kind, kind, None, _scope_of(fx_node, None), shape, inputs, join)
        else:  # get_attr: a parameter or buffer used directly
            continue
        kept[fx_node.name] = node.id
        nodes.append(node)
    return Dataflow(nodes, "fx", _blocks(module, nodes))


def _propagate_shapes(traced, x: torch.Tensor) -> None:
    """Each node's output shape in its meta: with fake tensors (no arithmetic, a few
    times faster than a pass of resnet50), else with a real pass on zeros."""
    try:
        from torch._subclasses.fake_tensor import FakeTensorMode
        from torch.fx.passes.fake_tensor_prop import FakeTensorProp

        mode = FakeTensorMode(allow_non_fake_inputs=True)
        FakeTensorProp(traced, mode).propagate(mode.from_tensor(x))
    except Exception:  # noqa: BLE001 - an op fake tensors do not know: compute for real
        from torch.fx.passes.shape_prop import ShapeProp

        for node in traced.graph.nodes:
            node.meta.pop("val", None)
        with torch.no_grad():
            ShapeProp(traced).propagate(x)


def _blocks(module: nn.Module, nodes: Iterable[GraphNode]) -> dict:
    modules = dict(module.named_modules())
    scopes = {s for n in nodes for s in n.scope}
    return {s: type(modules[s]).__name__ for s in sorted(scopes) if s in modules}


def build_dataflow(model, input_shape: Optional[tuple] = None,
                   progress: Optional[ProgressCallback] = None,
                   cancel: Optional[CancelToken] = None) -> Dataflow:
    """The dataflow graph of ``model`` (a LoadedModel or an nn.Module) on zeros of its
    input size (``input_shape`` (1, C, H, W); default the model's own, else 224 px).
    torch.fx first, the op trace of a forward pass where fx cannot trace. Raises
    ModelError when neither can follow the network."""
    module = getattr(model, "module", model)
    if input_shape is None:
        size = tuple(getattr(model, "input_size", None) or (224, 224))
        input_shape = (1, int(getattr(model, "channels", 3)), *size)
    check(cancel)
    if progress is not None:
        progress(0, 2, "Tracing the network")
    was_training = module.training
    module.eval()
    try:
        x = torch.zeros(input_shape, device=_device(module))
        try:
            graph = _fx_dataflow(module, x)
        except Exception:  # noqa: BLE001 - fx refuses in many ways; the op trace follows a real pass
            check(cancel)
            from featurescope.core.capture.trace import trace_dataflow

            graph = trace_dataflow(module, x, name=getattr(model, "name", None))
    finally:
        module.train(was_training)
    if progress is not None:
        progress(1, 2, "Tracing the network")
    if not graph.nodes:
        raise ModelError(f"{getattr(model, 'name', type(module).__name__)} could not be traced "
                         "into a graph.")
    return graph


def _device(module: nn.Module):
    for tensor in module.parameters():
        return tensor.device
    return torch.device("cpu")


def collapse(graph: Dataflow, expanded: Iterable[str] = ()) -> Dataflow:
    """``graph`` with every block that is not in ``expanded`` (module paths) drawn as
    one node: its label is the module path, its kind the class, its shape that of its
    last node, its inputs what enters it from outside; ``members`` counts what it hides.
    A block inside a collapsed one is hidden with it."""
    expanded = set(expanded)
    stand_in: dict = {}
    blocks: dict = {}
    order: list = []
    for node in graph.nodes:
        block = next((s for s in node.scope if s not in expanded), None)
        if block is None:
            stand_in[node.id] = node.id
            order.append(replace(node, inputs=list(node.inputs)))
            continue
        stand_in[node.id] = "block:" + block
        if block not in blocks:
            blocks[block] = GraphNode("block:" + block, block, graph.blocks.get(block, "block"), block,
                                      (), node.shape, [], None, 0)
            # its scope: the expanded modules around it
            blocks[block].scope = tuple(s for s in node.scope[:node.scope.index(block)])
            order.append(blocks[block])
        blocks[block].shape = node.shape
        blocks[block].members += 1
        blocks[block].inputs.extend(node.inputs)
    for node in order:
        inputs = [stand_in.get(i, i) for i in node.inputs]
        node.inputs = [i for i in dict.fromkeys(inputs) if i != node.id]
    return Dataflow(order, graph.source, graph.blocks)


def block_of(graph: Dataflow, layer: str) -> Optional[str]:
    """The node id that shows ``layer`` in ``graph`` (a collapsed graph): the layer's own
    node, or the collapsed block holding it; None when it is not in the graph."""
    ids = {n.id for n in graph.nodes}
    for node in graph.nodes:
        if node.layer == layer:
            return node.id
    qualified = layer.partition("#")[0]
    parts = qualified.split(".")
    for depth in range(len(parts), 0, -1):
        candidate = "block:" + ".".join(parts[:depth])
        if candidate in ids:
            return candidate
    return None


def auto_expanded(graph: Dataflow, budget: int = 40) -> set:
    """The blocks to expand so the collapsed graph shows as much as fits in about
    ``budget`` nodes: outer blocks first, in network order, each only if it fits."""
    expanded: set = set()
    shown = collapse(graph, expanded)
    changed = True
    while changed:
        changed = False
        for node in shown.nodes:
            if not node.is_block:
                continue
            trial = collapse(graph, expanded | {node.label})
            if len(trial.nodes) <= budget:
                expanded.add(node.label)
                shown = trial
                changed = True
                break
    return expanded


def expand_path(graph: Dataflow, layer: str, expanded: Iterable[str]) -> set:
    """``expanded`` with every block around ``layer`` added, so its own node shows."""
    qualified = layer.partition("#")[0]
    parts = qualified.split(".")
    around = {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
    return set(expanded) | {s for s in around if s in graph.blocks and s != qualified}
