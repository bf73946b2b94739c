"""The feature-map mosaic of the selected layer: one ImageItem, pan/zoom, hover, click.

The item holds ``grid_indices(...)`` (uint8: 0 separators, 1..255 values) with
``colormap_lut(...)`` as its lookup table, so what is on screen is exactly
``feature_grid``'s output. Grids are cached per (layer, display options) for the
current capture, and the other layers are built in the background after each capture,
so moving through layers only swaps arrays.

The separators are also drawn over the mosaic as cosmetic lines one screen pixel wide:
a mosaic drawn smaller than its pixels (vgg16's first layers are 1800 pixels square)
is sampled nearest-neighbour, which drops some one-pixel separators and keeps others,
so tiles looked merged into uneven blocks. The lines keep every boundary visible at
any zoom without resampling the image on each paint.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Optional

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, Qt, Signal
from PySide6.QtGui import QColor, QPainterPath, QPen
from PySide6.QtWidgets import QGraphicsPathItem, QLabel, QVBoxLayout, QWidget

from featurescope.gui.caches import dataflow as dataflow_cache
from featurescope.gui.caches.layer_stats import stored_tensor, tensor_ref
from featurescope.core.render.options import DisplayOptions, grid_arguments
from featurescope.gui.model.state import AppState

CACHE_BYTES = 256 * 1024 * 1024  # index mosaics kept for the current capture
BACKGROUND_LAYERS = 400  # build at most this many layers' grids after a capture


def layer_array(result: Any, layer: str) -> np.ndarray:
    """The (C, H, W) float array of ``layer`` in a capture, without copying."""
    value = result[layer]
    if hasattr(value, "detach"):
        value = value.detach().float().cpu().numpy()  # no copy when already float32 CPU
    return np.asarray(value)


def build_grid(result: Any, layer: str, options: DisplayOptions):
    """``grid_indices`` of one layer: (uint8 (H, W) indices, GridLayout)."""
    from featurescope.core.render.grids import grid_indices

    return grid_indices(layer_array(result, layer), **grid_arguments(options))


def separator_path(layout: Any) -> QPainterPath:
    """One line through the middle of every gap between tiles of ``layout`` (a
    GridLayout), in mosaic pixel coordinates: ``rows - 1`` horizontal lines across the
    mosaic's width, then ``columns - 1`` vertical lines down its height."""
    height, width = layout.shape
    path = QPainterPath()
    if layout.gap <= 0:
        return path
    half = layout.gap / 2.0
    for row in range(1, layout.rows):
        y = row * (layout.tile_height + layout.gap) - half
        path.moveTo(0.0, y)
        path.lineTo(float(width), y)
    for column in range(1, layout.columns):
        x = column * (layout.tile_width + layout.gap) - half
        path.moveTo(x, 0.0)
        path.lineTo(x, float(height))
    return path


def separator_item() -> QGraphicsPathItem:
    """An empty path item drawing one-screen-pixel lines in the separator colour."""
    from featurescope.core.render.grids import SEPARATOR_RGB

    item = QGraphicsPathItem()
    pen = QPen(QColor(*SEPARATOR_RGB), 0)  # width 0: one device pixel at any zoom
    pen.setCosmetic(True)
    item.setPen(pen)
    item.setZValue(1)  # over the image
    item.setAcceptedMouseButtons(Qt.MouseButton.NoButton)  # clicks reach the mosaic
    return item


