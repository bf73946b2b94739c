"""Circuits tab: which channels of an earlier layer build the selected channel, on this photo.

The target is the selected channel of the selected layer (or, after *From the class*,
the top class). The channels of a source layer (default: the one that feeds the layer
most directly) are ranked by contribution (core/circuits/): those that excite the
target on the left, those that inhibit it on the right, each with its map over the
photo, its feature visualisation where the cache has one, and its expanded-weight
kernel to the target (red excites, blue inhibits). Above, the switch-off check. A
click on a source makes it the target; the breadcrumb trail above leads back, and
*Export trail* writes the path walked (continued down to the first layer) as one
picture. All the work runs on the worker ("circuit" requests, a new one replaces
the old); only numpy arrays and plain records come back.
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np
from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QIcon, QImage, QPixmap
from PySide6.QtWidgets import (QComboBox, QFileDialog, QHBoxLayout, QHeaderView, QLabel, QPushButton,
                               QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from featurescope.core.circuits.panel import CLASS, Shown, compute
from featurescope.gui.caches.channel_visualisations import visualise_missing
from featurescope.gui.jobs.workers import submit_or_run
from featurescope.gui.widgets.tab_page import TabPage

ICON = 56
DEFAULT_SOURCE = "(default)"


def _icon(rgb: Optional[np.ndarray]) -> QIcon:
    if rgb is None:
        return QIcon()
    array = np.ascontiguousarray(rgb[:, :, :3])
    image = QImage(array.data, array.shape[1], array.shape[0], 3 * array.shape[1], QImage.Format.Format_RGB888)
    return QIcon(QPixmap.fromImage(image.copy()))


class CircuitsView(TabPage):
    """The ranked sources of the selected channel, a breadcrumb trail and its export."""

    def __init__(self, state, parent: Optional[QWidget] = None, jobs: Any = None) -> None:
        super().__init__(parent)
        self.state = state
        self.jobs = jobs
        self.crumbs: list[tuple[str, int]] = []  # the walk so far; the last is the target
        self.sources_of: dict[tuple, str] = {}  # crumb -> the source layer chosen there
        self.shown: Optional[Shown] = None
        self._wanted: Optional[tuple] = None
        self._moving = False  # this view is moving the selection (a click on a source)

        self.header = QLabel(self)
        self.header.setWordWrap(True)
        font = self.header.font()
        font.setBold(True)
        self.header.setFont(font)
        self.trail_label = QLabel(self)
        self.trail_label.setObjectName("circuitsTrail")
        self.trail_label.setWordWrap(True)
        self.trail_label.setTextFormat(Qt.TextFormat.RichText)
        self.trail_label.linkActivated.connect(self._crumb_clicked)
        self.source_combo = QComboBox(self)
        self.source_combo.setObjectName("circuitsSource")
        self.source_combo.setToolTip("The earlier layer whose channels are ranked")
        self.source_combo.setMinimumContentsLength(10)
        self.source_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.class_button = QPushButton("From the class", self)
        self.class_button.setToolTip("Start the trail at the top class's score")
        self.export_button = QPushButton("Export trail...", self)
        self.export_button.setObjectName("circuitsExport")
        self.export_button.setToolTip("The path walked, continued down to the first layer, as one picture")
        controls = QHBoxLayout()
        controls.addWidget(QLabel("Sources from", self))
        controls.addWidget(self.source_combo, 1)
        controls.addWidget(self.class_button)
        controls.addWidget(self.export_button)
        self.check_label = QLabel(self)
        self.check_label.setObjectName("circuitsCheck")
        self.check_label.setWordWrap(True)
        self.note = QLabel(self)
        self.note.setWordWrap(True)
        self.note.setStyleSheet("color: #9a6700;")

        self.excite_table, self.inhibit_table = self._table("excites"), self._table("inhibits")
        tables = QHBoxLayout()
        for title, table in (("Excite it", self.excite_table), ("Inhibit it", self.inhibit_table)):
            column = QVBoxLayout()
            heading = QLabel(f"<b>{title}</b> (click one: it becomes the target)", self)
            heading.setWordWrap(True)
            column.addWidget(heading)
            column.addWidget(table, 1)
            tables.addLayout(column, 1)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(self.header)
        layout.addWidget(self.trail_label)
        layout.addLayout(controls)
        layout.addWidget(self.check_label)
        layout.addWidget(self.note)
        layout.addLayout(tables, 1)

        self.source_combo.activated.connect(self._source_chosen)
        self.class_button.clicked.connect(self.start_from_class)
        self.export_button.clicked.connect(self.export_trail)
        state.model_changed.connect(self._forget)
        state.layer_changed.connect(self._selection_changed)
        state.channel_changed.connect(self._selection_changed)
        state.result_changed.connect(self._selection_changed)
        for signal in (state.result_changed, state.model_changed):
            signal.connect(self.refresh)
        self._selection_changed()

    def _table(self, what: str) -> QTableWidget:
        table = QTableWidget(0, 5, self)
        table.setObjectName(f"circuits_{what}")
        table.setHorizontalHeaderLabels(["map", "looks for", "weights", "channel", "contribution"])
        table.setIconSize(QSize(ICON, ICON))
        table.verticalHeader().setVisible(False)
        table.verticalHeader().setDefaultSectionSize(ICON + 4)
        table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        table.horizontalHeader().setStretchLastSection(True)
        table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        table.setMinimumWidth(120)
        table.setToolTip(f"Source channels that {what} the target; the weights are the expanded "
                         "weights (red excites, blue inhibits)")
        table.cellClicked.connect(lambda row, _col, t=table: self._source_clicked(t, row))
        return table

    # --- what the target is ----------------------------------------------------------
    def target(self) -> Optional[tuple[str, int]]:
        return self.crumbs[-1] if self.crumbs else None

    def _selection_changed(self, *_: Any) -> None:
        """The layer or channel selected elsewhere: the trail starts there (or goes back
        to it, when it is on the trail); clicks in this view move the selection too."""
        layer, channel = self.state.layer, self.state.channel
        if self._moving or not layer:
            return
        if channel is None or channel < 0:  # nothing selected: the layer's most active channel
            channel = self._strongest(layer)
            if channel is None:
                return
        here = (layer, int(channel))
        if here in self.crumbs:
            del self.crumbs[self.crumbs.index(here) + 1:]
        else:
            self.crumbs = [here]
        self.refresh()

    def _strongest(self, layer: str) -> Optional[int]:
        result = self.state.result
        try:
            maps = np.asarray(result[layer]) if result is not None else None
        except (KeyError, ValueError):
            return None
        if maps is None or maps.ndim < 2:
            return None
        return int(maps.reshape(maps.shape[0], -1).mean(axis=1).argmax())

    def _select(self, layer: str, channel: int) -> None:
        self._moving = True
        try:
            if self.state.layer != layer:
                self.state.set_layer(layer)
            self.state.set_channel(channel)
        finally:
            self._moving = False

    def start_from_class(self) -> None:
        """Make the top class the target (the start of a trail down to the first layer)."""
        result = self.state.result
        logits = getattr(result, "logits", None)
        if logits is None:
            self.note.setText("This model gives no class scores to start from.")
            return
        self.crumbs = [(CLASS, int(logits.argmax()))]
        self.refresh()

    def _crumb_clicked(self, link: str) -> None:
        index = int(link)
        self.crumbs = self.crumbs[:index + 1]
        layer, channel = self.crumbs[-1]
        if layer != CLASS:
            self._select(layer, channel)
        self.refresh()

    def _source_clicked(self, table: QTableWidget, row: int) -> None:
        rows = self.shown.excite if table is self.excite_table else self.shown.inhibit if self.shown else []
        if self.shown is None or row >= len(rows):
            return
        self.crumbs.append((self.shown.source, rows[row].channel))
        self._select(self.shown.source, rows[row].channel)
        self.refresh()

    def _source_chosen(self, index: int) -> None:
        target = self.target()
        if target is not None:
            text = self.source_combo.itemText(index)
            self.sources_of[target] = "" if text == DEFAULT_SOURCE else text
            self.refresh()

    def _forget(self, *_: Any) -> None:
        if self.jobs is not None:
            self.jobs.cancel("circuit")
            self.jobs.cancel("circuit_optvis")
        self.crumbs, self.sources_of, self.shown, self._wanted = [], {}, None, None
        self._clear()

    # --- drawing ---------------------------------------------------------------------
    def redraw(self) -> None:
        model, image = self.state.model, getattr(self.state, "image", None)
        if image is None and self.state.result is not None:
            image = getattr(self.state.result, "input", None)
        if model is None or image is None:
            self.header.setText("Load a model and an image to see which channels build a channel.")
            return
        if not getattr(model, "supports_gradients", True):
            self.header.setText("Circuits need gradients, which this model does not give (ONNX).")
            self._clear()
            return
        target = self.target()
        if target is None:
            self.header.setText("Select a channel (click a feature map) to see which channels build it.")
            return
        self._draw_trail()
        source = self.sources_of.get(target) or None
        key = (id(model), id(self.state.result), id(image), target, source)
        if self.shown is not None and self.shown.key == key or self._wanted == key:
            return
        self._wanted = key
        self.header.setText(f"{self._name(target)}: ranking its inputs...")

        def work(progress=None, cancel=None):
            return compute(model, image, target[0], target[1], source, key, ICON, progress, cancel)

        submit_or_run(self.jobs, "circuit", work, label="Circuit", on_result=self._show,
                      on_error=self._failed)

    def _failed(self, message: str, _error: Any = None) -> None:
        # the previous target's rows would read as this one's: clear them, and the header
        # names the channel without promising a ranking
        target = self._wanted[3] if self._wanted is not None else None
        self._wanted, self.shown = None, None
        self._clear()
        self.header.setText(self._name(target) if target is not None else "")
        self.note.setText(message)

    def _show(self, shown: Shown) -> None:
        if shown.key != self._wanted:
            return
        self.shown, self._wanted = shown, None
        self.note.setText("")
        name = self._name((shown.layer, shown.channel), shown.label)
        self.header.setText(f"{name} = {shown.value:.4g}, built from {shown.source} "
                            f"(contributions add up to {shown.total:.4g})")
        self.check_label.setText(shown.check or "")
        self.source_combo.blockSignals(True)
        self.source_combo.clear()
        self.source_combo.addItems([DEFAULT_SOURCE, *reversed(shown.sources)])
        chosen = self.sources_of.get((shown.layer, shown.channel))
        self.source_combo.setCurrentText(chosen or DEFAULT_SOURCE)
        self.source_combo.blockSignals(False)
        for table, rows in ((self.excite_table, shown.excite), (self.inhibit_table, shown.inhibit)):
            table.setRowCount(len(rows))
            for r, item in enumerate(rows):
                for c, rgb in enumerate((item.map_rgb, item.visualisation, item.kernel_rgb)):
                    cell = QTableWidgetItem(_icon(rgb), "" if rgb is not None else "-")
                    table.setItem(r, c, cell)
                table.setItem(r, 3, QTableWidgetItem(str(item.channel)))
                table.setItem(r, 4, QTableWidgetItem(f"{item.contribution:+.4g}"))
        self._draw_trail()
        self._visualise_missing(shown)

    def _visualise_missing(self, shown: Shown) -> None:
        """Visualise the listed sources the cache lacks in the background; each picture
        fills its "looks for" cell as it arrives."""
        missing = [row.channel for row in shown.excite + shown.inhibit if row.visualisation is None]
        if shown.source != CLASS:
            visualise_missing(self.jobs, "circuit_optvis", self.state.model, shown.source, missing, shown.key,
                              self._visualised)

    def _visualised(self, answer: tuple) -> None:
        key, channel, picture = answer
        if self.shown is None or self.shown.key != key:
            return
        for table, rows in ((self.excite_table, self.shown.excite), (self.inhibit_table, self.shown.inhibit)):
            for r, row in enumerate(rows):
                if row.channel == channel:
                    row.visualisation = picture
                    table.setItem(r, 1, QTableWidgetItem(_icon(picture), ""))

    def _clear(self) -> None:
        for table in (self.excite_table, self.inhibit_table):
            table.setRowCount(0)
        self.check_label.setText("")

    def _name(self, target: tuple, label: Optional[str] = None) -> str:
        layer, channel = target
        if layer == CLASS:
            return f"class {label or channel}"
        return f"{layer} channel {channel}"

    def _draw_trail(self) -> None:
        parts = [f'<a href="{k}">{self._name(crumb)}</a>' if k < len(self.crumbs) - 1 else
                 f"<b>{self._name(crumb)}</b>" for k, crumb in enumerate(self.crumbs)]
        self.trail_label.setText("Trail: " + " &larr; ".join(parts))

    # --- export ----------------------------------------------------------------------
    def export_trail(self, path: Optional[str] = None) -> None:
        """Write the trail walked so far, continued down to the first layer, as a PNG."""
        model, image = self.state.model, getattr(self.state, "image", None)
        if model is None or image is None or not self.crumbs:
            return
        if not path:
            path, _ = QFileDialog.getSaveFileName(self, "Export trail", "trail.png", "PNG images (*.png)")
        if not path:
            return
        crumbs = list(self.crumbs)

        def work(progress=None, cancel=None):
            from featurescope.core.circuits.picture import trail_picture
            from featurescope.core.circuits.trail import follow
            from featurescope.core.io.writers import write_png

            trail = follow(model, image, crumbs, progress=progress, cancel=cancel)
            write_png(path, trail_picture(model, image, trail), force=True)
            return path

        submit_or_run(self.jobs, "circuit_export", work, label="Exporting trail",
                      on_result=lambda written: self.note.setText(f"Trail written to {written}."),
                      on_error=self._failed)
