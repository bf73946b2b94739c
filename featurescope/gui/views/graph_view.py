"""The network as a graph: modules as boxes with output shapes, joins as circles.

The dataflow (core/graph/dataflow.py: torch.fx, or the op trace where fx cannot
follow the network) is traced, collapsed and laid out on the worker; this view only
turns the finished layout into scene items. A click on a module selects that layer
(switching the layer list to every module when it is not a conv or pooling layer); a
double-click on a block opens it, on a node inside an open block closes that block.
The selected layer, or the closed block that holds it, is highlighted. Wheel zooms
around the mouse, dragging pans, F or "Fit" shows the whole graph.
"""
from __future__ import annotations

import time
from typing import Any, Optional

from PySide6.QtCore import QPointF, QRectF, Qt, QTimer
from PySide6.QtGui import QBrush, QColor, QFont, QPainter, QPainterPath, QPen, QPolygonF
from PySide6.QtWidgets import (
    QGraphicsItem, QGraphicsPathItem, QGraphicsScene, QGraphicsSimpleTextItem, QGraphicsView,
    QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget,
)

from featurescope.core.graph.draw import COLOURS, HIGHLIGHT, node_style
from featurescope.core.graph.layout import node_text
from featurescope.gui.caches import dataflow as dataflow_cache
from featurescope.gui.model.state import AppState

NODE_ROLE = 0  # QGraphicsItem.data key holding a node id


def laid_out(model: Any, expanded: Optional[set], progress=None, cancel=None) -> tuple:
    """Worker: (model, expanded blocks, collapsed Dataflow, GraphLayout). ``expanded``
    None: as many blocks open as fit about 40 nodes."""
    from featurescope.core.graph.dataflow import auto_expanded, collapse
    from featurescope.core.graph.layout import layout_graph

    graph = dataflow_cache.prepare(model, progress, cancel)
    if expanded is None:
        expanded = auto_expanded(graph)
    shown = collapse(graph, expanded)
    return model, set(expanded), shown, layout_graph(shown)


class GraphCanvas(QGraphicsView):
    """The scene with wheel zoom around the mouse and drag to pan."""

    def __init__(self, view: "GraphView"):
        super().__init__()
        self.owner = view
        self.setScene(QGraphicsScene(self))
        self.setRenderHint(QPainter.Antialiasing)
        self.setDragMode(QGraphicsView.ScrollHandDrag)
        self.setTransformationAnchor(QGraphicsView.AnchorUnderMouse)
        self.setBackgroundBrush(QColor("white"))

    def wheelEvent(self, event: Any) -> None:  # noqa: N802 (Qt)
        factor = 1.2 if event.angleDelta().y() > 0 else 1 / 1.2
        self.scale(factor, factor)

    def node_at(self, pos: Any) -> Optional[str]:
        item = self.itemAt(pos)
        while item is not None and item.data(NODE_ROLE) is None:
            item = item.parentItem()
        return None if item is None else item.data(NODE_ROLE)

    def mouseReleaseEvent(self, event: Any) -> None:  # noqa: N802 (Qt)
        moved = (event.position() - getattr(self, "_pressed_at", event.position())).manhattanLength()
        super().mouseReleaseEvent(event)
        if event.button() == Qt.LeftButton and moved < 4:  # a click, not the end of a pan
            node = self.node_at(event.position().toPoint())
            if node is not None:
                self.owner.node_clicked(node)

    def mousePressEvent(self, event: Any) -> None:  # noqa: N802 (Qt)
        self._pressed_at = event.position()
        super().mousePressEvent(event)

    def mouseDoubleClickEvent(self, event: Any) -> None:  # noqa: N802 (Qt)
        node = self.node_at(event.position().toPoint())
        if node is not None:
            self.owner.node_double_clicked(node)


