"""Filters view: the selected convolution layer's kernels as one mosaic.

First layer (3 input channels): each filter in colour (RGB). Deeper layers: the mean over
input channels, or one chosen input channel, on a diverging colormap (blue negative, red
positive). Depthwise layers: each filter's single channel. Pooling layers have no
filters, and the view says so in a sentence instead of showing an empty picture.
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, Qt
from PySide6.QtWidgets import (QComboBox, QHBoxLayout, QLabel, QSizePolicy, QSpinBox, QStackedWidget,
                               QVBoxLayout, QWidget)

from featurescope.gui.widgets.tab_page import TabPage
from featurescope.core.render import filters


MODES = (("auto", "auto"), ("rgb", "RGB (3 input channels)"), ("mean", "mean of input channels"),
         ("channel", "one input channel"))
CAPTIONS = {
    "rgb": "Each tile is one filter: its weights on the red, green and blue input channels shown "
           "as a colour picture, so you see which colours and edges it responds to.",
    "mean": "Each tile is one filter: its weights averaged over the {n} input channels it sees. "
            "Blue is negative, red positive, the middle colour zero.",
    "channel": "Each tile is one filter: its weights on input channel {k} of {n}. "
               "Blue is negative, red positive, the middle colour zero.",
    "depthwise": "Depthwise convolution: each filter sees one input channel only, its own. "
                 "Blue is negative, red positive, the middle colour zero.",
    "single": "Each tile is one filter on the layer's single input channel (a grey picture "
              "for a first layer). Blue is negative, red positive, the middle colour zero.",
}


def no_filters_text(info) -> str:
    """The sentence shown for a layer without kernels (pooling)."""
    how = "the largest value" if "Max" in info.kind else "the average"
    if info.kind.startswith("Adaptive"):
        window = "of a window sized to give a fixed output"
    else:
        kh, kw = info.kernel_size
        window = f"of each {kh}x{kw} window"
    return (f"Pooling layers have no filters; {info.name} ({info.kind}) keeps {how} {window} "
            f"in every channel, a fixed rule with nothing learned. Select a convolution layer "
            f"to see its kernels.")


class FiltersView(TabPage):
    """The kernels of ``state.layer`` via :func:`featurescope.core.render.filters.filter_grid`."""

    def __init__(self, state, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.state = state
        self.weight: Optional[np.ndarray] = None  # (O, I/groups, kh, kw) of the layer shown
        self.layout_grid = None  # GridLayout of the mosaic shown
        self.effective_mode = ""
        self._modules: dict = {}
        self._modules_of: Any = None

        self.header = QLabel(self)
        font = self.header.font()
        font.setPointSizeF(font.pointSizeF() * 1.2)
        font.setBold(True)
        self.header.setFont(font)
        self.header.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        # wraps instead of widening the tab: a long layer name squeezed the docks beside it
        self.header.setWordWrap(True)
        self.header.setMinimumWidth(80)
        self.mode = QComboBox(self)
        for key, text in MODES:
            self.mode.addItem(text, key)
        self.mode.setToolTip("How each filter's input channels become one picture.")
        self.mode.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.mode.setMinimumContentsLength(8)
        self.input_channel = QSpinBox(self)
        self.input_channel.setPrefix("input ")
        self.input_channel.setSizePolicy(QSizePolicy.Preferred, QSizePolicy.Fixed)
        self.input_channel.setToolTip("The input channel shown in 'one input channel' mode.")
        controls = QHBoxLayout()
        controls.addWidget(self.header, 1)
        controls.addWidget(QLabel("show", self))
        controls.addWidget(self.mode)
        controls.addWidget(self.input_channel)

        self.caption = QLabel(self)
        self.caption.setWordWrap(True)
        self.plots = pg.GraphicsLayoutWidget(self)
        self.plots.setBackground(None)
        self.view_box = pg.ViewBox(lockAspect=True, invertY=True, enableMenu=False)
        self.view_box.invertY(True)
        self.image_item = pg.ImageItem(axisOrder="row-major")
        self.view_box.addItem(self.image_item)
        self.plots.addItem(self.view_box)
        self.message = QLabel(self)
        self.message.setWordWrap(True)
        self.message.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.message.setMargin(24)
        font = self.message.font()
        font.setPointSizeF(font.pointSizeF() * 1.15)
        self.message.setFont(font)
        self.stack = QStackedWidget(self)
        self.stack.addWidget(self.plots)
        self.stack.addWidget(self.message)
        self.hover_label = QLabel(self)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addLayout(controls)
        layout.addWidget(self.caption)
        layout.addWidget(self.stack, 1)
        layout.addWidget(self.hover_label)

        self.mode.currentIndexChanged.connect(self.refresh)
        self.input_channel.valueChanged.connect(self.refresh)
        self._hover_proxy = pg.SignalProxy(self.plots.scene().sigMouseMoved, rateLimit=60,
                                           slot=lambda args: self.show_hover(args[0]))
        state.model_changed.connect(self._forget_model)
        for signal in (state.layer_changed, state.model_changed, state.result_changed):
            signal.connect(self.refresh)
        self.refresh()

    def _forget_model(self, *_: Any) -> None:
        # even while hidden: the module table must not keep the previous network alive
        self._modules, self._modules_of = {}, None

    def _weight_of(self, info) -> Optional[np.ndarray]:
        model = self.state.model
        if model is None or getattr(model, "module", None) is None:
            return None
        if self._modules_of is not model:
            self._modules = dict(model.module.named_modules())
            self._modules_of = model
        module = self._modules.get(info.module_name)
        weight = getattr(module, "weight", None)
        return None if weight is None else weight.detach().cpu().float().numpy()

    def _show_message(self, text: str) -> None:
        self.weight = None
        self.layout_grid = None
        self.effective_mode = ""
        self.image_item.clear()
        self.message.setText(text)
        self.stack.setCurrentWidget(self.message)
        self.caption.setText("")
        self.mode.setEnabled(False)
        self.input_channel.setEnabled(False)

    def redraw(self) -> None:
        """Draw the selected layer from the state (TabPage calls this only while shown)."""
        info = self.state.layer_info()
        if info is None:
            self.header.setText("Filters")
            self._show_message("Load a model and select a convolution layer to see its filters.")
            return
        if info.kind != "Conv2d":
            self.header.setText(f"{info.name}: no filters")
            self._show_message(no_filters_text(info))
            return
        weight = self._weight_of(info)
        if weight is None or weight.ndim != 4:
            self.header.setText(f"{info.name}: no filters")
            self._show_message(f"{info.name} has no weight tensor to show.")
            return
        out_c, per_group, kh, kw = weight.shape
        self.header.setText(f"{out_c} filters of {per_group}x{kh}x{kw} in {info.name}")

        chosen = self.mode.currentData()
        depthwise = per_group == 1
        self.mode.setEnabled(not depthwise)
        rgb_index = self.mode.findData("rgb")
        self.mode.model().item(rgb_index).setEnabled(per_group == 3)
        if chosen == "rgb" and per_group != 3:
            chosen = "auto"
        if depthwise:
            mode = "channel"
        elif chosen == "auto":
            mode = "rgb" if per_group == 3 else "mean"
        else:
            mode = chosen
        self.input_channel.blockSignals(True)
        self.input_channel.setRange(0, max(0, per_group - 1))
        self.input_channel.blockSignals(False)
        self.input_channel.setEnabled(mode == "channel" and not depthwise)
        k = self.input_channel.value() if mode == "channel" and not depthwise else 0

        rgb, grid = filters.filter_grid(weight, mode=mode, input_channel=k)
        self.weight, self.layout_grid, self.effective_mode = weight, grid, mode
        self.image_item.setImage(np.asarray(rgb), autoLevels=False, levels=(0, 255))
        self.view_box.autoRange(padding=0.02)
        self.stack.setCurrentWidget(self.plots)
        # One weight per position either way; only groups > 1 makes it depthwise.
        groups = getattr(info, "groups", 1) or 1
        caption = CAPTIONS["single" if depthwise and groups == 1 else "depthwise" if depthwise else mode]
        self.caption.setText(caption.format(n=per_group, k=k))

    def show_hover(self, scene_pos: QPointF) -> str:
        """Show (and return) which filter and weight lie under ``scene_pos``."""
        text = ""
        if self.layout_grid is not None and self.image_item.image is not None:
            p = self.image_item.mapFromScene(scene_pos)
            h, w = self.image_item.image.shape[:2]
            if 0 <= p.y() < h and 0 <= p.x() < w:
                hit = self.layout_grid.locate(int(p.y()), int(p.x()))
                if hit is not None:
                    f, ky, kx = (int(v) for v in hit)
                    values = self.weight[f, :, ky, kx]
                    if self.effective_mode == "rgb":
                        value = "R {:.3g}, G {:.3g}, B {:.3g}".format(*values)
                    elif self.effective_mode == "mean":
                        value = f"mean {values.mean():.3g}"
                    else:
                        k = 0 if values.shape[0] == 1 else self.input_channel.value()
                        value = f"{values[k]:.3g}"
                    text = f"filter {f}, weight ({ky}, {kx}): {value}"
        self.hover_label.setText(text)
        return text
