"""Grad-CAM view: which parts of the photo drive a class, seen from the selected layer.

Follows ``state.layer``: a convolution is explained itself; for a pooling layer the view
says so and uses the nearest convolution before it. The class is the top prediction, one
of the top five, or any class found by name in the search box; the method is any of the
CAM family (core/analysis/cam_methods.py). The work (``core.gradcam.compute_grad_cam``)
runs on the worker thread as a "gradcam" request (a new one replaces the old; Score-CAM
and Ablation-CAM report progress and stop on Cancel), only while this tab is visible;
answers are cached per capture, layer, class and method, so switching back is instant.
"""
from __future__ import annotations

import weakref
from collections import OrderedDict
from typing import Any, Optional

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QComboBox, QCompleter, QHBoxLayout, QLabel, QLineEdit, QSlider,
                               QVBoxLayout, QWidget)

from featurescope.core.render import grids
from featurescope.gui.model.dense_targets import cam_title, default_target_text, dense_rows, target_items
from featurescope.gui.jobs.workers import submit_or_run
from featurescope.gui.widgets.dense_overlay import DenseOverlay
from featurescope.gui.widgets.image_box import image_box
from featurescope.gui.widgets.tab_page import TabPage
from featurescope.gui.widgets.equal_columns import EqualColumns


COLORMAP = "inferno"
CACHE_SIZE = 32
TOP = 5
METHOD_NAMES = {"gradcam": "Grad-CAM", "gradcam++": "Grad-CAM++", "xgradcam": "XGrad-CAM",
                "layercam": "Layer-CAM", "hirescam": "HiResCAM", "eigencam": "Eigen-CAM",
                "scorecam": "Score-CAM", "ablationcam": "Ablation-CAM"}


def gradcam_layer(state) -> tuple[str, str]:
    """(layer to explain, a sentence when it is not ``state.layer`` itself): the rule of
    ``core.analysis.gradcam.grad_cam_layer`` for the selected layer."""
    from featurescope.core.analysis.gradcam import grad_cam_layer
    from featurescope.core.errors import ModelError

    result, layer = state.result, state.layer
    if result is None or not layer:
        return "", ""
    info = getattr(result, "info", {}) or {}
    infos = [info[name] for name in result.layers if name in info]
    try:
        return grad_cam_layer(infos, layer, getattr(state.model, "display_name", "The model"))
    except ModelError as error:
        return "", str(error)