class GraphView(QWidget):
    """The Graph tab. Reads ``state.model`` / ``state.layer``; sets the layer on a click."""

    def __init__(self, state: AppState, jobs: Any = None, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.state = state
        self.jobs = jobs
        self.graph: Any = None  # the collapsed Dataflow shown (set once fully drawn)
        self.layout_: Any = None
        self.expanded: Optional[set] = None
        self._model: Any = None  # the model the picture is of
        self._boxes: dict = {}  # node id -> box item
        self._highlighted: Optional[str] = None
        self._generation = 0  # the layout being drawn; older slices stop

        self.title = QLabel("The network's graph appears here once a model is loaded.")
        self.title.setObjectName("graphTitle")
        self.title.setWordWrap(True)
        self.fit_button = QPushButton("Fit")
        self.fit_button.setToolTip("Show the whole graph (F)")
        self.collapse_button = QPushButton("Collapse all")
        self.collapse_button.setToolTip("Close every block (double-click a block to open it)")
        self.canvas = GraphCanvas(self)
        self.canvas.setObjectName("graphCanvas")
        bar = QHBoxLayout()
        bar.setContentsMargins(4, 2, 4, 2)
        bar.addWidget(self.title, 1)
        bar.addWidget(self.collapse_button)
        bar.addWidget(self.fit_button)
        box = QVBoxLayout(self)
        box.setContentsMargins(0, 0, 0, 0)
        box.setSpacing(0)
        box.addLayout(bar)
        box.addWidget(self.canvas, 1)

        self.fit_button.clicked.connect(self.fit)
        self.collapse_button.clicked.connect(lambda: self.request(set()))
        state.model_changed.connect(self._on_model_changed)
        state.layer_changed.connect(self._on_layer_changed)

    # -- building (worker) ------------------------------------------------------------------
    def showEvent(self, event: Any) -> None:  # noqa: N802 (Qt)
        super().showEvent(event)
        if self.state.model is not None and self._model is not self.state.model:
            # after the tab has painted: the worker's tracing then competes with nothing
            QTimer.singleShot(0, self._request_if_needed)

    def _request_if_needed(self) -> None:
        if self.isVisible() and self.state.model is not None and self._model is not self.state.model:
            self.request(None)

    def _on_model_changed(self, _model: Any) -> None:
        self.expanded = None
        if self.isVisible():
            self.request(None)

    def request(self, expanded: Optional[set]) -> None:
        """Trace (once per model), collapse and lay out on the worker; draw when done."""
        model = self.state.model
        if model is None:
            return
        self.title.setText(f"Tracing {model.name}...")

        def work(progress, cancel):
            return laid_out(model, expanded, progress, cancel)

        if self.jobs is None:
            self.show_layout(work(None, None))
            return
        self.jobs.submit("graph", work, label=f"Laying out {model.name}'s graph",
                         on_result=self.show_layout, on_error=self._failed)

    def _failed(self, message: str, _error: Any = None) -> None:
        self.title.setText(message)

    # -- drawing (GUI thread) ------------------------------------------------------------
    def show_layout(self, piece: tuple) -> None:
        """Fill the scene with a finished layout, a slice of items per event-loop turn
        (about 12 ms each): resnet50 fully open is ~600 items, which in one go would hold
        the GUI thread for over 100 ms on a slow machine. ``graph`` is set once drawn."""
        model, expanded, graph, layout = piece
        if model is not self.state.model:
            return  # stale
        first = self._model is not model
        self._model, self.expanded = model, expanded
        self._generation += 1
        generation = self._generation
        scene = self.canvas.scene()
        scene.clear()
        self._boxes, self._highlighted = {}, None
        edge_pen, arrow_brush = QPen(QColor("#777777"), 1.2), QBrush(QColor("#777777"))
        bold, small = QFont(), QFont()
        bold.setPointSizeF(8.5)
        bold.setBold(True)
        small.setPointSizeF(7.5)
        nodes = {n.id: n for n in graph.nodes}

        def edge(points):
            path = QPainterPath(QPointF(*points[0]))
            for point in points[1:]:
                path.lineTo(QPointF(*point))
            scene.addPath(path, edge_pen)
            x1, y1 = points[-1]
            arrow = QPolygonF([QPointF(x1, y1), QPointF(x1 - 3.5, y1 - 6), QPointF(x1 + 3.5, y1 - 6)])
            scene.addPolygon(arrow, QPen(Qt.NoPen), arrow_brush)

        def node(node_id, box):
            self._boxes[node_id] = self._node_item(scene, nodes[node_id], box, bold, small)

        todo = [lambda p=points: edge(p) for _s, _d, points in layout.edges]
        todo += [lambda i=node_id, b=box: node(i, b) for node_id, box in layout.boxes.items()]
        todo.reverse()  # popped from the end

        def finish():
            self.graph, self.layout_ = graph, layout
            scene.setSceneRect(QRectF(0, 0, layout.width, layout.height))
            source = "torch.fx" if getattr(dataflow_cache.graph_for(model), "source", "fx") == "fx" \
                else "the op trace"
            self.title.setText(f"{model.name}: {len(graph.nodes)} nodes (traced with {source}); "
                               "click selects a layer, double-click opens or closes a block")
            if first:
                self.readable()
            self._on_layer_changed(self.state.layer)

        def step():
            if generation != self._generation:
                return  # a newer layout took over the scene
            deadline = time.perf_counter() + 0.012
            while todo and time.perf_counter() < deadline:
                todo.pop()()
            if todo:
                QTimer.singleShot(0, step)
            else:
                finish()

        step()

    def _node_item(self, scene: QGraphicsScene, node: Any, box: Any, bold: QFont, small: QFont):
        fill, border = COLOURS[node_style(node)]
        path = QPainterPath()
        if node.join:
            path.addEllipse(QRectF(box.x, box.y, box.w, box.h))
        else:
            path.addRoundedRect(QRectF(box.x, box.y, box.w, box.h), 5, 5)
        item = QGraphicsPathItem(path)
        item.setBrush(QBrush(QColor(fill)))
        pen = QPen(QColor(border), 1.5)
        if node.is_block:
            pen.setStyle(Qt.DashLine)
        item.setPen(pen)
        item.setData(NODE_ROLE, node.id)
        item.setData(NODE_ROLE + 1, (fill, border))
        tip = f"{node.label}\n{node.kind}" + (f", output {'x'.join(map(str, node.shape))}" if node.shape else "")
        item.setToolTip(tip + ("\ndouble-click to open this block" if node.is_block else ""))
        scene.addItem(item)
        title, subtitle = node_text(node)
        lines = [(title, bold, box.y + (box.h / 2 if node.join else 12))]
        if subtitle:
            lines.append((subtitle, small, box.y + 27))
        for text, font, centre_y in lines:
            label = QGraphicsSimpleTextItem(text, item)
            label.setFont(font)
            rect = label.boundingRect()
            label.setPos(box.x + (box.w - rect.width()) / 2, centre_y - rect.height() / 2)
            label.setFlag(QGraphicsItem.ItemStacksBehindParent, False)
        return item

    def readable(self) -> None:
        """Text at its own size (smaller only when the graph is wider than the view),
        the top of the graph in view: a tall graph fitted whole is unreadable."""
        rect = self.canvas.scene().sceneRect()
        if rect.isEmpty():
            return
        self.canvas.resetTransform()
        scale = min(1.0, max(0.3, (self.canvas.viewport().width() - 20) / rect.width()))
        self.canvas.scale(scale, scale)
        self.canvas.ensureVisible(QRectF(rect.x(), rect.y(), rect.width(), 10), 10, 10)

    def fit(self) -> None:
        rect = self.canvas.scene().sceneRect()
        if not rect.isEmpty():
            self.canvas.fitInView(rect, Qt.KeepAspectRatio)

    def keyPressEvent(self, event: Any) -> None:  # noqa: N802 (Qt)
        if event.key() == Qt.Key_F:
            self.fit()
            return
        super().keyPressEvent(event)

    # -- selection ---------------------------------------------------------------------------
    def _on_layer_changed(self, layer: str) -> None:
        from featurescope.core.graph.dataflow import block_of

        if self.graph is None:
            return
        target = block_of(self.graph, layer) if layer else None
        if self._highlighted in self._boxes:
            fill, border = self._boxes[self._highlighted].data(NODE_ROLE + 1)
            self._paint(self._boxes[self._highlighted], fill, border, 1.5)
        self._highlighted = target
        if target in self._boxes:
            self._paint(self._boxes[target], *HIGHLIGHT, 3.0)
            self.canvas.ensureVisible(self._boxes[target], 40, 40)

    @staticmethod
    def _paint(item: Any, fill: str, border: str, width: float) -> None:
        item.setBrush(QBrush(QColor(fill)))
        pen = item.pen()
        pen.setColor(QColor(border))
        pen.setWidthF(width)
        item.setPen(pen)

    def node_clicked(self, node_id: str) -> None:
        """Select the layer a node stands for (every module shown when it is no conv/pool)."""
        node = next((n for n in self.graph.nodes if n.id == node_id), None) if self.graph else None
        if node is None or not node.layer:
            return
        result = self.state.result
        if result is not None and node.layer not in result.layers and not self.state.every_module:
            self.state.set_every_module(True)  # the capture comes back with every module
        self.state.set_layer(node.layer)

    def node_double_clicked(self, node_id: str) -> None:
        """Open a closed block; on a node inside an open block, close that block."""
        if self.graph is None or self.expanded is None:
            return
        node = next((n for n in self.graph.nodes if n.id == node_id), None)
        if node is None:
            return
        if node.is_block:
            self.request(self.expanded | {node.label})
        elif node.scope:
            inner = node.scope[-1]
            self.request({s for s in self.expanded if s != inner and not s.startswith(inner + ".")})
