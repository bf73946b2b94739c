"""The atlas section of the Visualise tab: every channel of the selected layer at small
settings in one scrolling mosaic, built in the background lane a batch at a time
("optvis_atlas" units) and filled in as batches arrive; a click on a tile selects that
channel. A mixin of :class:`~featurescope.gui.views.visualize_view.VisualizeView`,
which builds the widgets (``atlas_item``, ``atlas_box``, ``atlas_view``,
``atlas_marker``, ``atlas_label``, ``atlas_cancel_button``, ``follow_box``)."""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QGraphicsRectItem, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from featurescope.gui.widgets.box_scroll_bar import BoxScrollBar
from featurescope.gui.widgets.image_box import image_box

TILE_GAP = 2
ATLAS_BATCH = 8


class AtlasSection:
    """Building, requesting, filling, labelling and clicking the layer's atlas."""

    def _build_atlas_page(self) -> QWidget:
        """The atlas's page of the lower tabs: what it says, its buttons (made by the
        view), and the mosaic, shown at tile size and scrolling."""
        atlas_page = QWidget(self)
        self.atlas_label = QLabel(self)
        self.atlas_label.setWordWrap(True)
        self.atlas_view = pg.GraphicsLayoutWidget(self)
        self.atlas_view.setBackground(None)
        self.atlas_box, self.atlas_item = image_box()
        self.atlas_view.addItem(self.atlas_box)
        self.atlas_marker = QGraphicsRectItem()
        self.atlas_marker.setPen(pg.mkPen((255, 80, 80), width=2, cosmetic=True))
        self.atlas_marker.setVisible(False)
        self.atlas_box.addItem(self.atlas_marker)
        self.atlas_box.scene().sigMouseClicked.connect(self._atlas_clicked)

        atlas_layout = QVBoxLayout(atlas_page)
        atlas_layout.setContentsMargins(0, 0, 0, 0)
        atlas_top = QHBoxLayout()  # the atlas's own buttons, beside what it says
        atlas_top.addWidget(self.atlas_label, 1)
        atlas_top.addWidget(self.atlas_button)
        atlas_top.addWidget(self.atlas_cancel_button)
        atlas_layout.addLayout(atlas_top)
        # a wide layer's atlas is shown at tile size and scrolls (480 tiles fitted were 7 px)
        self.atlas_scroll = BoxScrollBar(self.atlas_box, self.atlas_item, atlas_page)
        atlas_row = QHBoxLayout()
        atlas_row.setSpacing(0)
        atlas_row.addWidget(self.atlas_view, 1)
        atlas_row.addWidget(self.atlas_scroll)
        atlas_layout.addLayout(atlas_row, 1)
        return atlas_page

    def _request_atlas(self, model, layer: str, count: int) -> None:
        key = (id(model), layer, self.atlas_steps, self.atlas_size)
        if key == self.atlas_key or self.jobs is None or count < 1:
            return
        self.atlas_key, self.atlas_channels, self.atlas_done = key, count, set()
        columns = self._atlas_columns = self._readable_columns(count)
        rows = math.ceil(count / columns)
        step = self.atlas_size + TILE_GAP
        self._atlas_array = np.full((rows * step, columns * step, 3), 40, np.uint8)
        self.atlas_item.setImage(self._atlas_array, autoLevels=False, levels=(0, 255))
        self._show_atlas_top()
        self._atlas_text()
        cache, steps, size = self.cache, self.atlas_steps, self.atlas_size
        from featurescope.core.optvis.hierarchy import natural_objective  # torch: lazily

        objective = natural_objective(model, layer)  # the first conv: its centre neuron

        def unit(batch):
            def run(progress, cancel):
                made = cache.visualize(model, layer, batch, steps=steps, size=size, objective=objective,
                                       cancel=cancel)
                return key, made.channels, made.images
            return run

        batches = [list(range(i, min(count, i + ATLAS_BATCH))) for i in range(0, count, ATLAS_BATCH)]
        self.atlas_cancel_button.setEnabled(True)
        self.jobs.submit_units("optvis_atlas", [unit(b) for b in batches], label=f"Atlas of {layer}",
                               on_partial=self._atlas_piece, on_error=self._atlas_failed,
                               on_result=lambda _none: self._atlas_ended(key),
                               on_cancelled=lambda: self._atlas_ended(key, cancelled=True))

    def _atlas_ended(self, key: tuple, cancelled: bool = False) -> None:
        if key != self.atlas_key:
            return
        self.atlas_cancel_button.setEnabled(False)
        if cancelled:
            self.atlas_key = self.atlas_asked = None  # Build atlas starts it again (cached tiles come at once)
            self.follow_box.setChecked(False)
            self.atlas_label.setText(f"Atlas of {key[1]}: cancelled at {len(self.atlas_done)} of "
                                     f"{self.atlas_channels} channels; Build atlas goes on.")

    def cancel_atlas(self) -> None:
        """Stop building the atlas; nothing builds again until Build atlas is pressed."""
        self.follow_box.setChecked(False)
        self.atlas_asked = None
        if self.jobs is not None:
            self.jobs.cancel("optvis_atlas")

    def _show_atlas_for(self, layer: str) -> None:
        """The atlas shown is the selected layer's; another layer's stays aside (building
        on in the background when it was asked for) and comes back with its layer."""
        mine = self.atlas_key is not None and self.atlas_key[1] == layer and self._atlas_array is not None
        self.atlas_item.setVisible(mine)
        if mine:
            if self.atlas_key is not None:
                self._atlas_text()
            return
        self.atlas_marker.setVisible(False)
        elsewhere = ""
        if self.atlas_key is not None and self.atlas_cancel_button.isEnabled():
            elsewhere = (f" (the atlas of {self.atlas_key[1]} is still being built: "
                         f"{len(self.atlas_done)} of {self.atlas_channels}; see Jobs)")
        self.atlas_label.setText(f"Build atlas: every channel of {layer}, computed in the background{elsewhere}.")

    def _atlas_piece(self, piece) -> None:
        key, channels, images = piece
        if key != self.atlas_key or self._atlas_array is None:
            return
        step = self.atlas_size + TILE_GAP
        for channel, image in zip(channels, images):
            row, column = divmod(channel, self._atlas_columns)
            self._atlas_array[row * step: row * step + self.atlas_size,
                              column * step: column * step + self.atlas_size] = image
            self.atlas_done.add(channel)
        self.atlas_item.setImage(self._atlas_array, autoLevels=False, levels=(0, 255))
        self._show_atlas_top()
        self._atlas_text()

    def _atlas_failed(self, message: str, _error: Any = None) -> None:
        self.atlas_cancel_button.setEnabled(False)
        self.atlas_label.setText(f"Atlas: {self._explain(message)}")

    def _atlas_text(self) -> None:
        done, total = len(self.atlas_done), self.atlas_channels
        state = "" if done == total else " (computing in the background)"
        first = " (first layer: each channel's centre neuron, the edge or colour it detects)" \
            if self.atlas_key is not None and self.state.model is not None and \
            self.state.model.layers[:1] == [self.state.layer] else ""
        layer = self.atlas_key[1] if self.atlas_key is not None else self.state.layer
        if layer != self.state.layer:
            self._show_atlas_for(self.state.layer)
            return
        self.atlas_label.setText(f"Atlas of {layer}{first}: {done} of {total} channels{state}; "
                                 f"click one to look at it")

    def _readable_columns(self, count: int) -> int:
        """As many tiles a row as fit the atlas view at their own size (one tile a screen
        pixel a picture pixel); the rows beyond the view's height scroll."""
        step = self.atlas_size + TILE_GAP
        width = self.atlas_view.width() if self.atlas_view.isVisible() else 0
        if width < step:  # not laid out yet: a mosaic a little wider than tall
            return max(1, math.ceil(math.sqrt(count * 1.6)))
        return max(1, min(count, int((width - 8) // step)))

    def _show_atlas_top(self) -> None:
        """The first rows of the atlas across the whole width of the view."""
        height, width = self._atlas_array.shape[:2]
        view = self.atlas_box.boundingRect()
        shown = width * view.height() / max(1.0, view.width())
        self.atlas_box.setRange(xRange=(0, width), yRange=(0, min(height, shown)), padding=0)

    def atlas_channel_at(self, x: float, y: float) -> int:
        """The channel of the atlas tile at item coordinates (x, y), or -1."""
        step = self.atlas_size + TILE_GAP
        column, row = int(x // step), int(y // step)
        if x < 0 or y < 0 or column >= self._atlas_columns:
            return -1
        channel = row * self._atlas_columns + column
        return channel if channel < self.atlas_channels else -1

    def _atlas_clicked(self, event) -> None:
        if self._atlas_array is None or not self.atlas_item.isVisible():
            return
        point = self.atlas_item.mapFromScene(event.scenePos())
        channel = self.atlas_channel_at(point.x(), point.y())
        if channel >= 0:
            self.state.set_channel(channel)

    def _place_marker(self, channel: int) -> None:
        if self._atlas_array is None or channel >= self.atlas_channels or not self.atlas_item.isVisible():
            self.atlas_marker.setVisible(False)
            return
        step = self.atlas_size + TILE_GAP
        row, column = divmod(channel, self._atlas_columns)
        self.atlas_marker.setRect(column * step - 1, row * step - 1, self.atlas_size + 2, self.atlas_size + 2)
        self.atlas_marker.setVisible(True)
        top, bottom = self.atlas_box.viewRange()[1]
        if not (top <= row * step and (row + 1) * step <= bottom):  # scroll the tile into view
            start = max(0, row * step - (bottom - top) / 3)
            self.atlas_box.setYRange(start, start + (bottom - top), padding=0)