class GradCamView(TabPage):
    """The Grad-CAM map of the chosen class over the input, for the selected layer."""

    def __init__(self, state, parent: Optional[QWidget] = None, jobs: Any = None) -> None:
        super().__init__(parent)
        self.state = state
        self.jobs = jobs
        self.choice = state.gradcam  # the class explained and the opacity (gui/model)
        self.method = "gradcam"
        self.cam: Any = None  # the GradCam shown (core.gradcam.GradCam)
        self.layer = ""  # the conv layer explained
        self._cache: OrderedDict[tuple, Any] = OrderedDict()
        self._wanted: Optional[tuple] = None
        self._cache_result: Any = None
        self._model_for_classes: Any = None
        self._lut = grids.colormap_lut(COLORMAP)[1:]

        self.header = QLabel(self)
        self.header.setWordWrap(True)
        font = self.header.font()
        font.setPointSizeF(font.pointSizeF() * 1.2)
        font.setBold(True)
        self.header.setFont(font)
        self.header.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.note = QLabel(self)
        self.note.setWordWrap(True)
        self.note.setStyleSheet("color: #9a6700;")

        self.class_combo = QComboBox(self)
        self.class_combo.setObjectName("gradcamClass")
        self.class_combo.setMinimumContentsLength(12)
        self.class_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.class_combo.setToolTip("Explain the top class or one of the top five")
        self.class_search = QLineEdit(self)
        self.class_search.setObjectName("gradcamClassSearch")
        self.class_search.setPlaceholderText("any class: type a name or number")
        self.class_search.setClearButtonEnabled(True)
        self.class_search.setToolTip("Type part of a class name (or its number) and press Enter")
        self.completer = QCompleter([], self)
        self.completer.setCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.completer.setFilterMode(Qt.MatchFlag.MatchContains)
        self.class_search.setCompleter(self.completer)
        self.method_combo = QComboBox(self)
        self.method_combo.setObjectName("gradcamMethod")
        for method, name in METHOD_NAMES.items():
            self.method_combo.addItem(name, method)
        self.method_combo.setToolTip("The CAM method (Score-CAM and Ablation-CAM run the network "
                                     "once per channel, in batches, with progress)")
        self.opacity_slider = QSlider(Qt.Orientation.Horizontal, self)
        self.opacity_slider.setRange(0, 100)
        self.opacity_slider.setValue(round(self.choice.opacity * 100))
        self.opacity_slider.setMaximumWidth(160)
        self.opacity_slider.setToolTip("Opacity of the map over the input image")
        controls = QHBoxLayout()
        controls.addWidget(QLabel("Class", self))
        controls.addWidget(self.class_combo, 2)
        controls.addWidget(self.class_search, 2)
        controls.addWidget(self.method_combo)
        controls.addWidget(QLabel("opacity", self))
        controls.addWidget(self.opacity_slider)

        self.plots = pg.GraphicsLayoutWidget(self)
        self.plots.setBackground(None)
        self.plots.ci.setSpacing(12)
        self.overlay_box, self.input_item = image_box()
        self.overlay_item = pg.ImageItem(axisOrder="row-major")
        self.overlay_item.setOpacity(self.choice.opacity)
        self.overlay_box.addItem(self.overlay_item)
        self.box_overlay = DenseOverlay(self.overlay_box)  # a detector's explained box
        self.layer_box, self.layer_item = image_box()
        self.plots.addLabel("over the input image", row=0, col=0)
        self.plots.addLabel("at the layer's own resolution", row=0, col=2)
        self.plots.addItem(self.overlay_box, row=1, col=0)
        self.color_bar = pg.ColorBarItem(values=(0, 1), interactive=False, width=18,
                                         colorMap=pg.ColorMap(np.linspace(0, 1, len(self._lut)), self._lut))
        self.color_bar.setImageItem(self.layer_item)
        self.plots.addItem(self.color_bar, row=1, col=1)
        self.plots.addItem(self.layer_box, row=1, col=2)
        # the overlay and the map are the same size, as in Compare
        self.equal_columns = EqualColumns(self.plots, (0, 2), (self.color_bar,))
        # pyqtgraph fixes the bar's axis at 45 px; sized by its tick labels instead, the bar's
        # column is the bar plus its numbers, and the pictures get the width it frees
        self.color_bar.axis.setWidth(None)
        self.color_bar.geometryChanged.connect(self.equal_columns.apply)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(self.header)
        layout.addLayout(controls)
        layout.addWidget(self.note)
        layout.addWidget(self.plots, 1)

        self.class_combo.activated.connect(self._combo_chosen)
        self.class_search.returnPressed.connect(self._search_chosen)
        self.method_combo.activated.connect(lambda index: self.set_method(self.method_combo.itemData(index)))
        self.completer.activated.connect(lambda text: self.choose_text(text))
        self.opacity_slider.valueChanged.connect(lambda v: self.choice.set_opacity(v / 100.0))
        self.choice.opacity_changed.connect(self._show_opacity)
        state.result_changed.connect(self._forget_result)
        # the target also changes from outside: a box or class clicked in the predictions
        for signal in (state.result_changed, state.layer_changed, state.model_changed,
                       self.choice.target_changed):
            signal.connect(self.refresh)
        self.refresh()

    def _show_opacity(self, opacity: float) -> None:
        self.overlay_item.setOpacity(opacity)
        if self.opacity_slider.value() != round(opacity * 100):
            self.opacity_slider.setValue(round(opacity * 100))

    def _forget_result(self, result: Any) -> None:
        # even while hidden: the maps of the previous capture (and, through it, its
        # model) must not stay alive once another capture is shown
        if result is not self._cache_result:
            self._cache.clear()
            self._cache_result = None

    # --- classes ---------------------------------------------------------------------

    def _categories(self) -> list[str]:
        return list(getattr(self.state.model, "categories", None) or [])

    def _class_text(self, index: int) -> str:
        categories = self._categories()
        name = categories[index] if 0 <= index < len(categories) else f"class {index}"
        return f"{name} ({index})"

    def _fill_classes(self) -> None:
        model, result = self.state.model, self.state.result
        if model is not (self._model_for_classes() if self._model_for_classes else None):
            self._model_for_classes = weakref.ref(model) if model is not None else None
            self.choice.set_target(None)  # another network: its classes differ
            self.completer.model().setStringList([self._class_text(i) for i in range(len(self._categories()))])
        self.class_combo.blockSignals(True)
        self.class_combo.clear()
        self.class_combo.addItem(default_target_text(model), None)
        predictions = result.predictions(TOP) if result is not None else []
        for p in predictions:
            self.class_combo.addItem(f"{p.label} ({p.index}), {p.probability * 100:.1f} %", int(p.index))
        for text, target in target_items(model, result, self.state.score_threshold):
            self.class_combo.addItem(text, target)  # a detector's boxes, a segmenter's classes
        if self.choice.target is not None and self.class_combo.findData(self.choice.target) < 0:
            self.class_combo.addItem(self._class_text(self.choice.target), self.choice.target)
        self.class_combo.setCurrentIndex(max(0, self.class_combo.findData(self.choice.target)))
        self.class_combo.blockSignals(False)

    def set_target(self, target: Optional[int]) -> None:
        """Explain class ``target`` (None: the top class)."""
        self.choice.set_target(target)
        self._fill_classes()
        self.refresh()

    def set_method(self, method: str) -> None:
        """Show the map of CAM method ``method`` (one of METHOD_NAMES)."""
        self.method = method if method in METHOD_NAMES else "gradcam"
        self.method_combo.setCurrentIndex(max(0, self.method_combo.findData(self.method)))
        self.refresh()

    def choose_text(self, text: str) -> bool:
        """Pick a class from search text: a number, "name (number)", or part of a name."""
        text = text.strip()
        if not text:
            return False
        categories = self._categories()
        index: Optional[int] = None
        if text.endswith(")") and "(" in text and text[text.rindex("(") + 1:-1].isdigit():
            index = int(text[text.rindex("(") + 1:-1])
        elif text.isdigit():
            index = int(text)
        else:
            lowered = text.lower()
            exact = [i for i, c in enumerate(categories) if c.lower() == lowered]
            partial = [i for i, c in enumerate(categories) if lowered in c.lower()]
            index = (exact or partial or [None])[0]
        classes = len(categories) or self._class_count()
        if index is None or (classes and not 0 <= index < classes):
            self.note.setText(f"No class matches {text!r}.")
            return False
        self.set_target(index)
        return True

    def _class_count(self) -> int:
        logits = getattr(self.state.result, "logits", None)
        return int(logits.numel()) if logits is not None else 0

    def _combo_chosen(self, index: int) -> None:
        self.set_target(self.class_combo.itemData(index))

    def _search_chosen(self) -> None:
        self.choose_text(self.class_search.text())

    # --- computing and showing ---------------------------------------------------------

    def redraw(self) -> None:
        """Show the map for the state's capture, layer and the chosen class, computing it
        on the worker when it is not cached."""
        self._fill_classes()
        model, result = self.state.model, self.state.result
        layer, note = gradcam_layer(self.state)
        notes = [note] if note else []
        if model is not None and not getattr(model, "trained", True):
            notes.append(f"{model.display_name} is untrained (random weights): its prediction, "
                         "and so this map, mean little.")
        self.note.setText(" ".join(notes))
        self.note.setVisible(bool(notes))
        self.layer = layer
        if result is None or model is None or not layer:
            self._show(None)
            self.header.setText("No Grad-CAM yet: load a model and an image." if result is None
                                else "No convolution to explain at this layer.")
            return
        if getattr(result, "logits", None) is None and getattr(result, "dense", None) is None:
            self._show(None)
            self.header.setText(f"{model.name} gives no class scores, so it has no Grad-CAM.")
            return
        if result is not self._cache_result:  # ids are reused: keep one capture's maps only
            self._cache.clear()
            self._cache_result = result
        key = (id(result), layer, self.choice.target, self.method)
        if key in self._cache:
            self._cache.move_to_end(key)
            self._show(self._cache[key])
            return
        self._wanted = key
        self.header.setText(f"Computing {METHOD_NAMES[self.method]} at {layer}...")
        self._submit(key, model, result, layer, self.choice.target, self.method)

    def _submit(self, key, model, result, layer: str, target: Optional[int], method: str) -> None:
        from featurescope.core.analysis.gradcam import compute_grad_cam

        image = result.input

        def work(progress=None, cancel=None):
            return compute_grad_cam(model, image, layer, target, method=method, progress=progress,
                                    cancel=cancel)

        def done(cam: Any) -> None:
            if self._cache_result is not result:
                return  # a newer capture arrived meanwhile
            self._cache[key] = cam
            while len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
            if key == self._wanted and self.state.result is result:
                self._show(cam)

        def failed(message: str, _error: Any = None) -> None:
            if key == self._wanted:
                self._show(None)
                self.header.setText("No Grad-CAM for this layer.")
                self.note.setText(message)
                self.note.show()

        submit_or_run(self.jobs, "gradcam", work, label=f"{METHOD_NAMES[method]} at {layer}", on_result=done,
                      on_error=failed)

    def _input_picture(self) -> Optional[np.ndarray]:
        try:
            return np.asarray(self.state.model.deprocess(self.state.result.input))
        except Exception:  # a model without deprocess still gets its map
            return None

    def _show(self, cam: Any) -> None:
        self.cam = cam
        if cam is None:
            for item in (self.input_item, self.overlay_item, self.layer_item, self.box_overlay):
                item.clear()
            return
        picture = self._input_picture()
        if picture is not None and picture.shape[:2] == cam.map.shape:
            self.input_item.setImage(picture, autoLevels=False, levels=(0, 255))
        else:
            self.input_item.clear()
        self.overlay_item.setImage(cam.map, autoLevels=False, levels=(0.0, 1.0), lut=self._lut)
        self.layer_item.setImage(cam.layer_map, autoLevels=False, levels=(0.0, 1.0), lut=self._lut)
        self.box_overlay.clear()
        if getattr(cam, "box", None) is not None:
            rows = dense_rows(self.state.model, self.state.result, 0.0)
            self.box_overlay.show(self.state.result, [r for r in rows if r.target == cam.target], None)
        self.overlay_box.autoRange(padding=0.02)
        self.layer_box.autoRange(padding=0.02)
        label = cam.label or f"class {cam.target}"
        which = "top class" if self.choice.target is None else "chosen class"
        probability = ""
        logits = getattr(self.state.result, "logits", None)
        if logits is not None:
            import torch

            probability = f", p = {float(torch.softmax(logits.double(), 0)[cam.target]) * 100:.1f} %"
        what = f"'{label}' ({which}, class {cam.target}{probability})"
        if getattr(cam, "task", "classification") != "classification":  # a box or a region
            what = cam_title(cam, self.choice.target is not None)
        self.header.setText(f"{METHOD_NAMES.get(cam.method, 'Grad-CAM')} of {what} "
                            f"at {cam.layer}, {cam.layer_map.shape[0]}x{cam.layer_map.shape[1]}")
        if not np.any(cam.layer_map > 0):
            # A legitimate result (the gradient-weighted sum of the maps is negative
            # everywhere), but a black picture looks like a bug without this sentence.
            self.note.setText(
                f"Grad-CAM is zero everywhere at {cam.layer}: no position there adds evidence "
                f"for '{label}'. Layers just before the classifier usually explain best; "
                f"try the last convolution.")
            self.note.show()