class FeatureGridView(QWidget):
    """Shows the selected layer of ``state.result`` as one colour-mapped mosaic.

    ``channel_activated(int)`` is emitted when a channel is clicked (after
    ``state.set_channel``), so the window can switch to the channel tab;
    ``channel_hovered(int)`` when the mouse moves onto another channel (-1: off the maps).
    """

    channel_activated = Signal(int)
    channel_hovered = Signal(int)

    def __init__(self, state: AppState, parent: Optional[QWidget] = None, jobs: Any = None):
        super().__init__(parent)
        self.state = state
        self.jobs = jobs
        self.layout_: Any = None  # GridLayout of what is shown
        self.shown_key: Optional[tuple] = None
        self.shown_layer = ""  # whose output is on screen (the activation after a conv, see refresh)
        self._cache: OrderedDict[tuple, tuple] = OrderedDict()
        self._sources: dict[str, Any] = {}  # layer -> weak ref to the tensor its grids come from
        self._cache_bytes = 0

        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setBackground("#202124")
        self.graphics.ci.setContentsMargins(2, 2, 2, 2)
        self.view_box = self.graphics.addViewBox(lockAspect=True, invertY=True, enableMenu=False)
        self.view_box.setDefaultPadding(0.01)
        self.image_item = pg.ImageItem(axisOrder="row-major")
        self.view_box.addItem(self.image_item)
        self.separators = separator_item()
        self._separator_key: Optional[tuple] = None  # the geometry the path was built for
        self.view_box.addItem(self.separators, ignoreBounds=True)

        self.title = QLabel("Loading the network and the image...")
        self.title.setObjectName("gridTitle")
        self.title.setStyleSheet("font-weight: bold; padding: 2px 4px;")
        # A long header (a long layer name, the 1x1 note) wraps instead of widening the
        # tab, which would squeeze the docks beside it.
        self.title.setWordWrap(True)
        self.title.setMinimumWidth(1)
        self.readout = QLabel(" ")
        self.readout.setObjectName("gridReadout")
        self.readout.setStyleSheet("font-family: monospace; padding: 2px 4px;")
        self.readout.setTextInteractionFlags(Qt.TextSelectableByMouse)

        box = QVBoxLayout(self)
        box.setContentsMargins(0, 0, 0, 0)
        box.setSpacing(0)
        box.addWidget(self.title)
        box.addWidget(self.graphics, 1)
        box.addWidget(self.readout)

        scene = self.graphics.scene()
        self._hover_proxy = pg.SignalProxy(scene.sigMouseMoved, rateLimit=60,
                                           slot=self._on_mouse_moved)
        scene.sigMouseClicked.connect(self._on_mouse_clicked)
        self.setFocusPolicy(Qt.StrongFocus)

        state.result_changed.connect(self._on_result_changed)
        state.model_changed.connect(self._on_model_changed)
        # a hover line read from the old image or model must not outlive them
        state.image_changed.connect(self.clear_readout)
        state.error_reported.connect(self._on_error)
        state.layer_changed.connect(self.refresh)
        state.layer_changed.connect(self.clear_readout)  # it read the previous layer
        state.display_changed.connect(self._on_display_changed)

    # -- cache -------------------------------------------------------------------------
    def _key(self, layer: str, options: Optional[DisplayOptions] = None) -> tuple:
        options = options or self.state.display
        # upscale and colormap do not change the indices (the lut does the colour),
        # except through "signed" for diverging maps, which grid_arguments includes.
        return (layer, tuple(sorted(grid_arguments(options).items())))

    def _store(self, key: tuple, grid: tuple, source: Any = None) -> None:
        if key in self._cache:
            return
        self._cache[key] = grid
        if source is not None:
            self._sources[key[0]] = tensor_ref(source)
        self._cache_bytes += grid[0].nbytes
        while self._cache_bytes > CACHE_BYTES and len(self._cache) > 1:
            _, (old, _) = self._cache.popitem(last=False)
            self._cache_bytes -= old.nbytes

    def cached(self, layer: str) -> bool:
        return self._key(layer) in self._cache

    def grid_for(self, layer: str) -> tuple:
        """(indices, layout) of ``layer`` with the current options, cached."""
        key = self._key(layer)
        grid = self._cache.get(key)
        if grid is None:
            result = self.state.result
            grid = build_grid(result, layer, self.state.display)
            self._store(key, grid, stored_tensor(result, layer))
        else:
            self._cache.move_to_end(key)
        return grid

    def lut(self, colormap: Optional[str] = None) -> np.ndarray:
        """The colormap's table: core caches it, read-only and contiguous uint8."""
        from featurescope.core.render.grids import colormap_lut

        return colormap_lut(colormap or self.state.display.colormap)

    def _clear_cache(self) -> None:
        self._cache.clear()
        self._sources.clear()
        self._cache_bytes = 0
        self.shown_key = None

    def _keep_valid_grids(self, result: Any) -> None:
        """Keep the grids whose layer ``result`` stores as the same tensor (a result
        ``capture_missing`` derived from the shown one); drop the rest."""
        if result is None:
            self._clear_cache()
            return
        valid = {layer for layer, source in self._sources.items()
                 if layer in result and stored_tensor(result, layer) is source()}
        for key in [key for key in self._cache if key[0] not in valid]:
            self._cache_bytes -= self._cache.pop(key)[0].nbytes
        self._sources = {layer: self._sources[layer] for layer in valid}
        self.shown_key = None

    # -- reacting to the state ------------------------------------------------------
    def _on_model_changed(self, _model: Any) -> None:
        self.clear_readout()
        if self.state.image is not None:
            self.title.setText("Capturing activations...")
        else:
            self.title.setText("No image yet: open an image file (Ctrl+O), or drop one here.")

    def _on_error(self, _message: str) -> None:
        """A failed capture or image must not leave the header promising one."""
        if self.title.text() == "Capturing activations..." and self.state.result is None:
            self.title.setText("No feature maps: see the message above.")

    def clear_readout(self, *_args: Any) -> None:
        self.readout.setText(" ")
        self._hovered = -1

    def _on_result_changed(self, result: Any) -> None:
        self.clear_readout()
        self._keep_valid_grids(result)
        self.refresh()
        self._build_in_background()

    def _on_display_changed(self, _options: DisplayOptions) -> None:
        self.refresh()
        self._build_in_background()

    def refresh(self, *_args: Any) -> None:
        """Show the selected layer with the current options (from the cache if built)."""
        state = self.state
        result, layer = state.result, state.layer
        if result is None or not layer or layer not in result:
            self.image_item.clear()
            self._show_separators(None)
            self.layout_ = None
            self.shown_key = None
            if result is not None and layer in getattr(result, "missing", ()):
                self.title.setText(f"{layer}   capturing it again: the memory budget left it out...")
            return
        shown, note = dataflow_cache.shown_layer(state.model, result, layer,
                                                 state.display.after_activation)
        if note.endswith("activation...)"):
            self._trace_network()
        self.shown_layer = shown
        key = self._key(shown)
        indices, layout = self.grid_for(shown)
        previous_shape = self.image_item.image.shape if self.image_item.image is not None else None
        self.image_item.setImage(indices, autoLevels=False, levels=(0, 255), lut=self.lut())
        self._show_separators(layout)
        self.layout_ = layout
        self.shown_key = key
        info = result.info.get(layer) if hasattr(result, "info") else None
        kind = f"{info.kind}  " if info is not None else ""
        c, h, w = layout.channels, layout.tile_height, layout.tile_width
        note += f"   ({layout.note})" if layout.note else ""
        self.title.setText(f"{layer}   {kind}{c} channels of {h}x{w}{note}")
        if previous_shape != indices.shape:
            self.fit()

    def _trace_network(self) -> None:
        """Build the model's dataflow graph on the worker, then show the layer again."""
        model = self.state.model
        if self.jobs is None or model is None or getattr(self, "_tracing", None) is model:
            return
        self._tracing = model  # one request per model: refreshes meanwhile must not restart it
        self.jobs.submit("dataflow", lambda progress, cancel: dataflow_cache.prepare(model, progress, cancel),
                         label=f"Tracing {model.name}", on_result=lambda _graph: self.refresh(),
                         on_error=lambda _message, _error: self.refresh())

    def _show_separators(self, layout: Any) -> None:
        """Rebuild the separator lines when the tile geometry changes (not on every switch)."""
        key = None if layout is None else (layout.rows, layout.columns, layout.tile_height,
                                           layout.tile_width, layout.gap)
        if key != self._separator_key:
            self.separators.setPath(QPainterPath() if layout is None else separator_path(layout))
            self._separator_key = key

    def fit(self) -> None:
        """Fit the whole mosaic into the view."""
        if self.image_item.image is not None:
            h, w = self.image_item.image.shape[:2]
            self.view_box.setRange(xRange=(0, w), yRange=(0, h), padding=0.01)

    # -- background grids ---------------------------------------------------------------
    def _build_in_background(self) -> None:
        """Build every other layer's grid on the worker thread, nearest layers first."""
        result, jobs = self.state.result, self.jobs
        if jobs is None or result is None or not self.state.layer:
            return
        options = self.state.display
        layers = list(result.layers)
        here = layers.index(self.state.layer) if self.state.layer in layers else 0
        order = sorted(range(len(layers)), key=lambda i: (abs(i - here), i < here))
        # layers the memory budget left out are fetched only when selected
        todo = [layers[i] for i in order[:BACKGROUND_LAYERS]
                if layers[i] in result and self._key(layers[i], options) not in self._cache]
        if not todo:
            return
        keys = {layer: self._key(layer, options) for layer in todo}

        def unit(layer: str):  # one layer per unit: a click waits for one grid at most
            return lambda progress, cancel: (result, keys[layer], build_grid(result, layer, options))

        jobs.submit_units("grids", [unit(layer) for layer in todo], on_partial=self._on_background_grid)

    def _on_background_grid(self, piece: tuple) -> None:
        result, key, grid = piece
        if result is self.state.result:
            self._store(key, grid, stored_tensor(result, key[0]))

    # -- mouse --------------------------------------------------------------------------
    def locate(self, scene_pos: QPointF) -> Optional[tuple[int, int, int]]:
        """(channel, y, x) under a scene position, or None off the maps."""
        if self.layout_ is None or self.image_item.image is None:
            return None
        if not self.view_box.sceneBoundingRect().contains(scene_pos):
            return None
        point = self.image_item.mapFromScene(scene_pos)
        y, x = int(np.floor(point.y())), int(np.floor(point.x()))
        h, w = self.image_item.image.shape[:2]
        if not (0 <= y < h and 0 <= x < w):
            return None
        return self.layout_.locate(y, x)

    def readout_text(self, hit: Optional[tuple[int, int, int]]) -> str:
        if hit is None:
            return " "
        channel, y, x = hit
        result, layer = self.state.result, self.shown_layer or self.state.layer
        # one value from the stored tensor: result[layer] would convert a float16 layer whole
        raw = getattr(result, "raw", None)
        value = float(raw(layer)[0, channel, y, x] if raw is not None else result[layer][channel, y, x])
        return f"channel {channel}  ({y}, {x}) = {value:.4g}"

    def _on_mouse_moved(self, event: tuple) -> None:
        hit = self.locate(event[0])
        channel = hit[0] if hit is not None else -1
        if channel != getattr(self, "_hovered", -1):
            self._hovered = channel
            self.channel_hovered.emit(channel)
        try:
            self.readout.setText(self.readout_text(hit))
        except (KeyError, IndexError, TypeError):
            self.readout.setText(" ")

    def _on_mouse_clicked(self, event: Any) -> None:
        if event.button() != Qt.LeftButton or event.double():
            return
        hit = self.locate(event.scenePos())
        if hit is not None:
            self.activate_channel(hit[0])

    def activate_channel(self, channel: int) -> None:
        self.state.set_channel(int(channel))
        self.channel_activated.emit(int(channel))
