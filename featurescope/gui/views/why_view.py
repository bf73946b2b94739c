"""The Why view: which channels of the selected layer carried the class, and whether
switching them off really lowers it.

For the capture's photo, a class (the top one or one of the top five) and a method
(activation x gradient, or integrated gradients), the channels of ``state.layer`` ranked
by their contribution, for the class and against it, each with its map over the photo,
its contribution map (red for, blue against), its feature visualisation (from the cache,
else made in the background, filling in as it arrives) and, when an index of this model
covering the layer is open (Examples), its top 3 dataset-example crops. Beside them the deletion
curves (class probability with the top k channels switched off, beside the k strongest
and k random channels) and their areas. A click on a channel opens it in the Channel tab.

The work (core/analysis/attribution.py, faithfulness.py and the thumbnails of
core/render/why_report.py) runs on the worker as a "why" request with progress and
Cancel; only numpy arrays and dataclasses come back. Answers are cached per capture,
layer, class and method.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QIcon, QImage, QPixmap
from PySide6.QtWidgets import (QComboBox, QHBoxLayout, QLabel, QListWidget, QListWidgetItem,
                               QSplitter, QVBoxLayout, QWidget)

from featurescope.gui.caches.channel_visualisations import visualise_missing
from featurescope.gui.model.dense_targets import default_target_text, target_items, task_of, why_title
from featurescope.gui.jobs.workers import submit_or_run
from featurescope.gui.widgets.tab_page import TabPage

LISTED = 12  # channels listed for and against the class
THUMB = 72
EXAMPLES = 3  # dataset-example crops per listed channel
CACHE_SIZE = 8
METHODS = {"grad_x_act": "activation x gradient", "integrated_gradients": "integrated gradients"}
CURVES = (("top", "top by contribution", (214, 39, 40)), ("strongest", "strongest activation", (31, 119, 180)),
          ("random", "random channels (mean)", (127, 127, 127)))


@dataclass
class WhyAnswer:
    """What the worker hands back: the attribution, its deletion curves, and per listed
    channel an (THUMB, 2 * THUMB + 4, 3) uint8 thumbnail pair and its cached feature
    visualisation (None until made). ``examples``: channel -> its top crops, filled in
    later for the index in ``examples_of`` (the view's request key is ``key``)."""

    attribution: Any
    faithfulness: Any
    thumbnails: dict = field(default_factory=dict)
    visualisations: dict = field(default_factory=dict)
    examples: dict = field(default_factory=dict)
    examples_of: Any = None
    key: tuple = ()


def explain(model, image, layer: str, target: Optional[int], method: str, progress=None,
            cancel=None) -> WhyAnswer:
    """The Why view's work (runs on the worker thread)."""
    from featurescope.core.analysis.attribution import attribute
    from featurescope.core.analysis.faithfulness import faithfulness
    from featurescope.core.circuits.trail import cached_visualisation
    from featurescope.core.render.why_report import channel_over_photo, contribution_picture

    found = attribute(model, image, layer, target=target, method=method, progress=progress, cancel=cancel)
    faith = faithfulness(model, image, layer, found, progress=progress, cancel=cancel)
    picture = np.asarray(model.deprocess(image))
    listed = found.top(LISTED) + found.against(LISTED)
    scale = float(max((np.abs(found.maps[c]).max() for c in listed), default=0.0))
    thumbnails, visualisations = {}, {}
    for channel in listed:
        visualisations[channel] = cached_visualisation(model, layer, channel)
        from PIL import Image

        over = np.asarray(Image.fromarray(channel_over_photo(picture, found.activations[channel]))
                          .resize((THUMB, THUMB), Image.BILINEAR))
        contribution = contribution_picture(found.maps[channel], (THUMB, THUMB), scale)
        gap = np.full((THUMB, 4, 3), 255, np.uint8)
        thumbnails[channel] = np.ascontiguousarray(np.concatenate([over, gap, contribution], axis=1))
    return WhyAnswer(found, faith, thumbnails, visualisations)


def _icon(rgb: np.ndarray) -> QIcon:
    height, width, _ = rgb.shape
    image = QImage(rgb.data, width, height, 3 * width, QImage.Format.Format_RGB888).copy()
    return QIcon(QPixmap.fromImage(image))


class WhyView(TabPage):
    """Ranked channels for and against a class, and the deletion check beside them."""

    channel_activated = Signal(int)  # a channel was clicked: open it in the Channel tab

    def __init__(self, state, jobs: Any = None, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.state = state
        self.jobs = jobs
        self.target: Optional[int] = None  # None: the top class
        self.method = "grad_x_act"
        self.answer: Optional[WhyAnswer] = None
        self._cache: OrderedDict[tuple, WhyAnswer] = OrderedDict()
        self._cache_result: Any = None
        self._wanted: Optional[tuple] = None

        self.header = QLabel(self)
        self.header.setWordWrap(True)
        font = self.header.font()
        font.setBold(True)
        self.header.setFont(font)
        self.class_combo = QComboBox(self)
        self.class_combo.setObjectName("whyClass")
        self.class_combo.setToolTip("Explain the top class or one of the top five")
        self.class_combo.setMinimumContentsLength(12)
        self.class_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.method_combo = QComboBox(self)
        self.method_combo.setObjectName("whyMethod")
        for method, name in METHODS.items():
            self.method_combo.addItem(name, method)
        self.method_combo.setToolTip("Activation x gradient: one pass forward and back. Integrated "
                                     "gradients: 32 steps; the contributions add up to the logit "
                                     "minus the logit with the layer switched off")
        controls = QHBoxLayout()
        controls.addWidget(QLabel("Class", self))
        controls.addWidget(self.class_combo, 2)
        controls.addWidget(QLabel("method", self))
        controls.addWidget(self.method_combo, 1)

        self.for_list = self._channel_list("whyFor")
        self.against_list = self._channel_list("whyAgainst")
        lists = QWidget(self)
        lists_box = QVBoxLayout(lists)
        lists_box.setContentsMargins(0, 0, 0, 0)
        lists_box.addWidget(self._wrapped("For the class (map over the photo | contribution | what it "
                                          "looks for | top dataset examples when an index is open):"))
        lists_box.addWidget(self.for_list, 3)
        lists_box.addWidget(self._wrapped("Against it:"))
        lists_box.addWidget(self.against_list, 2)

        self.plot = pg.PlotWidget(self)
        self.plot.setObjectName("whyCurves")
        self.plot.setBackground(None)
        self.plot.setLabel("bottom", "channels switched off (k)")
        self.plot.setLabel("left", "class probability")
        self.plot.setYRange(0, 1, padding=0.02)
        self.plot.showGrid(x=False, y=True, alpha=0.2)
        self.legend = self.plot.addLegend(offset=(-10, 10))
        self.curves = {name: self.plot.plot([], [], pen=pg.mkPen(colour, width=2), symbol="o",
                                            symbolSize=5, symbolBrush=colour, name=words)
                       for name, words, colour in CURVES}
        self.verdict = QLabel(self)
        self.verdict.setWordWrap(True)
        right = QWidget(self)
        right_box = QVBoxLayout(right)
        right_box.setContentsMargins(0, 0, 0, 0)
        right_box.addWidget(self._wrapped("Is it true? The class's probability as channels are switched off:"))
        right_box.addWidget(self.plot, 1)
        right_box.addWidget(self.verdict)

        splitter = QSplitter(Qt.Orientation.Horizontal, self)
        splitter.addWidget(lists)
        splitter.addWidget(right)
        splitter.setSizes([520, 460])  # the lists' four pictures a row, the curves beside
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(self.header)
        layout.addLayout(controls)
        layout.addWidget(splitter, 1)

        self.class_combo.activated.connect(lambda i: self.set_target(self.class_combo.itemData(i)))
        self.method_combo.activated.connect(lambda i: self.set_method(self.method_combo.itemData(i)))
        state.result_changed.connect(self._forget_result)
        state.gradcam.target_changed.connect(  # a detector's box or class clicked in Predictions
            lambda target: task_of(self.state.model) != "classification" and self.set_target(target))
        state.index_changed.connect(lambda _index: self._fetch_examples())
        for signal in (state.result_changed, state.layer_changed, state.model_changed):
            signal.connect(self.refresh)
        self.refresh()

    def _wrapped(self, text: str) -> QLabel:
        label = QLabel(text, self)
        label.setWordWrap(True)  # the window may be narrower than the sentence
        return label

    def _channel_list(self, name: str) -> QListWidget:
        listing = QListWidget(self)
        listing.setObjectName(name)
        listing.setIconSize(QSize(2 * THUMB + 4, THUMB))
        listing.setToolTip("Click a channel to open it in the Channel tab")
        listing.setMinimumWidth(2 * THUMB + 40)
        listing.itemClicked.connect(self._clicked)
        return listing

    def _forget_result(self, result: Any) -> None:
        if result is not self._cache_result:  # the previous capture's answers go with it
            self._cache.clear()
            self._cache_result = None

    def set_target(self, target: Optional[int]) -> None:
        """Explain class ``target`` (None: the top class; a detector's box by its rank)."""
        self.target = None if target is None else int(target)
        self.refresh()

    def set_method(self, method: str) -> None:
        """Rank by ``method`` ("grad_x_act" or "integrated_gradients")."""
        self.method = method if method in METHODS else "grad_x_act"
        self.method_combo.setCurrentIndex(max(0, self.method_combo.findData(self.method)))
        self.refresh()

    def _fill_classes(self) -> None:
        result = self.state.result
        self.class_combo.blockSignals(True)
        self.class_combo.clear()
        self.class_combo.addItem(default_target_text(self.state.model), None)
        for p in (result.predictions(5) if result is not None and result.logits is not None else []):
            self.class_combo.addItem(f"{p.label} ({p.index}), {p.probability * 100:.1f} %", int(p.index))
        for text, target in target_items(self.state.model, result, self.state.score_threshold):
            self.class_combo.addItem(text, target)  # a detector's boxes, a segmenter's classes
        if self.class_combo.findData(self.target) < 0:
            self.target = None
        self.class_combo.setCurrentIndex(max(0, self.class_combo.findData(self.target)))
        self.class_combo.blockSignals(False)

    def redraw(self) -> None:
        """Show the answer for the state's capture, layer, class and method, asking the
        worker for it when it is not cached."""
        self._fill_classes()
        model, result, layer = self.state.model, self.state.result, self.state.layer
        if result is None or model is None or not layer:
            self._show(None, "Nothing to explain yet: load a model and an image.")
            return
        if result.logits is None and result.dense is None:
            self._show(None, f"{model.name} gives no class scores, so there is no class to explain.")
            return
        if not getattr(model, "supports_gradients", True):
            self._show(None, f"The Why view needs gradients, which {model.display_name} does not give.")
            return
        if result is not self._cache_result:
            self._cache.clear()
            self._cache_result = result
        key = (id(result), layer, self.target, self.method)
        if key in self._cache:
            self._cache.move_to_end(key)
            self._show(self._cache[key])
            return
        self._wanted = key
        self._show(None, f"Ranking the channels of {layer} and switching them off...")
        self._submit(key, model, result, layer, self.target, self.method)

    def _submit(self, key, model, result, layer, target, method) -> None:
        image = result.input

        def work(progress=None, cancel=None):
            return explain(model, image, layer, target, method, progress, cancel)

        def done(answer: WhyAnswer) -> None:
            if self._cache_result is not result:
                return  # a newer capture arrived meanwhile
            answer.key = key
            self._cache[key] = answer
            while len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
            if key == self._wanted and self.state.result is result:
                self._show(answer)

        def failed(message: str, _error: Any = None) -> None:
            if key == self._wanted:
                self._show(None, message)

        submit_or_run(self.jobs, "why", work, label=f"Why at {layer}", on_result=done, on_error=failed)

    def _show(self, answer: Optional[WhyAnswer], message: str = "") -> None:
        previous = self.answer
        if self.jobs is not None and previous is not None and previous is not answer:
            for kind in ("why_optvis", "why_examples"):  # the previous answer's pictures
                self.jobs.cancel(kind)
            if len(previous.examples) < len(previous.thumbnails):
                previous.examples_of = None  # read them again when it comes back
        self.answer = answer
        for listing in (self.for_list, self.against_list):
            listing.clear()
        if answer is None:
            self.header.setText(message)
            for curve in self.curves.values():
                curve.setData([], [])
            self.verdict.setText("")
            return
        found, faith = answer.attribution, answer.faithfulness
        name = found.label or f"class {found.target}"
        what = why_title(found) or f"'{name}' ({found.probability * 100:.1f} %)"
        self.header.setText(f"Why {what}: the channels of "
                            f"{found.layer} by their contribution ({METHODS[found.method]})")
        for listing, channels in ((self.for_list, found.top(LISTED)), (self.against_list, found.against(LISTED))):
            for channel in channels:
                item = QListWidgetItem(f"channel {channel}\n{found.channels[channel]:+.3g}")
                item.setData(Qt.ItemDataRole.UserRole, int(channel))
                listing.addItem(item)
        self._draw_rows()
        positions = np.arange(len(faith.k), dtype=float)  # k = 0, 1, 2, 5... evenly spaced
        axis = self.plot.getAxis("bottom")
        axis.setTicks([[(float(i), str(k)) for i, k in enumerate(faith.k)]])
        for ranking, words, _colour in CURVES:
            self.curves[ranking].setData(positions, np.asarray(getattr(faith, ranking)))
            self.legend.getLabel(self.curves[ranking]).setText(f"{words}: AUC {faith.auc[ranking]:.3f}")
        k = faith.k[-1]
        self.verdict.setText(
            f"Switching off the top {k} channels by contribution takes '{name}' from "
            f"{faith.top[0] * 100:.1f} % to {faith.top[-1] * 100:.1f} %; {k} random channels leave "
            f"{faith.random[-1] * 100:.1f} %. Areas under the curves (lower falls faster): "
            f"top {faith.auc['top']:.3f}, strongest {faith.auc['strongest']:.3f}, "
            f"random {faith.auc['random']:.3f}.")
        missing = [c for c, picture in answer.visualisations.items() if picture is None]
        visualise_missing(self.jobs, "why_optvis", self.state.model, found.layer, missing, answer.key,
                          self._visualised, label=f"Visualising the Why view's channels of {found.layer}")
        self._fetch_examples()

    # --- each channel's pictures -------------------------------------------------------
    def _index(self):
        """The open index when it is this model's and covers the answer's layer, else None."""
        index, answer = getattr(self.state, "index", None), self.answer
        if index is None or answer is None or answer.attribution.layer not in index.layers:
            return None
        return index if self.state.model is None or not index.matches_model(self.state.model) else None

    def row_picture(self, channel: int) -> Optional[np.ndarray]:
        """The pictures shown beside ``channel`` now, side by side (what its icon holds)."""
        from featurescope.core.render.why_report import channel_row

        answer = self.answer
        if answer is None or channel not in answer.thumbnails:
            return None
        crops = answer.examples.get(channel, []) if self._index() is not None else None
        return channel_row(answer.thumbnails[channel], answer.visualisations.get(channel), crops)

    def _draw_rows(self, only: Optional[int] = None) -> None:
        for listing in (self.for_list, self.against_list):
            for row in range(listing.count()):
                item = listing.item(row)
                channel = item.data(Qt.ItemDataRole.UserRole)
                if only is not None and channel != only:
                    continue
                picture = self.row_picture(channel)
                if picture is not None:
                    listing.setIconSize(QSize(picture.shape[1], picture.shape[0]))
                    item.setIcon(_icon(picture))

    def _visualised(self, answer: tuple) -> None:
        key, channel, picture = answer
        if self.answer is None or self.answer.key != key:
            return  # the selection moved on
        self.answer.visualisations[channel] = picture
        self._draw_rows(only=channel)

    def _fetch_examples(self) -> None:
        """Read the top crops of the listed channels from the open index, one background
        unit per channel, once per answer and index; without a covering index the rows
        lose their crops."""
        answer, index = self.answer, self._index()
        if answer is None or answer.examples_of is index:
            return
        answer.examples, answer.examples_of = {}, index
        self._draw_rows()
        if index is None:
            return
        layer, key = answer.attribution.layer, answer.key

        def unit_for(channel: int):
            def unit(progress=None, cancel=None):
                from featurescope.core.index.sheet import crop_pictures

                return key, index, channel, crop_pictures(index.top(layer, channel, EXAMPLES), THUMB)
            return unit

        units = [unit_for(c) for c in answer.thumbnails]
        if self.jobs is None:  # a view used on its own: read them here
            for unit in units:
                self._examples_read(unit())
            return
        self.jobs.submit_units("why_examples", units, label=f"Reading the Why view's examples of {layer}",
                               on_partial=self._examples_read, on_error=lambda *_: None)

    def _examples_read(self, answer: tuple) -> None:
        key, index, channel, crops = answer
        if self.answer is None or self.answer.key != key or self.answer.examples_of is not index:
            return
        self.answer.examples[channel] = crops
        self._draw_rows(only=channel)

    def _clicked(self, item: QListWidgetItem) -> None:
        channel = item.data(Qt.ItemDataRole.UserRole)
        if channel is None:
            return
        self.state.set_channel(int(channel))
        self.channel_activated.emit(int(channel))
