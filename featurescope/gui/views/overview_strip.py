"""The whole network at a glance: a strip above the tabs with one tile per captured
layer, in network order, each the channel most active for this photo, drawn at a size
proportional to the layer's spatial size (so the shrinking shows), the spatial size
written under the tile where it changes. Click a tile to select its layer; hover for
its name, shape and channel. Right-click to show the mean or the maximum over channels
instead of the most active channel.

Tiles are computed on the worker's background lane (core/analysis/overview.py).
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np
from PySide6.QtCore import QRectF, QSize, Qt
from PySide6.QtGui import QAction, QActionGroup, QColor, QFont, QImage, QPainter, QPen
from PySide6.QtWidgets import QScrollArea, QToolTip, QWidget

from featurescope.gui.controllers.throttle import Throttle

LARGEST, SMALLEST, GAP, LABEL = 64, 12, 3, 14
LIVE_INTERVAL = 0.5  # seconds between two computations of the tiles


def size_labels(boxes, tiles, text_width) -> list[tuple[float, str]]:
    """(x, "HxW") under the first tile of each map size, each where it fits: a label
    waits for the next tile of its size when the one before it still runs there (ResNet's
    conv1 is the only tile at 112, so "56x56" starts under a later tile)."""
    labels, previous_size, pending, free_from = [], None, "", float("-inf")
    for (x, _side), tile in zip(boxes, tiles):
        if tile.shape[1] != previous_size:
            pending, previous_size = f"{tile.shape[1]}x{tile.shape[2]}", tile.shape[1]
        if pending and x >= free_from:
            labels.append((x, pending))
            free_from = x + text_width(pending) + 2 * GAP
            pending = ""
    return labels


class _Tiles(QWidget):
    def __init__(self, strip: "OverviewStrip") -> None:
        super().__init__(strip)
        self.strip = strip
        self.setMouseTracking(True)
        small = QFont(self.font())  # the size labels; the strip measures its width with it
        small.setPointSizeF(max(7.0, self.font().pointSizeF() * 0.8))
        self.setFont(small)

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt)
        return QSize(self.strip.content_width(), LARGEST + LABEL + 6)

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt)
        painter = QPainter(self)
        text = self.palette().windowText().color()
        for (x, side), tile, image in zip(self.strip.boxes, self.strip.tiles, self.strip.images):
            top = 2 + LARGEST - side
            painter.drawImage(QRectF(x, top, side, side), image)
            if tile.layer == self.strip.state.layer:
                painter.setPen(QPen(QColor(255, 140, 0), 3))
                painter.drawRect(QRectF(x - 1, top - 1, side + 2, side + 2))
        painter.setPen(text)
        metrics = painter.fontMetrics()
        for x, label in size_labels(self.strip.boxes, self.strip.tiles, metrics.horizontalAdvance):
            painter.drawText(QRectF(x, 4 + LARGEST, metrics.horizontalAdvance(label) + 2, LABEL),
                             Qt.AlignmentFlag.AlignLeft, label)
        painter.end()

    def mousePressEvent(self, event) -> None:  # noqa: N802 (Qt)
        index = self.strip.index_at(event.position().x())
        if index is not None:
            self.strip.state.set_layer(self.strip.tiles[index].layer)

    def mouseMoveEvent(self, event) -> None:  # noqa: N802 (Qt)
        index = self.strip.index_at(event.position().x())
        if index is None:
            QToolTip.hideText()
            return
        tile = self.strip.tiles[index]
        c, h, w = tile.shape
        shown = (f"its most active channel {tile.channel}" if tile.channel >= 0
                 else f"the {self.strip.reduction} over its channels")
        QToolTip.showText(event.globalPosition().toPoint(),
                          f"{tile.layer} ({tile.kind}): {c} x {h} x {w}, showing {shown}. "
                          "Click to select; right-click to choose what each tile shows.", self)


class OverviewStrip(QScrollArea):
    """One tile per layer of ``state.result``; clicking selects the layer."""

    def __init__(self, state, jobs=None, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setObjectName("overviewStrip")
        self.state = state
        self.jobs = jobs
        self.tiles: list = []
        self.images: list[QImage] = []
        self.boxes: list[tuple[int, int]] = []  # (x, side) per tile
        self._for: Any = None
        self.reduction = "most_active"
        self.canvas = _Tiles(self)
        self.canvas.setContextMenuPolicy(Qt.ContextMenuPolicy.ActionsContextMenu)
        group = QActionGroup(self)
        for reduction, text in (("most_active", "Most active channel"), ("mean", "Mean over channels"),
                                ("max", "Maximum over channels")):
            action = QAction(text, self.canvas, checkable=True)
            action.setChecked(reduction == self.reduction)
            action.triggered.connect(lambda _checked=False, r=reduction: self.set_reduction(r))
            group.addAction(action)
            self.canvas.addAction(action)
        self.setWidget(self.canvas)
        self.setWidgetResizable(False)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setFixedHeight(LARGEST + LABEL + 6 + self.horizontalScrollBar().sizeHint().height() + 4)
        self.setToolTip("The whole network at a glance: each layer's most active channel, drawn "
                        "at its spatial size; click one to select it")
        # a new model's tiles take a capture to come: the old model's go at once
        state.model_changed.connect(lambda *_: self.show_tiles(None, [], []))
        # a live video brings a capture per frame: tiles at most twice a second
        self.throttle = Throttle(self.request, LIVE_INTERVAL, self)
        state.result_changed.connect(self.throttle)
        state.display_changed.connect(self.request)
        state.layer_changed.connect(lambda *_: self.canvas.update())

    def content_width(self) -> int:
        if not self.boxes:
            return 10
        width = self.boxes[-1][0] + self.boxes[-1][1] + GAP
        metrics = self.canvas.fontMetrics()
        labels = size_labels(self.boxes, self.tiles, metrics.horizontalAdvance)
        if labels:  # the last label ("1x1" under a 12 px pooling tile) may be the widest
            x, text = labels[-1]
            width = max(width, x + metrics.horizontalAdvance(text) + GAP)
        return int(width)

    def index_at(self, x: float) -> Optional[int]:
        for index, (left, side) in enumerate(self.boxes):
            if left - GAP / 2 <= x < left + side + GAP / 2:
                return index
        return None

    def set_reduction(self, reduction: str) -> None:
        """What each tile shows: "most_active", "mean" or "max" (over channels)."""
        self.reduction = reduction
        self.request()

    def request(self, *_: Any) -> None:
        """Compute the tiles of the current result (background lane)."""
        from featurescope.core.analysis.overview import overview_tiles, tile_picture, tile_side

        result = self.state.result
        colormap, reduction = self.state.display.colormap, self.reduction
        if result is None:
            self.show_tiles(None, [], [])
            return
        listed = self.state.listed_layers()  # the layer list's layers, not every one captured

        def work(progress=None, cancel=None):
            tiles = overview_tiles(result, reduction, layers=listed)
            height = int(result.input.shape[-2])
            pictures = [tile_picture(t.map, tile_side(t.shape[1], height, LARGEST, SMALLEST), colormap)
                        for t in tiles]
            return tiles, pictures

        def done(answer) -> None:
            if self.state.result is result:
                self.show_tiles(result, *answer)

        if self.jobs is None:
            done(work())
            return
        self.jobs.submit("overview", work, label="overview", on_result=done,
                         on_error=lambda *_: None, lane="background")

    def show_tiles(self, result, tiles: list, pictures: list) -> None:
        self._for = result
        self.tiles = tiles
        self.images, self.boxes = [], []
        x = GAP
        for picture in pictures:
            rgb = np.ascontiguousarray(picture)
            image = QImage(rgb.data, rgb.shape[1], rgb.shape[0], rgb.strides[0],
                           QImage.Format.Format_RGB888).copy()
            self.images.append(image)
            self.boxes.append((x, rgb.shape[0]))
            x += rgb.shape[0] + GAP
        self.canvas.resize(self.canvas.sizeHint())
        self.canvas.update()
