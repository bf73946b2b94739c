"""The "Switch off" tab: zero some channels of the selected layer (ablation) and see the
predictions before and after side by side, and what it does to a later layer's maps.

Channels are listed strongest first (mean activation for this photo); tick some, or
take the strongest few, and press *Switch off*. The work (one forward pass with a
:class:`~featurescope.core.capture.sinks.ZeroChannels` sink) runs on the worker through
:func:`featurescope.core.analysis.ablate.ablate`.
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QComboBox, QHBoxLayout, QHeaderView, QLabel, QListWidget,
                               QListWidgetItem, QPushButton, QSpinBox, QTableWidget, QTableWidgetItem,
                               QVBoxLayout, QWidget)

from featurescope.gui.jobs.workers import submit_or_run
from featurescope.gui.widgets.image_box import image_box
from featurescope.gui.widgets.equal_columns import EqualColumns
from featurescope.gui.widgets.tab_page import TabPage



def shared_grid(chw: np.ndarray, lo: float, hi: float, colormap: str) -> np.ndarray:
    """A (C, H, W) activation as an RGB mosaic with ``lo``..``hi`` as its colour range."""
    from featurescope.core.render.grids import apply_lut, colormap_lut, grid_layout, tile_mosaic

    channels, height, width = chw.shape
    layout = grid_layout(channels, height, width)
    span = hi - lo if hi > lo else 1.0
    indices = np.clip(np.round((chw - lo) / span * 254) + 1, 1, 255).astype(np.uint8)
    return apply_lut(tile_mosaic(indices, layout), colormap_lut(colormap))


MOST_CHANGED = 16



TABLE_ROWS = 6  # rows of the before/after table shown without scrolling


def points_text(change: float) -> str:
    """A change of probability in percentage points: "+1.2 pts", "0.0 pts" (never "-0.0")."""
    points = round(change * 100, 1)
    return "0.0 pts" if points == 0 else f"{points:+.1f} pts"

class AblationView(TabPage):
    """Pick channels of the selected layer, switch them off, compare."""

    def __init__(self, state, jobs=None, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.state = state
        self.jobs = jobs
        self.ablation: Any = None
        self._listed: tuple = ()

        self.header = QLabel(self)
        self.header.setWordWrap(True)
        font = self.header.font()
        font.setBold(True)
        self.header.setFont(font)
        self.channel_list = QListWidget(self)
        self.channel_list.setToolTip("Tick the channels to switch off (strongest for this photo first)")
        self.channel_list.setMinimumWidth(190)
        self.channel_list.setMaximumWidth(240)
        self.strongest_spin = QSpinBox(self)
        self.strongest_spin.setRange(1, 4096)
        self.strongest_spin.setValue(10)
        self.strongest_button = QPushButton("Tick strongest", self)
        self.strongest_button.setToolTip("Tick the N channels most active for this photo")
        self.strongest_button.clicked.connect(self.tick_strongest)
        self.clear_button = QPushButton("Clear", self)
        self.clear_button.clicked.connect(lambda: self.set_checked([]))
        self.run_button = QPushButton("Switch off", self)
        self.run_button.setToolTip("Run the photo again with the ticked channels set to zero")
        self.run_button.clicked.connect(self.run_ablation)
        picks = QHBoxLayout()
        picks.addWidget(self.strongest_spin)
        picks.addWidget(self.strongest_button)
        left = QVBoxLayout()
        left.addWidget(QLabel("Channels (mean activation)", self))
        left.addWidget(self.channel_list, 1)
        left.addLayout(picks)
        buttons = QHBoxLayout()
        buttons.addWidget(self.clear_button)
        buttons.addWidget(self.run_button)
        left.addLayout(buttons)

        self.table = QTableWidget(0, 4, self)
        self.table.setHorizontalHeaderLabels(["class", "before", "after", "change"])
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setMinimumHeight(150)
        self.table.setSizeAdjustPolicy(QTableWidget.SizeAdjustPolicy.AdjustToContents)
        self.summary = QLabel(self)
        self.summary.setWordWrap(True)

        self.later_combo = QComboBox(self)
        self.later_combo.setToolTip("A later layer: its maps with and without the channels")
        self.later_combo.currentTextChanged.connect(lambda *_: self._show_maps())
        self.plots = pg.GraphicsLayoutWidget(self)
        self.plots.setBackground(None)
        self.before_box, self.before_item = image_box()
        self.after_box, self.after_item = image_box()
        self.diff_box, self.diff_item = image_box()
        self.before_title = self.plots.addLabel("before", row=0, col=0)
        self.after_title = self.plots.addLabel("after", row=0, col=1)
        self.diff_title = self.plots.addLabel("|after - before|", row=0, col=2)
        for col, box in enumerate((self.before_box, self.after_box, self.diff_box)):
            self.plots.addItem(box, row=1, col=col)
        self.equal_columns = EqualColumns(self.plots, (0, 1, 2))
        self.maps_note = QLabel(self)
        self.maps_note.setWordWrap(True)
        later = QHBoxLayout()
        later.addWidget(QLabel("effect on layer", self))
        later.addWidget(self.later_combo, 1)

        right = QVBoxLayout()
        right.addWidget(self.table)
        right.addWidget(self.summary)
        right.addLayout(later)
        right.addWidget(self.plots, 1)
        right.addWidget(self.maps_note)
        body = QHBoxLayout()
        body.addLayout(left)
        body.addLayout(right, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(self.header)
        layout.addLayout(body, 1)

        for signal in (state.result_changed, state.layer_changed, state.model_changed):
            signal.connect(self._forget)
        self.refresh()

    # -- channels -----------------------------------------------------------------------
    def _forget(self, *_: Any) -> None:
        self.ablation = None
        self.refresh()

    def redraw(self) -> None:
        result, layer = self.state.result, self.state.layer
        if result is None or not layer or layer not in result:
            self.header.setText("Load a model and an image, then pick a layer.")
            self.channel_list.clear()
            self._listed = ()
            self.run_button.setEnabled(False)
            return
        self.run_button.setEnabled(True)
        key = (id(result), layer)
        if self._listed != key:
            self._listed = key
            means = result[layer].flatten(1).mean(dim=1).numpy()
            self.channel_list.clear()
            for channel in np.argsort(-means, kind="stable"):
                item = QListWidgetItem(f"{int(channel):>4}   {means[channel]:.3g}")
                item.setData(Qt.ItemDataRole.UserRole, int(channel))
                item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
                item.setCheckState(Qt.CheckState.Unchecked)
                self.channel_list.addItem(item)
            self.later_combo.blockSignals(True)
            self.later_combo.clear()
            index = result.layers.index(layer)
            self.later_combo.addItems(result.layers[index:])
            self.later_combo.setCurrentIndex(min(1, self.later_combo.count() - 1))
            self.later_combo.blockSignals(False)
        self.header.setText(f"Switch channels of {layer} off: which units does the decision depend on?")
        self._show_table()
        self._show_maps()

    def checked(self) -> list[int]:
        """The ticked channel numbers, ascending."""
        out = []
        for row in range(self.channel_list.count()):
            item = self.channel_list.item(row)
            if item.checkState() == Qt.CheckState.Checked:
                out.append(int(item.data(Qt.ItemDataRole.UserRole)))
        return sorted(out)

    def set_checked(self, channels) -> None:
        wanted = {int(c) for c in channels}
        for row in range(self.channel_list.count()):
            item = self.channel_list.item(row)
            on = int(item.data(Qt.ItemDataRole.UserRole)) in wanted
            item.setCheckState(Qt.CheckState.Checked if on else Qt.CheckState.Unchecked)

    def tick_strongest(self) -> None:
        count = self.strongest_spin.value()
        self.set_checked(int(self.channel_list.item(r).data(Qt.ItemDataRole.UserRole))
                         for r in range(min(count, self.channel_list.count())))

    # -- running ------------------------------------------------------------------------
    def run_ablation(self) -> None:
        """Zero the ticked channels and compare (on the worker)."""
        from featurescope.core.analysis.ablate import ablate

        state = self.state
        result, model, layer = state.result, state.model, state.layer
        channels = self.checked()
        if result is None or model is None or not channels:
            self.summary.setText("Tick at least one channel to switch off.")
            return
        self.summary.setText(f"Running {model.name} without {len(channels)} channels of {layer}...")

        def work(progress=None, cancel=None):
            return ablate(model, result, layer, channels)

        def done(ablation: Any) -> None:
            if state.result is result and state.layer == layer:
                self.ablation = ablation
                self._show_table()
                self._show_maps()

        def failed(message: str, _error: Any = None) -> None:
            self.summary.setText(message)

        submit_or_run(self.jobs, "ablation", work, label=f"switching channels of {layer} off",
                      on_result=done, on_error=failed)

    def _fit_table(self, rows: int) -> None:
        """Tall enough for its rows (up to TABLE_ROWS; more scroll): the maps below
        must not squeeze it to its header."""
        shown = max(1, min(rows, TABLE_ROWS))
        row = self.table.rowHeight(0) if rows else self.table.verticalHeader().defaultSectionSize()
        height = self.table.horizontalHeader().height() + shown * row + 2 * self.table.frameWidth() + 2
        self.table.setMinimumHeight(height)

    def _show_table(self) -> None:
        a = self.ablation
        if a is None:
            self.table.setRowCount(0)
            self.summary.setText("Tick channels and press Switch off: the network runs again with "
                                 "them set to zero, and the predictions before and after appear here.")
            return
        rows = sorted(a.changes, key=lambda c: -c.before)
        self.table.setRowCount(len(rows))
        for r, change in enumerate(rows):
            cells = (change.label, f"{change.before:.1%}", f"{change.after:.1%}",
                     points_text(change.change))
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if col:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(r, col, item)
        self.table.resizeColumnsToContents()
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self._fit_table(len(rows))
        before, after = a.before[0], a.after[0]
        channels = ", ".join(map(str, a.channels[:12])) + (" ..." if len(a.channels) > 12 else "")
        verdict = (f"the top class changed from {before.label} to {after.label}" if a.top_changed
                   else f"{before.label} stays on top ({before.probability:.1%} -> "
                        f"{next((c.after for c in a.changes if c.index == before.index), 0):.1%})")
        self.summary.setText(f"With {len(a.channels)} channel{'s' if len(a.channels) != 1 else ''} of "
                             f"{a.layer} off ({channels}): {verdict}.")

    def _show_maps(self) -> None:
        a, result = self.ablation, self.state.result
        name = self.later_combo.currentText()
        for item in (self.before_item, self.after_item, self.diff_item):
            item.clear()
        self.maps_note.setText("")
        if a is None or result is None or not name or name not in a.result or name not in a.original:
            return
        before, after = a.original[name].numpy(), a.result[name].numpy()
        # the channels that changed most, so the effect is readable at any width
        moved = np.abs(after - before).reshape(len(before), -1).mean(axis=1)
        chosen = np.argsort(-moved, kind="stable")[:MOST_CHANGED]
        before, after = before[chosen], after[chosen]
        # before and after on one colour scale, so a map that went dark looks dark
        lo = float(min(before.min(), after.min()))
        hi = float(max(before.max(), after.max()))
        colormap = self.state.display.colormap
        difference = np.abs(after - before)
        self.before_item.setImage(shared_grid(before, lo, hi, colormap))
        self.after_item.setImage(shared_grid(after, lo, hi, colormap))
        self.diff_item.setImage(shared_grid(difference, 0.0, float(difference.max()), "magma"))
        changed = float(difference.mean())
        self.maps_note.setText(f"The {len(chosen)} channels of {name} that changed most, before and "
                               f"after on one colour scale; mean |after - before| {changed:.3g}.")
        for box in (self.before_box, self.after_box, self.diff_box):
            box.autoRange(padding=0.02)
