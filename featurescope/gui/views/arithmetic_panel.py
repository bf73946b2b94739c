"""The arithmetic at a pixel: the panel under the Channel tab's maps that shows how one
value of a feature map was computed (the input window, the kernel, the products, their
sum, the bias, the result, and that it equals the captured activation), or for a
pooling layer the window and the value it takes.

It asks :func:`featurescope.core.analysis.arithmetic.explain_position` on the worker
(one forward pass up to the layer) and draws the numbers with
:class:`~featurescope.gui.widgets.number_grid.NumberGrid`.
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QHBoxLayout, QLabel, QPushButton, QSizePolicy, QSpinBox, QVBoxLayout,
                               QWidget)

from featurescope.core.analysis.arithmetic import ARITHMETIC_TYPES
from featurescope.gui.jobs.workers import submit_or_run
from featurescope.gui.widgets.number_grid import NumberGrid
from featurescope.gui.widgets.products_table import ProductsTable


class ArithmeticPanel(QWidget):
    """Shows one :class:`PositionExplanation`; ``explain(y, x)`` asks for a new one."""

    def __init__(self, state, jobs=None, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setObjectName("arithmeticPanel")
        self.state = state
        self.jobs = jobs
        self.explanation: Any = None
        self.position: Optional[tuple[int, int]] = None
        self._for: tuple = ()

        self.header = QLabel(self)
        self.header.setWordWrap(True)
        font = self.header.font()
        font.setBold(True)
        self.header.setFont(font)
        self.close_button = QPushButton("Close", self)
        self.close_button.setToolTip("Hide the arithmetic (click a map position to show it again)")
        self.close_button.clicked.connect(self.hide)
        top = QHBoxLayout()
        top.addWidget(self.header, 1)
        top.addWidget(self.close_button)

        self.patch_grid = NumberGrid("RGB patch (what the photo shows)", self)
        self.window_grid = NumberGrid("input window", self)
        self.times = QLabel("\u00d7", self)
        self.kernel_grid = NumberGrid("kernel", self)
        self.equals = QLabel("=", self)
        self.products_grid = NumberGrid("products", self)
        for sign in (self.times, self.equals):
            big = sign.font()
            big.setPointSizeF(big.pointSizeF() * 1.8)
            sign.setFont(big)
            sign.setAlignment(Qt.AlignmentFlag.AlignCenter)
        grids = QHBoxLayout()
        grids.setSpacing(6)
        for widget in (self.patch_grid, self.window_grid, self.times, self.kernel_grid, self.equals,
                       self.products_grid):
            grids.addWidget(widget, 0 if widget in (self.times, self.equals) else 1)
        self.products_table = ProductsTable(self)  # a 1x1 convolution: one row per input channel
        self.products_table.hide()

        self.channel_spin = QSpinBox(self)
        self.channel_spin.setToolTip("Which input channel of the window to show")
        self.channel_spin.valueChanged.connect(self._show_channel)
        self.channel_label = QLabel("input channel", self)
        self.channel_note = QLabel(self)
        self.channel_note.setWordWrap(True)  # a long sum must not widen the window
        chooser = QHBoxLayout()
        chooser.addWidget(self.channel_label)
        chooser.addWidget(self.channel_spin)
        chooser.addWidget(self.channel_note, 1)

        self.steps = QLabel(self)
        self.steps.setWordWrap(True)
        self.steps.setTextFormat(Qt.TextFormat.RichText)
        self.steps.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Maximum)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.setSpacing(4)
        layout.addLayout(top)
        layout.addLayout(grids)
        layout.addWidget(self.products_table)
        layout.addLayout(chooser)
        layout.addWidget(self.steps)

        state.layer_changed.connect(lambda *_: self.hide())
        state.channel_changed.connect(self._again)
        state.result_changed.connect(self._again)
        self.hide()

    # -- asking -------------------------------------------------------------------------
    def explain(self, y: int, x: int) -> None:
        """Compute and show the arithmetic of (y, x) in the selected layer and channel."""
        state = self.state
        result, model, layer, channel = state.result, state.model, state.layer, state.channel
        if result is None or model is None or not layer or layer not in result.info:
            return
        info = result.info[layer]
        if info.kind not in ARITHMETIC_TYPES:
            return
        channel = max(0, channel)
        self.position = (int(y), int(x))
        key = (id(result), layer, channel, int(y), int(x))
        self._for = key
        self.header.setText(f"Computing channel {channel} at y {y}, x {x} of {layer}...")
        self.show()

        from featurescope.core.analysis.arithmetic import explain_position

        def work(progress=None, cancel=None):
            return explain_position(model, result, layer, channel, int(y), int(x))

        def done(explanation: Any) -> None:
            if self._for == key:
                self.show_explanation(explanation)

        def failed(message: str, _error: Any = None) -> None:
            if self._for == key:
                self.header.setText(message)

        submit_or_run(self.jobs, "arithmetic", work, label=f"arithmetic at {layer}",
                      on_result=done, on_error=failed)

    def _again(self, *_: Any) -> None:
        if self.isVisible() and self.position is not None:
            self.explain(*self.position)

    # -- showing ------------------------------------------------------------------------
    def show_explanation(self, e: Any) -> None:
        self.explanation = e
        self.show()
        what = {"convolution": "a convolution: multiply element-wise and sum",
                "max": "max pooling: the largest value of the window",
                "average": "average pooling: the mean of the window"}[e.operation]
        self.header.setText(f"{e.layer}, channel {e.channel}, y {e.y}, x {e.x}: {what}")
        is_conv = e.operation == "convolution"
        one_by_one = is_conv and e.kernel_size == (1, 1) and len(e.input_channels) > 1
        for widget in (self.times, self.kernel_grid, self.equals, self.products_grid):
            widget.setVisible(is_conv and not one_by_one)
        self.window_grid.setVisible(not one_by_one)
        self.products_table.setVisible(one_by_one)
        multi = len(e.input_channels) > 1 and not one_by_one
        for widget in (self.channel_spin, self.channel_label):
            widget.setVisible(multi)
        self.channel_note.setVisible(multi or one_by_one)
        self.channel_spin.blockSignals(True)
        self.channel_spin.setRange(0, len(e.input_channels) - 1)
        self.channel_spin.setValue(min(self.channel_spin.value(), len(e.input_channels) - 1))
        self.channel_spin.blockSignals(False)
        self._show_patch(e)
        if one_by_one:
            self._show_one_by_one(e)
        else:
            self._show_channel(self.channel_spin.value())
        colour = "#1b7f3b" if e.matches else "#c62828"
        kh, kw = e.kernel_size
        window = (f"window: input rows {e.rows[0]}..{e.rows[-1]}, columns {e.cols[0]}..{e.cols[-1]} "
                  f"(y x stride {e.stride[0]} - padding {e.padding[0]}, x x stride {e.stride[1]} - "
                  f"padding {e.padding[1]}; dilation {e.dilation[0]})")
        padded = int(e.padded.sum())
        if padded:
            window += f"; {padded} of {kh * kw} cells hang over the border: padding"
        if is_conv:
            count = e.window.size
            result_line = (f"{count} products, sum {e.total:.5g} + bias {e.bias:.5g} = <b>{e.value:.5g}</b>")
        elif e.operation == "max":
            result_line = f"the largest of {e.window.size} values (outlined) = <b>{e.value:.5g}</b>"
        else:
            result_line = f"sum {e.total:.5g} / {e.divisor} cells = <b>{e.value:.5g}</b>"
        verdict = "equals" if e.matches else "does NOT equal"
        notes = "".join(f"<br>{n}" for n in e.notes)
        self.steps.setText(f"{window}<br>{result_line} &nbsp; <span style='color:{colour}'><b>{verdict} "
                           f"the captured activation {e.captured:.5g}</b></span> (the value on the map){notes}")
        self.adjustSize()

    def _labels(self, e) -> tuple[list[str], list[str]]:
        return [f"y{r}" for r in e.rows], [f"x{c}" for c in e.cols]

    def _show_patch(self, e) -> None:
        """The RGB patch of the photo for a first layer (de-normalised window)."""
        model, result = self.state.model, self.state.result
        first = (result is not None and e.layer in result.info and result.info[e.layer].index == 0
                 and len(e.input_channels) == 3 and e.input_shape[1:] == tuple(result.input.shape[-2:]))
        mean, std = getattr(model, "mean", None), getattr(model, "std", None)
        if not first or mean is None or std is None:
            self.patch_grid.hide()
            return
        rgb = e.window.transpose(1, 2, 0) * np.asarray(std[:3]) + np.asarray(mean[:3])
        colours = (np.clip(rgb, 0, 1) * 255).round().astype(np.uint8)
        rows, cols = self._labels(e)
        self.patch_grid.set_data(np.zeros(e.padded.shape), mask=e.padded, colours=colours,
                                 row_labels=rows, show_numbers=False,
                                 title="RGB patch")
        # no numbers in the patch: narrow cells leave the numbers beside it more room
        self.patch_grid.setMaximumWidth(44 + 28 * e.padded.shape[1])
        self.patch_grid.show()

    def _show_channel(self, index: int) -> None:
        e = self.explanation
        if e is None or index >= len(e.input_channels):
            return
        rows, cols = self._labels(e)
        channel = e.input_channels[index]
        highlight = None
        if e.winner is not None:
            highlight = (e.winner[1], e.winner[2])
        if self.patch_grid.isVisibleTo(self):
            rows = ()  # the RGB patch beside it already names the rows
        self.window_grid.set_data(e.window[index], mask=e.padded, highlight=highlight,
                                  row_labels=rows, col_labels=cols,
                                  title=f"input ch {channel}" + (" window" if e.kernel is None else ""))
        if e.kernel is not None:
            self.kernel_grid.set_data(e.kernel[index], title=f"kernel [{e.channel}, {index}]")
            self.products_grid.set_data(e.products[index], mask=e.padded,
                                        title="products")
        if len(e.input_channels) > 1:
            sums = e.products.reshape(len(e.input_channels), -1).sum(axis=1)
            self.channel_note.setText(
                f"of {e.input_channels[0]}..{e.input_channels[-1]} (groups {e.groups}); the sum adds "
                f"every channel's products: {' + '.join(f'{s:.3g}' for s in sums[:6])}"
                f"{' + ...' if len(sums) > 6 else ''}")

    def _show_one_by_one(self, e) -> None:
        """A 1x1 convolution: one product per input channel, as rows, the strongest first."""
        n = len(e.input_channels)
        self.products_table.set_products(e.input_channels, e.window.reshape(n), e.kernel.reshape(n))
        self.channel_note.setText(f"1x1 kernel: {n} products, one per input channel, the largest first "
                                  "(scroll the table for the rest)")
