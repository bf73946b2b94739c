"""The kernel playground tab: the student's own 3x3 or 5x5 kernel on their photo.

Left: presets, the kernel's numbers (editable), stride, padding and dilation, and a
pooling stage (max or average, size, stride). Right: the photo in grey, the kernel's
output and the pooled output, each with its size and the formula filled in. Below:
the network's own first-layer filters most like the hand-made kernel. The maths is
core/analysis/playground.py; a 224 px picture takes milliseconds, so it runs here.
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import (QComboBox, QDoubleSpinBox, QFormLayout, QGridLayout, QGroupBox,
                               QHBoxLayout, QLabel, QSpinBox, QVBoxLayout, QWidget)

from featurescope.gui.widgets.image_box import image_box
from featurescope.gui.widgets.equal_columns import EqualColumns
from featurescope.gui.widgets.tab_page import TabPage

SIMILAR = 4



def _pixmap(rgb: np.ndarray, side: int) -> QPixmap:
    rgb = np.ascontiguousarray(rgb)
    image = QImage(rgb.data, rgb.shape[1], rgb.shape[0], rgb.strides[0], QImage.Format.Format_RGB888)
    return QPixmap.fromImage(image.copy()).scaled(side, side, Qt.AspectRatioMode.KeepAspectRatio,
                                                  Qt.TransformationMode.FastTransformation)


def filter_colours(weights: np.ndarray) -> np.ndarray:
    """A (C, kh, kw) filter as (kh, kw, 3) uint8 colours, symmetric around zero (grey = 0)."""
    w = weights[:3] if weights.shape[0] >= 3 else np.repeat(weights[:1], 3, axis=0)
    amplitude = float(np.abs(w).max()) or 1.0
    return np.clip(np.transpose(w, (1, 2, 0)) / amplitude * 127.5 + 128, 0, 255).astype(np.uint8)


def kernel_colours(kernel: np.ndarray) -> np.ndarray:
    """A (kh, kw) kernel as (kh, kw, 3) uint8: blue negative, white zero, red positive."""
    amplitude = float(np.abs(kernel).max()) or 1.0
    t = np.clip(kernel / amplitude, -1, 1)[..., None]
    red, white, blue = np.array([200, 40, 40]), np.array([255, 255, 255]), np.array([40, 90, 200])
    return np.where(t >= 0, white + (red - white) * t, white + (blue - white) * -t).round().astype(np.uint8)



def inputs_text(channels: int) -> str:
    """How a learned filter is drawn, for a first layer with ``channels`` inputs."""
    if channels == 3:
        return "each in colour and summed over R, G, B (what it does to a grey photo)"
    if channels == 1:
        return "each in grey and in red and blue (the model takes one grey channel)"
    return f"each over its first three of {channels} inputs and summed over all {channels}"

class PlaygroundView(TabPage):
    """Edit a kernel, see it applied to the photo, pool it, find the learned look-alikes."""

    def __init__(self, state, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.state = state
        self._picture_for: Any = None
        self._grey: Optional[np.ndarray] = None
        self.output: Any = None  # PlaygroundOutput shown
        self.similar: list = []

        from featurescope.core.analysis.playground import PRESET_NAMES

        self.preset_combo = QComboBox(self)
        self.preset_combo.addItems(list(PRESET_NAMES) + ["(your own)"])
        self.preset_combo.setToolTip("Load a classic kernel; edit any number to make your own")
        self.size_combo = QComboBox(self)
        self.size_combo.addItems(["3x3", "5x5"])
        self.cells: list[list[QDoubleSpinBox]] = []
        grid = QGridLayout()
        grid.setSpacing(2)
        for i in range(5):
            row = []
            for j in range(5):
                spin = QDoubleSpinBox(self)
                spin.setRange(-99.0, 99.0)
                spin.setDecimals(3)
                spin.setSingleStep(0.5)
                spin.setButtonSymbols(QDoubleSpinBox.ButtonSymbols.NoButtons)
                spin.setAlignment(Qt.AlignmentFlag.AlignRight)
                spin.setFixedWidth(50)
                spin.valueChanged.connect(self._edited)
                grid.addWidget(spin, i, j)
                row.append(spin)
            self.cells.append(row)
        self.stride_spin, self.padding_spin, self.dilation_spin = QSpinBox(self), QSpinBox(self), QSpinBox(self)
        self.stride_spin.setRange(1, 4)
        self.padding_spin.setRange(0, 4)
        self.dilation_spin.setRange(1, 4)
        self.pool_combo = QComboBox(self)
        self.pool_combo.addItems(["none", "max", "average"])
        self.pool_size_spin, self.pool_stride_spin = QSpinBox(self), QSpinBox(self)
        self.pool_size_spin.setRange(2, 4)
        self.pool_stride_spin.setRange(1, 4)
        self.pool_stride_spin.setValue(2)

        kernel_box = QGroupBox("Kernel", self)
        kernel_form = QVBoxLayout(kernel_box)
        picks = QHBoxLayout()
        picks.addWidget(self.preset_combo, 1)
        picks.addWidget(self.size_combo)
        kernel_form.addLayout(picks)
        kernel_form.addLayout(grid)
        conv_box = QGroupBox("Convolution", self)
        conv_form = QFormLayout(conv_box)
        conv_form.addRow("stride", self.stride_spin)
        conv_form.addRow("padding (zeros)", self.padding_spin)
        conv_form.addRow("dilation", self.dilation_spin)
        pool_box = QGroupBox("Then pooling", self)
        pool_form = QFormLayout(pool_box)
        pool_form.addRow("pooling", self.pool_combo)
        pool_form.addRow("window", self.pool_size_spin)
        pool_form.addRow("stride", self.pool_stride_spin)
        controls = QVBoxLayout()
        for box in (kernel_box, conv_box, pool_box):
            controls.addWidget(box)
        controls.addStretch(1)

        self.plots = pg.GraphicsLayoutWidget(self)
        self.plots.setBackground(None)
        self.photo_box, self.photo_item = image_box()
        self.conv_box, self.conv_item = image_box()
        self.pool_box, self.pool_item = image_box()
        # two columns (photo | kernel output, then the pooled map under them): three across
        # would leave each picture a third of a narrow tab at 1280x800
        self.photo_title = self.plots.addLabel("photo (grey)", row=0, col=0)
        self.conv_title = self.plots.addLabel("kernel output", row=0, col=1)
        self.pool_title = self.plots.addLabel("pooled", row=2, col=1)
        self.plots.addItem(self.photo_box, row=1, col=0)
        self.plots.addItem(self.conv_box, row=1, col=1)
        self.plots.addItem(self.pool_box, row=3, col=1)
        self.equal_columns = EqualColumns(self.plots, (0, 1))
        self.formula = QLabel(self)
        self.formula.setWordWrap(True)
        self.formula.setTextFormat(Qt.TextFormat.RichText)
        self.formula.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        self.similar_title = QLabel(self)
        self.similar_title.setWordWrap(True)
        similar_row = QHBoxLayout()
        self.yours_picture = QLabel(self)
        self.yours_picture.setToolTip("Your kernel: blue negative, white zero, red positive")
        yours = QVBoxLayout()
        yours.addWidget(self.yours_picture, 0, Qt.AlignmentFlag.AlignCenter)
        yours.addWidget(QLabel("yours", self), 0, Qt.AlignmentFlag.AlignCenter)
        similar_row.addLayout(yours)
        similar_row.addSpacing(12)
        self.similar_pictures: list[tuple[QLabel, QLabel]] = []
        self.similar_captions: list[QLabel] = []
        for _ in range(SIMILAR):
            cell = QVBoxLayout()
            pair = QHBoxLayout()
            pair.setSpacing(2)
            colour, summed, caption = QLabel(self), QLabel(self), QLabel(self)
            colour.setToolTip("The learned filter in colour (grey = 0)")
            summed.setToolTip("Summed over R, G and B: what it does to a grey photo "
                              "(blue negative, red positive), the picture compared with yours")
            pair.addWidget(colour)
            pair.addWidget(summed)
            caption.setAlignment(Qt.AlignmentFlag.AlignCenter)
            cell.addLayout(pair)
            cell.addWidget(caption)
            similar_row.addLayout(cell)
            self.similar_pictures.append((colour, summed))
            self.similar_captions.append(caption)
        similar_row.addStretch(1)

        right = QVBoxLayout()
        right.addWidget(self.plots, 1)
        right.addWidget(self.formula)
        right.addWidget(self.similar_title)
        right.addLayout(similar_row)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addLayout(controls)
        layout.addLayout(right, 1)

        self._loading = False
        self.preset_combo.currentTextChanged.connect(self._preset_chosen)
        self.size_combo.currentTextChanged.connect(lambda *_: self._preset_chosen(self.preset_combo.currentText()))
        for spin in (self.stride_spin, self.padding_spin, self.dilation_spin, self.pool_size_spin,
                     self.pool_stride_spin):
            spin.valueChanged.connect(self.refresh)
        self.pool_combo.currentTextChanged.connect(self.refresh)
        for signal in (state.result_changed, state.model_changed):
            signal.connect(self.refresh)
        self.padding_spin.setValue(1)
        self.pool_combo.setCurrentText("max")
        self._preset_chosen("Sobel x")

    # -- the kernel ---------------------------------------------------------------------
    @property
    def size(self) -> int:
        return 5 if self.size_combo.currentText() == "5x5" else 3

    def kernel(self) -> np.ndarray:
        """The kernel as typed: (size, size)."""
        n = self.size
        return np.array([[self.cells[i][j].value() for j in range(n)] for i in range(n)])

    def set_kernel(self, kernel) -> None:
        """Type ``kernel`` (3x3 or 5x5) into the editor (the preset becomes "your own")."""
        kernel = np.asarray(kernel, dtype=float)
        self._loading = True
        try:
            self.size_combo.setCurrentText(f"{kernel.shape[0]}x{kernel.shape[0]}")
            self._fill(kernel)
        finally:
            self._loading = False
        self.preset_combo.blockSignals(True)
        self.preset_combo.setCurrentText("(your own)")
        self.preset_combo.blockSignals(False)
        self.refresh()

    def _fill(self, kernel: np.ndarray) -> None:
        n = kernel.shape[0]
        for i in range(5):
            for j in range(5):
                spin = self.cells[i][j]
                spin.blockSignals(True)
                spin.setValue(float(kernel[i, j]) if i < n and j < n else 0.0)
                spin.blockSignals(False)
                spin.setVisible(i < n and j < n)

    def _preset_chosen(self, name: str) -> None:
        from featurescope.core.analysis.playground import PRESET_NAMES, preset

        if self._loading:
            return
        if name in PRESET_NAMES:
            self._fill(preset(name, self.size))
        else:  # your own: keep the numbers, show the right cells
            self._fill(np.pad(self.kernel(), (0, 5 - self.size)))
        self.refresh()

    def _edited(self, *_: Any) -> None:
        if self._loading:
            return
        if self.preset_combo.currentText() != "(your own)":
            self.preset_combo.blockSignals(True)
            self.preset_combo.setCurrentText("(your own)")
            self.preset_combo.blockSignals(False)
        self.refresh()

    # -- drawing ------------------------------------------------------------------------
    def _picture(self) -> Optional[np.ndarray]:
        from featurescope.core.analysis.playground import grey

        result, model = self.state.result, self.state.model
        if result is None or model is None:
            return None
        if self._picture_for is not result:
            try:
                self._grey = grey(np.asarray(model.deprocess(result.input)))
            except Exception:  # a model without deprocess
                self._grey = None
            self._picture_for = result
        return self._grey

    def redraw(self) -> None:
        from featurescope.core.analysis.playground import apply_kernel, similar_filters
        from featurescope.core.errors import FeaturescopeError
        from featurescope.core.render.grids import colormap_lut

        picture = self._picture()
        if picture is None:
            self.formula.setText("Load a model and an image to try a kernel on it.")
            return
        kernel = self.kernel()
        pool = self.pool_combo.currentText()
        for spin in (self.pool_size_spin, self.pool_stride_spin):
            spin.setEnabled(pool != "none")
        try:
            out = apply_kernel(picture, kernel, self.stride_spin.value(), self.padding_spin.value(),
                               self.dilation_spin.value(), pool, self.pool_size_spin.value(),
                               self.pool_stride_spin.value())
        except FeaturescopeError as error:
            self.formula.setText(str(error))
            self.conv_item.clear()
            self.pool_item.clear()
            return
        self.output = out
        h, w = picture.shape
        self.photo_item.setImage(picture, autoLevels=False, levels=(0, 1))

        # the 99th percentile of |output|: a few very strong edges must not wash out the rest
        limit = float(np.percentile(np.abs(out.convolved), 99)) or float(np.abs(out.convolved).max()) or 1.0
        signed = float(out.convolved.min()) < 0
        levels = (-limit, limit) if signed else (0, limit)
        # signed outputs (edges) in a diverging map: blue negative, white zero, red positive
        lut = colormap_lut("coolwarm" if signed else "gray")
        self.conv_item.setImage(out.convolved, autoLevels=False, levels=levels, lut=lut)

        if out.pooled is not None:
            self.pool_item.setImage(out.pooled, autoLevels=False, levels=levels, lut=lut)

            self.pool_box.show()
        else:
            self.pool_item.clear()
        self.equal_columns.apply()
        for box in (self.photo_box, self.conv_box, self.pool_box):
            box.autoRange(padding=0.02)
        # (the picture titles stay fixed: a pyqtgraph label that changes text asks for width)
        c_h, c_w = out.convolved.shape
        lines = [f"<b>photo</b> {h}x{w} &rarr; <b>kernel output</b> {c_h}x{c_w}"
                 + (f" &rarr; <b>{pool} pooled</b> {out.pooled.shape[0]}x{out.pooled.shape[1]}"
                    if out.pooled is not None else " (no pooling)"),
                 f"output size = floor((n + 2p - d(k - 1) - 1) / s) + 1 = {out.conv_formula}"]
        if out.pooled is not None:
            lines.append(f"pooling {self.pool_size_spin.value()}x{self.pool_size_spin.value()}, "
                         f"stride {self.pool_stride_spin.value()}: {out.pool_formula}")
        self.formula.setText("<br>".join(lines))
        self._show_similar(similar_filters, kernel)

    def _show_similar(self, similar_filters, kernel: np.ndarray) -> None:
        model = self.state.model
        try:
            self.similar = similar_filters(model, kernel, top=SIMILAR) if model is not None else []
        except Exception as error:  # noqa: BLE001 - a model without a conv layer
            self.similar = []
            self.similar_title.setText(str(error))
        if self.similar:
            first = self.similar[0]
            self.similar_title.setText(
                f"<b>The learned filters most like yours</b> ({first.layer}, {first.weights.shape[1]}x"
                f"{first.weights.shape[2]}): {inputs_text(first.weights.shape[0])}, ranked by cosine "
                "similarity with yours; negative = the same pattern inverted")
        self.yours_picture.setPixmap(_pixmap(kernel_colours(kernel), 30))
        for index, ((colour, summed), caption) in enumerate(zip(self.similar_pictures, self.similar_captions)):
            if index < len(self.similar):
                f = self.similar[index]
                colour.setPixmap(_pixmap(filter_colours(f.weights), 30))
                summed.setPixmap(_pixmap(kernel_colours(f.kernel), 30))
                caption.setText(f"ch {f.channel}\ncos {f.similarity:+.2f}")
            else:
                colour.clear()
                summed.clear()
                caption.setText("")
