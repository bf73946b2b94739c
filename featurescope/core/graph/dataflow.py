"""The network as a dataflow graph: module calls and the joins between them.

:func:`~featurescope.core.graph.tracing.build_dataflow` traces a network with torch.fx (every module without children is
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

from dataclasses import dataclass, field, replace
from typing import Iterable, Optional


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


def _blocks(module, nodes: Iterable[GraphNode]) -> dict:
    modules = dict(module.named_modules())
    scopes = {s for n in nodes for s in n.scope}
    return {s: type(modules[s]).__name__ for s in sorted(scopes) if s in modules}


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
