"""Channel view: one feature map large, with a colour bar, laid over the input photo.

Shows ``state.channel`` of ``state.layer`` (channel 0 while none is chosen). The map's
ImageItem holds the real activation values (float32) and the colour bar shows their range;
the overlay holds the same map bilinearly upsampled to the input size, so a student can see
which part of the picture lit the channel up. Right/Left or N/P (and the buttons) step
through channels via ``state.set_channel``.

Receptive fields: hovering (or clicking, which pins it) a position of the map draws the
input pixels it sees, ``receptive_field(model, layer).box(y, x)``, on the input picture;
hovering the input picture marks the map position whose field is centred nearest (solid)
and every position whose field contains that pixel (dashed). Fields come from
``gui.caches.receptive_fields`` (computed once per model, on the worker).

Clicking a position (or hovering with Shift held) pins it and emits ``position_pinned``;
the main window shows the arithmetic behind that value in a panel added under the maps
with :meth:`add_detail_panel` (gui/views/arithmetic_panel.py). The backprop view
(gui/views/backprop_control.py) puts a unit's pattern in the photo's place with
:meth:`show_pattern` after each redraw (``redrawn``).
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, Qt, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (QApplication, QHBoxLayout, QLabel, QPushButton,
                               QSlider, QSplitter, QVBoxLayout, QWidget)

from featurescope.core.analysis.stats import channel_stats
from featurescope.core.render import grids
from featurescope.core.render.options import colour_levels
from featurescope.gui.widgets.field_outlines import FieldOutlines
from featurescope.gui.widgets.image_box import image_box, item_pixel
from featurescope.gui.widgets.tab_page import TabPage
from featurescope.gui.caches import receptive_fields as field_cache
from featurescope.gui.widgets.equal_columns import EqualColumns
from featurescope.gui.widgets.panel_scroll import PanelScroll


MAPS_MINIMUM_HEIGHT = 240  # the map and the overlay stay readable with the arithmetic open


class ChannelView(TabPage):
    """The selected channel of the selected layer, large and over the input image."""

    position_pinned = Signal(int, int)  # a map position was clicked (or Shift-hovered)
    redrawn = Signal()  # the backprop view (backprop_control.py) puts its pattern back

    def __init__(self, state, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.state = state
        self._input_rgb: Optional[np.ndarray] = None
        self._input_for: Any = None
        self._layer_array: Optional[np.ndarray] = None
        self._layer_key: Any = None
        self._layer_levels: tuple[Any, tuple, tuple[float, float]] = (None, (), (0.0, 1.0))
        self.channel_map: Optional[np.ndarray] = None  # what is shown, (h, w) float32
        self.stats: dict[str, float] = {}
        self.field: Any = None  # ReceptiveField of the layer shown, or None
        self.rf_position: Optional[tuple[int, int]] = None  # map position whose field is drawn
        self.rf_box: Optional[tuple[int, int, int, int]] = None  # its (y0, x0, y1, x1) on the input
        self.seeing: Optional[tuple[int, int, int, int]] = None  # map positions seeing a hovered pixel
        self.pinned: Optional[tuple[int, int]] = None  # clicked position (kept while on this layer)
        self._pinned_layer = ""
        self.pattern: Optional[np.ndarray] = None  # shown in the photo's place (backprop view)

        self.header = QLabel(self)
        self.header.setWordWrap(True)
        self.header.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        font = self.header.font()
        font.setPointSizeF(font.pointSizeF() * 1.2)
        font.setBold(True)
        self.header.setFont(font)
        self.previous_button = QPushButton("\u25c0 Previous", self)
        self.previous_button.setToolTip("Previous channel (Left or P)")
        self.next_button = QPushButton("Next \u25b6", self)
        self.next_button.setToolTip("Next channel (Right or N)")
        self.previous_button.clicked.connect(self.previous_channel)
        self.next_button.clicked.connect(self.next_channel)
        top = QHBoxLayout()
        top.addWidget(self.header, 1)
        top.addWidget(self.previous_button)
        top.addWidget(self.next_button)

        self.plots = pg.GraphicsLayoutWidget(self)
        self.plots.setBackground(None)
        self.plots.ci.setSpacing(12)
        self.map_box, self.map_item = image_box()
        self.overlay_box, self.input_item = image_box()
        self.overlay_item = pg.ImageItem(axisOrder="row-major")
        self.overlay_box.addItem(self.overlay_item)
        self.map_title = self.plots.addLabel("feature map", row=0, col=0)
        self.overlay_title = self.plots.addLabel("over the input image", row=0, col=2)
        self.plots.addItem(self.map_box, row=1, col=0)
        self.color_bar = pg.ColorBarItem(values=(0, 1), interactive=False, width=18)
        self.plots.addItem(self.color_bar, row=1, col=1)
        self.color_bar.setImageItem(self.map_item)
        self.plots.addItem(self.overlay_box, row=1, col=2)
        # the map and the overlay are the same size, as in Compare
        self.equal_columns = EqualColumns(self.plots, (0, 2), (self.color_bar,))
        # pyqtgraph fixes the bar's axis at 45 px; sized by its tick labels instead, the bar's
        # column is the bar plus its numbers, and the pictures get the width it frees
        self.color_bar.axis.setWidth(None)
        self.color_bar.geometryChanged.connect(self.equal_columns.apply)
        self.outlines = FieldOutlines(self.map_box, self.overlay_box)

        self.stats_label = QLabel(self)
        self.stats_label.setWordWrap(True)
        self.stats_label.setTextFormat(Qt.TextFormat.RichText)
        self.stats_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.hover_label = QLabel(self)
        self.hover_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.opacity_slider = QSlider(Qt.Orientation.Horizontal, self)
        self.opacity_slider.setRange(0, 100)
        self.opacity_slider.setValue(60)
        self.opacity_slider.setMinimumWidth(120)
        self.opacity_slider.setMaximumWidth(200)
        self.opacity_slider.setToolTip("Opacity of the map over the input image")
        self.opacity_slider.valueChanged.connect(self._opacity_changed)
        self.overlay_item.setOpacity(0.6)
        bottom = QHBoxLayout()
        bottom.addWidget(self.stats_label, 1)
        bottom.addWidget(QLabel("overlay opacity", self))
        bottom.addWidget(self.opacity_slider)
        self.hover_label.setToolTip("Move the mouse over the map or the photo")
        self.field_label = QLabel(self)
        self.field_label.setWordWrap(True)  # a long sentence must not widen the window
        self.field_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.field_label.setToolTip("Hover or click a map position to see where it looks in the input")

        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addLayout(top)
        self.splitter = QSplitter(Qt.Orientation.Vertical, self)
        self.splitter.setChildrenCollapsible(False)
        self.splitter.addWidget(self.plots)
        layout.addWidget(self.splitter, 1)
        layout.addLayout(bottom)
        layout.addWidget(self.hover_label)
        layout.addWidget(self.field_label)
        self.controls = layout  # the main window adds the backprop view's selector, a row below

        for keys, slot, text in ((("Right", "N"), self.next_channel, "Next channel"),
                                 (("Left", "P"), self.previous_channel, "Previous channel")):
            for key in keys:
                shortcut = QShortcut(QKeySequence(key), self)
                shortcut.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
                shortcut.setWhatsThis(text)  # the shortcut sheet's words
                shortcut.setProperty("where", "Channel view")
                shortcut.activated.connect(slot)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)

        self._hover_proxy = pg.SignalProxy(self.plots.scene().sigMouseMoved, rateLimit=60,
                                           slot=lambda args: self.show_hover(args[0]))
        self.plots.scene().sigMouseClicked.connect(self._clicked)
        state.result_changed.connect(self._forget_result)
        for signal in (state.result_changed, state.layer_changed, state.channel_changed,
                       state.display_changed, state.model_changed, state.index_changed,
                       state.fields_ready):
            signal.connect(self.refresh)
        self.refresh()

    def _forget_result(self, result: Any) -> None:
        # even while hidden: the previous capture's arrays must not stay alive
        if result is not self._input_for:
            self._input_rgb, self._input_for = None, None
        self._layer_array, self._layer_key = None, None
        self._layer_levels = (None, (), (0.0, 1.0))

    # --- what is shown -------------------------------------------------------------

    def _layer(self) -> Optional[np.ndarray]:
        result, layer = self.state.result, self.state.layer
        if result is None or not layer or layer not in result:
            return None
        key = (id(result), layer)
        if key != self._layer_key:
            self._layer_array = np.asarray(result[layer], dtype=np.float32)
            self._layer_key = key
        return self._layer_array

    def _levels(self, layer: np.ndarray, channel: int, display) -> tuple[float, float]:
        """``colour_levels`` of the shown channel: the grid's limits for it. Per layer they
        depend on the layer only, and are an O(layer size) percentile: kept, so a channel
        step does not redo them."""
        if display.normalize != "layer":
            return colour_levels(layer, channel, display)
        options = (display.colormap, display.clip_percentile)
        array, kept_options, levels = self._layer_levels
        if array is not layer or kept_options != options:
            levels = colour_levels(layer, channel, display)
            self._layer_levels = (layer, options, levels)
        return levels

    @property
    def channels(self) -> int:
        layer = self._layer()
        return 0 if layer is None else int(layer.shape[0])

    @property
    def current_channel(self) -> int:
        """The channel shown: state.channel, or 0 while none is chosen."""
        n = self.channels
        return min(max(self.state.channel, 0), n - 1) if n else -1

    def _input_picture(self) -> Optional[np.ndarray]:
        result, model = self.state.result, self.state.model
        if result is None or model is None:
            return None
        if self._input_for is not result:
            try:
                self._input_rgb = np.asarray(model.deprocess(result.input))
            except Exception:  # a model without deprocess must not break the map
                self._input_rgb = None
            self._input_for = result
        return self._input_rgb

    def redraw(self) -> None:
        """Draw the selected layer from the state (TabPage calls this only while shown)."""
        layer = self._layer()
        if layer is None:
            self.channel_map = None
            self.stats = {}
            for item in (self.map_item, self.input_item, self.overlay_item):
                item.clear()
            self.field = None
            self._draw_field(None)
            self.header.setText("No layer captured yet: load a model and an image.")
            self.stats_label.setText("")
            self.previous_button.setEnabled(False)
            self.next_button.setEnabled(False)
            self.redrawn.emit()
            return
        c, n = self.current_channel, layer.shape[0]
        info = getattr(self.state.result, "info", {}).get(self.state.layer)
        kind = f" ({info.kind}, {layer.shape[1]}x{layer.shape[2]})" if info is not None else ""
        label = self.state.unit_label(self.state.layer, c)
        self.header.setText(f"channel {c} of {n} in {self.state.layer}{kind}"
                            + (f"; {label.text()}" if label is not None else ""))
        self.previous_button.setEnabled(c > 0)
        self.next_button.setEnabled(c < n - 1)

        display = self.state.display
        self.channel_map = layer[c]
        lo, hi = self._levels(layer, c, display)
        lut = grids.colormap_lut(display.colormap)[1:]
        self.color_bar.setColorMap(pg.ColorMap(np.linspace(0.0, 1.0, len(lut)), lut))
        self.map_item.setImage(self.channel_map, autoLevels=False, levels=(lo, hi))
        self.color_bar.setLevels(values=(lo, hi))
        self.map_box.autoRange(padding=0.02)

        picture = self._input_picture()
        if picture is not None:
            import torch  # loaded by then (a capture exists); deferred so the window opens first
            import torch.nn.functional as F

            height, width = picture.shape[:2]
            up = F.interpolate(torch.from_numpy(np.ascontiguousarray(self.channel_map))[None, None],
                               size=(height, width), mode="bilinear", align_corners=False)[0, 0].numpy()
            self.input_item.setImage(picture, autoLevels=False, levels=(0, 255))
            self.overlay_item.setImage(up, autoLevels=False, levels=(lo, hi), lut=lut)
            self.overlay_box.autoRange(padding=0.02)
        else:
            self.input_item.clear()
            self.overlay_item.clear()

        self.field = field_cache.field_for(self.state.model, self.state.layer)
        if self.field is not None and tuple(self.field.output_shape) != tuple(layer.shape[1:]):
            self.field = None  # a capture at another input size than the model's
        if self._pinned_layer != self.state.layer:
            self.pinned, self._pinned_layer = None, self.state.layer
        self._draw_field(self.pinned)
        self._show_pinned()

        self.stats = channel_stats(self.channel_map)
        s = self.stats
        # each "name value" stays on one line; lines break only between them
        pairs = (f"min {s['min']:.4g}", f"mean {s['mean']:.4g}", f"max {s['max']:.4g}",
                 f"zeros {s['zeros'] * 100:.1f} %", f"negative {s['negative'] * 100:.1f} %")
        self.stats_label.setText("&nbsp;&nbsp; ".join(
            f"<span style='white-space:nowrap'>{pair}</span>" for pair in pairs))
        self.redrawn.emit()

    # --- interaction --------------------------------------------------------------

    def next_channel(self) -> None:
        if self.channels and self.current_channel < self.channels - 1:
            self.state.set_channel(self.current_channel + 1)

    def previous_channel(self) -> None:
        if self.channels and self.current_channel > 0:
            self.state.set_channel(self.current_channel - 1)

    def _opacity_changed(self, value: int) -> None:
        self.overlay_item.setOpacity(value / 100.0)

    def map_position(self, item: pg.ImageItem, scene_pos: QPointF) -> Optional[tuple[int, int]]:
        """(row, col) in the feature map under a scene position over either picture."""
        if self.channel_map is None or item_pixel(item, scene_pos) is None:
            return None
        p = item.mapFromScene(scene_pos)
        (h, w), (mh, mw) = item.image.shape[:2], self.channel_map.shape
        return int(p.y() * mh / h), int(p.x() * mw / w)

    def input_pixel(self, scene_pos: QPointF) -> Optional[tuple[int, int]]:
        """(row, col) of the input picture under a scene position, or None."""
        return item_pixel(self.input_item, scene_pos) if self.channel_map is not None else None

    def _draw_field(self, position: Optional[tuple[int, int]],
                    pixel: Optional[tuple[int, int]] = None) -> None:
        """Outline ``position``'s receptive field on the input (and the position on the
        map); with ``pixel``, also the hovered input pixel and the positions seeing it."""
        self.rf_position, self.rf_box, self.seeing = self.outlines.draw(self.field, position, pixel)

    def show_position(self, y: int, x: int) -> None:
        """Pin map position (y, x): its receptive field stays drawn on the input."""
        self.pinned, self._pinned_layer = (int(y), int(x)), self.state.layer
        self._draw_field(self.pinned)
        self._show_pinned()
        self.position_pinned.emit(int(y), int(x))

    def show_pattern(self, picture: Optional[np.ndarray], title: str = "") -> None:
        """Show ``picture`` ((H, W, 3) uint8, the backprop view's pattern) in the photo's
        place, the map overlay hidden; None brings the photo and the overlay back."""
        self.pattern = picture
        shown = picture if picture is not None else self._input_picture()
        if shown is not None and self.channel_map is not None:
            self.input_item.setImage(shown, autoLevels=False, levels=(0, 255))
        self.overlay_item.setVisible(picture is None)
        self.opacity_slider.setEnabled(picture is None)  # no map over the pattern
        self.overlay_title.setText(title if picture is not None else "over the input image")

    def add_detail_panel(self, panel: QWidget) -> None:
        """Put ``panel`` under the maps (the arithmetic at the pinned position); it scrolls
        rather than squeezing the maps (they kept ~115 px once)."""
        self.splitter.addWidget(PanelScroll(panel))
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 2)
        self.plots.setMinimumHeight(MAPS_MINIMUM_HEIGHT)

    def _show_pinned(self) -> None:
        """The pinned line, read from the map shown now (another channel or capture gives
        another value); taken away when the pin is gone."""
        if self.pinned is not None and self.channel_map is not None and self.rf_position is not None:
            y, x = self.pinned
            self.hover_label.setText(f"pinned y {y}, x {x}: {self.channel_map[y, x]:.4g}")
            self.field_label.setText(field_cache.field_sentence((y, x), self.rf_box, self.seeing))
        elif self.hover_label.text().startswith("pinned"):
            self.hover_label.setText("")
            self.field_label.setText("")

    def _position_at(self, scene_pos: QPointF) -> tuple[Optional[tuple[int, int]], Optional[tuple[int, int]]]:
        """(map position, input pixel or None) under a scene position over either picture."""
        pos = self.map_position(self.map_item, scene_pos)
        if pos is not None:
            return pos, None
        pixel = self.input_pixel(scene_pos)
        if pixel is None:
            return None, None
        if self.field is not None:
            return self.field.position(*pixel), pixel
        return self.map_position(self.input_item, scene_pos), pixel

    def _clicked(self, event) -> None:
        if event.button() != Qt.MouseButton.LeftButton:
            return
        pos, _pixel = self._position_at(event.scenePos())
        if pos is not None:
            self.show_position(*pos)

    def show_hover(self, scene_pos: QPointF) -> str:
        """Show (and return) the position and value under ``scene_pos``, drawing its
        receptive field; away from both pictures the pinned field (if any) comes back."""
        pos, pixel = self._position_at(scene_pos)
        if pos is None:
            self._draw_field(self.pinned)
            self.hover_label.setText("")
            self.field_label.setText(field_cache.field_sentence(self.pinned, self.rf_box, self.seeing) if self.rf_box else "")
            return ""
        y, x = pos
        if (QApplication.keyboardModifiers() & Qt.KeyboardModifier.ShiftModifier) and pos != self.pinned:
            self.show_position(y, x)  # Shift + hover: the arithmetic follows the mouse
        self._draw_field(pos, pixel)
        text = f"y {y}, x {x}: {self.channel_map[y, x]:.4g}"
        if pixel is not None:
            text = f"input ({pixel[0]}, {pixel[1]}) -> map " + text
        self.hover_label.setText(text)
        self.field_label.setText(field_cache.field_sentence((y, x), self.rf_box, self.seeing))
        return text
