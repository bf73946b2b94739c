"""Examples tab: the images of a folder that excite the selected channel most.

Choose an index file (``featurescope index``) or index a folder here: the build runs in
the worker's background lane one batch per unit (a click never waits for more than one
batch), with progress and cancel; a cancelled build keeps what it read and the next
build of that folder resumes it. For the selected layer the channel list marks channels
that never fired on the collection; hovering a channel shows its top crops, clicking
one selects it. Clicking a crop asks the window to open that image with the layer and
channel selected and the position pinned in the Channel tab (``example_opened``).
With the Channel tab's backprop view on, each crop has its unit's pattern beside it
(gui/views/example_crops.py).
An index built with another model than the loaded one says so in a sentence.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np
from PySide6.QtCore import QEvent, QPoint, Qt, QTimer, Signal
from PySide6.QtGui import QBrush, QColor, QCursor
from PySide6.QtWidgets import (QFileDialog, QHBoxLayout, QLabel, QListWidget,
                               QListWidgetItem, QProgressBar, QPushButton, QSizePolicy, QSplitter, QToolTip,
                               QVBoxLayout, QWidget)

from featurescope.core.atlas.labels import unit_labels
from featurescope.core.index.sheet import crop_pictures, problems_note
from featurescope.core.index.walk import default_index_path
from featurescope.gui.controllers.index_building import IndexBuildJob
from featurescope.gui.views.example_crops import TILE, ExampleCrops
from featurescope.gui.widgets.tab_page import TabPage

PREVIEW_TILE = 72  # the strip shown while hovering a channel of the feature-map grid
HOVER_REST_MS = 250  # the mouse rests this long on a channel before its crops show
DEAD_COLOUR = QColor(150, 150, 150)


def _as_image(array: np.ndarray):
    from PIL import Image

    return Image.fromarray(array)


class ExamplesView(TabPage):
    """``ExamplesView(state, jobs)``: the top images of ``state.layer``'s channels;
    hovering a channel of the feature-map grid (:meth:`preview_channel`) shows a strip."""

    example_opened = Signal(str, str, int, int, int)  # path, layer, channel, y, x
    index_changed = Signal(object)  # the Index shown, or None

    def __init__(self, state, jobs, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.state, self.jobs = state, jobs
        self.index = None
        self.shown_channel = -1
        self.examples: list = []  # Example records of the crops shown
        self.workers: Optional[int] = None  # decoding processes for a build (None: default)
        self.build_job = IndexBuildJob(jobs, self._build_progress, self._build_ended)
        self._previews: dict[tuple, str] = {}  # (layer, channel) -> PNG of its strip
        self._preview_dir = None
        self.hovered_channel = -1  # the channel hovered in the feature-map grid
        self.preview_text = ""  # the tooltip shown for it (tests read it)

        self.open_button = QPushButton("Open index...", self)
        self.open_button.setToolTip("Open an index made by `featurescope index` or by this tab.")
        self.build_button = QPushButton("Index a folder...", self)
        self.build_button.setToolTip("Find the images of a folder that excite each channel of the "
                                     "loaded model most (runs in the background; resumable).")
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.hide()
        self.progress = QProgressBar(self)
        self.progress.setTextVisible(True)
        self.progress.setFormat("%v of %m images")
        self.progress.setMinimumWidth(150)
        self.progress.hide()
        # rate and time left beside the bar, on one line: elided, never wrapped or clipped
        self.progress_text = QLabel(self)
        self.progress_text.setObjectName("indexProgressText")
        self.progress_text.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.progress_text.hide()
        self.index_label = QLabel("No index: open one or index a folder.", self)
        self.index_label.setWordWrap(True)
        self.notice = QLabel(self)
        self.notice.setWordWrap(True)
        self.notice.setStyleSheet("color: #c0392b;")
        self.notice.hide()
        self.header = QLabel(self)
        self.header.setWordWrap(True)

        self.channel_list = QListWidget(self)
        self.channel_list.setMouseTracking(True)
        self.channel_list.setToolTip("Hover a channel to see its examples; click to select it.")
        self.crops = ExampleCrops(state, jobs, self)

        top = QHBoxLayout()
        for widget in (self.open_button, self.build_button, self.progress, self.cancel_button):
            top.addWidget(widget)
        top.addWidget(self.progress_text, 1)
        right = QWidget(self)
        right_box = QVBoxLayout(right)
        right_box.setContentsMargins(0, 0, 0, 0)
        right_box.addWidget(self.header)
        right_box.addWidget(self.crops, 1)
        split = QSplitter(Qt.Orientation.Horizontal, self)
        split.addWidget(self.channel_list)
        split.addWidget(right)
        split.setStretchFactor(1, 3)
        box = QVBoxLayout(self)
        box.addLayout(top)
        box.addWidget(self.index_label)
        box.addWidget(self.notice)
        box.addWidget(split, 1)

        self.open_button.clicked.connect(self.open_index_dialog)
        self.build_button.clicked.connect(self.build_index_dialog)
        self.cancel_button.clicked.connect(self.cancel_build)
        # hovering shows a channel's crops once the mouse rests on it: moving across other
        # rows towards the crops keeps the crops of the channel it left
        self._hover_timer = QTimer(self)
        self._hover_timer.setSingleShot(True)
        self._hover_timer.setInterval(HOVER_REST_MS)
        self._hover_timer.timeout.connect(lambda: self.show_channel(self._resting))
        self._resting = -1
        self.channel_list.itemEntered.connect(self._on_item_entered)
        self.channel_list.viewport().installEventFilter(self)
        self.channel_list.itemClicked.connect(lambda item: self.state.set_channel(item.data(Qt.ItemDataRole.UserRole)))
        self.crops.itemClicked.connect(self._crop_clicked)
        state.layer_changed.connect(self.refresh)
        state.channel_changed.connect(self._on_channel_changed)
        state.model_changed.connect(lambda *_: self._check_model())

    def _on_item_entered(self, item: QListWidgetItem) -> None:
        self._resting = int(item.data(Qt.ItemDataRole.UserRole))
        self._hover_timer.start()

    def eventFilter(self, watched, event) -> bool:  # noqa: N802 - Qt's name
        if watched is self.channel_list.viewport() and event.type() == QEvent.Type.Leave:
            self._hover_timer.stop()  # left for the crops: they stay the shown channel's
        return super().eventFilter(watched, event)

    # -- the index --------------------------------------------------------------------
    def open_index_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open index", "",
                                              "featurescope index (*.fsindex *.npz);;All files (*)")
        if path:
            self.open_index(path)

    def open_index(self, path: str) -> None:
        """Read an index file on the worker and show it."""
        from featurescope.core.index.store import open_index

        self.jobs.submit("examples-open", lambda progress, cancel: open_index(path),
                         label="Opening index", on_result=self.set_index,
                         on_error=lambda message, _e: self._say(message))

    def set_index(self, index: Any) -> None:
        self.index = index
        self.shown_channel = -1
        self._previews.clear()  # strips of the previous index
        if index is not None:
            skipped = len(index.skipped)
            state = "" if index.complete else " (not finished: index the folder again to resume)"
            self.index_label.setText(
                f"{Path(str(index.path or '')).name or 'index'}: {index.images:,} images of "
                f"{index.folder}, top {index.k} per channel"
                + (f", {skipped} files skipped" if skipped else "") + state)
        self._check_model()
        self.state.set_index(index)
        self.index_changed.emit(index)
        self._stale = True
        self.refresh()

    def _check_model(self) -> None:
        model = self.state.model
        why = self.index.matches_model(model) if self.index is not None and model is not None else None
        self._say(why or "")

    def _say(self, message: str) -> None:
        self.notice.setText(message)
        self.notice.setVisible(bool(message))

    # -- building ---------------------------------------------------------------------
    def build_index_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Index a folder of images")
        if not folder:
            return
        output, _ = QFileDialog.getSaveFileName(
            self, "Save the index as", str(default_index_path(folder, self.data_folder())),
            "featurescope index (*.fsindex);;All files (*)")
        if output:
            self.build(folder, output)

    def data_folder(self) -> Path:
        """Where indexes go unless the user says otherwise: the app's data folder."""
        from PySide6.QtCore import QStandardPaths

        location = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppDataLocation)
        return Path(location or Path.home() / ".featurescope")

    def build(self, folder: str, output: Optional[str] = None, top: int = 9,
              batch_size: int = 16) -> None:
        """Index ``folder`` with the loaded model in the background (resumes a stopped one)
        into ``output``; by default a file named after the folder in the app's data folder
        (never a file inside the photo folder)."""
        model = self.state.model
        if model is None:
            self._say("Load a model before indexing a folder.")
            return
        self._say("")
        self.progress.setRange(0, 0)
        self.progress.show()
        self.progress_text.setText("")
        self.progress_text.show()
        self.cancel_button.setEnabled(True)
        self.cancel_button.show()
        self.build_button.setEnabled(False)
        output = output or str(default_index_path(folder, self.data_folder()))
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        self.build_job.start(model, folder, output, top=top,
                             batch_size=batch_size, workers=self.workers)

    def _build_progress(self, done: int, total: int, text: str) -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)
        if self.cancel_button.isEnabled():  # "Cancelling..." stays until it has stopped
            self.progress_text.setText(text)
            self.progress_text.setToolTip(text)

    def _build_ended(self, index: Any, message: str) -> None:
        self.progress.hide()
        self.progress_text.hide()
        self.cancel_button.hide()
        self.build_button.setEnabled(True)
        if index is not None:
            self.set_index(index)
        if message:
            self._say(message)

    def cancel_build(self) -> None:
        """Stop indexing; what was read is saved, so indexing the folder again resumes."""
        self.cancel_button.setEnabled(False)
        self.progress_text.setText("Cancelling: saving the images read so far...")
        self.build_job.cancel()

    @property
    def building(self) -> bool:
        return not self.build_button.isEnabled()

    # -- showing a layer and a channel ------------------------------------------------
    def redraw(self) -> None:
        self.channel_list.clear()
        self.shown_channel = -1
        index, layer = self.index, self.state.layer
        if index is None or layer not in index.layers:
            self.header.setText("" if index is None else f"The index has no layer {layer}.")
            self.crops.clear()
            self.examples = []
            return
        dead = set(index.dead_channels(layer))
        means, fired = index.channel_means(layer), index.fired_fraction(layer)
        labels = unit_labels(index, layer) if index.groups else None
        for channel in range(len(means)):
            text = f"{channel}  mean {means[channel]:.3g}, fired {fired[channel]:.0%}"
            if labels is not None and labels[channel].label:
                text += f"  {labels[channel].label} ({labels[channel].selectivity:.2f})"
            item = QListWidgetItem(text + ("  never fired" if channel in dead else ""))
            item.setData(Qt.ItemDataRole.UserRole, channel)
            if channel in dead:
                item.setForeground(QBrush(DEAD_COLOUR))
                item.setToolTip(f"Channel {channel} was never above 0 on any of the "
                                f"{index.images:,} images: dead on this collection.")
            self.channel_list.addItem(item)
        channel = self.state.channel if self.state.channel >= 0 else 0
        self.channel_list.setCurrentRow(min(channel, self.channel_list.count() - 1))
        self.show_channel(channel)

    def dead_rows(self) -> list[int]:
        """The channels marked as never fired in the list (for tests)."""
        return [i for i in range(self.channel_list.count())
                if self.channel_list.item(i).text().endswith("never fired")]

    def _on_channel_changed(self, channel: int) -> None:
        if self.index is not None and channel >= 0 and self.isVisible():
            self.channel_list.setCurrentRow(channel)
            self.show_channel(channel)

    def show_channel(self, channel: int) -> None:
        """Show the top crops of ``channel`` of the selected layer (crops read on the worker)."""
        index, layer = self.index, self.state.layer
        if index is None or layer not in index.layers or channel is None or channel < 0:
            return
        channel = int(channel)
        if channel == self.shown_channel:
            return
        self.shown_channel = channel
        examples = index.top(layer, channel, index.k)
        dead = channel in index.dead_channels(layer)
        fired = index.fired_fraction(layer)[channel]
        self.header.setText(f"{layer}, channel {channel}: "
                            + ("never fired on this collection." if dead else
                               f"fired in {fired:.0%} of {index.images:,} images; the top "
                               f"{len(examples)}, best first, cropped to the field each unit saw."))
        self.jobs.submit("examples-crops", lambda progress, cancel: (
            layer, channel, examples, crop_pictures(examples, TILE), [e.problem() for e in examples]),
            on_result=self._show_crops, on_error=lambda message, _e: self._say(message))

    def _show_crops(self, answer: tuple) -> None:
        layer, channel, examples, pictures, problems = answer
        if layer != self.state.layer or channel != self.shown_channel:
            return
        self.examples = list(examples)
        note = problems_note(examples, problems)
        if note:  # a file deleted or edited since indexing: its box may not be what the unit saw
            self.header.setText(f"{self.header.text()} {note}")
        self.crops.show_examples(layer, channel, examples, pictures, problems)

    # -- hovering a channel in the feature-map grid -------------------------------------
    def preview_channel(self, channel: int, where: Optional[QPoint] = None) -> None:
        """Show ``channel``'s top crops as a strip beside the cursor (the feature-map grid's
        ``channel_hovered``); -1 hides it. Strips are made on the worker and kept."""
        self.hovered_channel = int(channel)
        index, layer = self.index, self.state.layer
        if channel < 0 or index is None or layer not in index.layers:
            self.preview_text = ""
            QToolTip.hideText()
            return
        key = (layer, int(channel))
        if key in self._previews:
            self._show_preview(key, where)
            return
        if self._preview_dir is None:
            import tempfile

            self._preview_dir = tempfile.TemporaryDirectory(prefix="featurescope-examples-")
        target = Path(self._preview_dir.name) / f"{len(self._previews)}.png"
        examples = index.top(layer, int(channel), index.k)

        def work(progress, cancel):
            from featurescope.core.index.sheet import contact_sheet
            from featurescope.core.io.writers import write_png

            crops = [_as_image(p) for p in crop_pictures(examples, PREVIEW_TILE)]
            write_png(target, contact_sheet(examples, tile=PREVIEW_TILE, columns=len(examples) or 1,
                                            crops=crops), force=True)
            return key, str(target)

        self.jobs.submit("examples-preview", work, on_result=self._preview_ready)

    def _preview_ready(self, answer: tuple) -> None:
        key, path = answer
        self._previews[key] = path
        if key == (self.state.layer, self.hovered_channel):
            self._show_preview(key, None)

    def _show_preview(self, key: tuple, where: Optional[QPoint]) -> None:
        layer, channel = key
        dead = channel in self.index.dead_channels(layer)
        title = f"{layer}, channel {channel}" + (" - never fired on this collection" if dead else
                                                 f" - top {self.index.k} of {self.index.images:,} images")
        self.preview_text = f"<b>{title}</b><br><img src=\"{Path(self._previews[key]).as_uri()}\">"
        QToolTip.showText(where or QCursor.pos() + QPoint(16, 16), self.preview_text)

    def _crop_clicked(self, item: QListWidgetItem) -> None:
        self.open_example(self.crops.row(item))

    def open_example(self, row: int) -> None:
        example = self.examples[row]
        y, x = example.position
        self.example_opened.emit(example.path, self.state.layer, self.shown_channel, y, x)
