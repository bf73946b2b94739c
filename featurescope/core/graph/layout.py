"""A layered (Sugiyama-style) layout of a dataflow graph, top to bottom, without Qt.

Written here rather than taken from graphviz: the ``dot`` binary is not on the users'
machines (and no pip wheel ships it), and a CNN's graph is nearly a chain with side
branches (shortcuts, squeeze-excitation), which the four classic steps lay out well:

1. rank = longest path from the input, so data flows downwards;
2. an edge that spans several ranks gets a dummy point per rank it crosses;
3. order within a rank by the barycentre of the neighbours (a few sweeps down and up);
4. x = the mean of the neighbours' centres, overlaps pushed apart in rank order.

Sizes come from :func:`node_size` (an estimate from the text, the same for the SVG,
the PNG and the app, which draws its own text inside the boxes).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from featurescope.core.graph.dataflow import Dataflow, GraphNode

NODE_HEIGHT = 38
JOIN_SIZE = 26
RANK_GAP = 26
NODE_GAP = 18
CHAR_WIDTH = 6.6  # an average glyph of the 11 px sans-serif the pictures use


@dataclass
class Box:
    """Where a node is drawn: top-left ``x``, ``y`` and size ``w``, ``h`` in pixels."""

    id: str
    x: float
    y: float
    w: float
    h: float

    @property
    def center(self) -> tuple[float, float]:
        return (self.x + self.w / 2, self.y + self.h / 2)


@dataclass
class GraphLayout:
    """``boxes`` {node id: Box}; ``edges`` [(source id, target id, [(x, y), ...])] from
    the bottom of the source to the top of the target; ``width`` x ``height`` in pixels."""

    boxes: dict
    edges: list
    width: float
    height: float


def shape_text(shape: Optional[tuple]) -> str:
    return "x".join(str(s) for s in shape) if shape else ""


def node_text(node: GraphNode) -> tuple[str, str]:
    """(title, subtitle) written on ``node``: its name, then its kind and output shape."""
    if node.join:
        return node.join, ""
    if node.kind in ("input", "output"):
        return node.label, shape_text(node.shape)
    kind = node.kind + (f" ({node.members})" if node.is_block else "")
    return node.label, f"{kind}  {shape_text(node.shape)}".strip()


def node_size(node: GraphNode) -> tuple[float, float]:
    if node.join:
        return (JOIN_SIZE, JOIN_SIZE)
    title, subtitle = node_text(node)
    return (max(90.0, CHAR_WIDTH * max(len(title), len(subtitle)) + 18), float(NODE_HEIGHT))


def layout_graph(graph: Dataflow, size: Callable[[GraphNode], tuple] = node_size,
                 sweeps: int = 4) -> GraphLayout:
    """Place ``graph``'s nodes (see the module docstring); pure Python, no Qt."""
    nodes = graph.nodes
    ids = {n.id for n in nodes}
    preds = {n.id: [i for i in n.inputs if i in ids] for n in nodes}
    rank: dict = {}
    for node in nodes:  # topological order
        rank[node.id] = max((rank[i] + 1 for i in preds[node.id] if i in rank), default=0)
    # dummy points on long edges; chains[(src, dst)] = the ids along the edge
    up: dict = {n.id: [] for n in nodes}  # id -> neighbours one rank up
    down: dict = {n.id: [] for n in nodes}
    chains: dict = {}
    dummy = 0
    for node in nodes:
        for src in preds[node.id]:
            chain = [src]
            for r in range(rank[src] + 1, rank[node.id]):
                dummy += 1
                point = f"\0{dummy}"
                rank[point] = r
                up[point], down[point] = [], []
                chain.append(point)
            chain.append(node.id)
            for a, b in zip(chain, chain[1:]):
                down[a].append(b)
                up[b].append(a)
            chains[(src, node.id)] = chain
    sizes = {n.id: size(n) for n in nodes}
    widths = {key: sizes[key][0] if key in sizes else 2.0 for key in rank}
    ranks: list = [[] for _ in range(max(rank.values(), default=-1) + 1)]
    for key in rank:  # nodes in topological order, then dummies in creation order
        ranks[rank[key]].append(key)

    _order(ranks, up, down, sweeps)
    x = _coordinates(ranks, up, down, widths, sweeps)

    heights = [max((sizes[k][1] if k in sizes else 0 for k in row), default=0) for row in ranks]
    tops, y = [], 12.0
    for h in heights:
        tops.append(y)
        y += h + RANK_GAP
    left = min((x[k] - widths[k] / 2 for k in x), default=0.0) - 12
    boxes = {}
    for node in nodes:
        w, h = sizes[node.id]
        r = rank[node.id]
        boxes[node.id] = Box(node.id, x[node.id] - w / 2 - left, tops[r] + (heights[r] - h) / 2, w, h)
    edges = []
    for (src, dst), chain in chains.items():
        a, b = boxes[src], boxes[dst]
        points = [(a.x + a.w / 2, a.y + a.h)]
        for key in chain[1:-1]:
            r = rank[key]
            points.append((x[key] - left, tops[r] + heights[r] / 2))
        points.append((b.x + b.w / 2, b.y))
        edges.append((src, dst, points))
    width = max((b.x + b.w for b in boxes.values()), default=0) + 12
    return GraphLayout(boxes, edges, width, y)


def _order(ranks: list, up: dict, down: dict, sweeps: int) -> None:
    for _ in range(sweeps):
        for rows, neighbours in ((range(1, len(ranks)), up), (range(len(ranks) - 2, -1, -1), down)):
            for r in rows:
                other = ranks[r - 1] if neighbours is up else ranks[r + 1]
                position = {k: i for i, k in enumerate(other)}
                current = {k: i for i, k in enumerate(ranks[r])}

                def barycentre(key):
                    near = [position[n] for n in neighbours[key] if n in position]
                    return sum(near) / len(near) if near else current[key]

                ranks[r].sort(key=lambda k: (barycentre(k), current[k]))


def _coordinates(ranks: list, up: dict, down: dict, widths: dict, sweeps: int) -> dict:
    x: dict = {}
    for row in ranks:
        at = 0.0
        for key in row:
            x[key] = at + widths[key] / 2
            at += widths[key] + NODE_GAP
    for _ in range(sweeps):
        for rows, neighbours in ((range(len(ranks)), up), (range(len(ranks) - 1, -1, -1), down)):
            for r in rows:
                row = ranks[r]
                wanted = []
                for key in row:
                    near = [x[n] for n in neighbours[key]]
                    wanted.append(sum(near) / len(near) if near else x[key])
                placed = []
                for i, key in enumerate(row):
                    value = wanted[i]
                    if placed:
                        prev = row[i - 1]
                        value = max(value, placed[-1] + widths[prev] / 2 + NODE_GAP + widths[key] / 2)
                    placed.append(value)
                # the pushes only move nodes right: move the row back by the mean push
                shift = sum(w - p for w, p in zip(wanted, placed)) / len(row) if row else 0.0
                for key, value in zip(row, placed):
                    x[key] = value + shift
    return x
