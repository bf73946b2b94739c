"""Visualise tab: what the selected channel looks for, and where the photo gives it.

Left, the channel's feature visualisation (core/optvis): optimised on the worker
thread as an "optvis" request (a new channel replaces the old), with a live preview
every few steps and a Cancel button. Right, the same channel's feature map for the
current photo. Below, the layer's atlas: every channel at small settings in one
mosaic, computed in the background lane a batch at a time ("optvis_atlas" units) and
filled in as batches arrive; a click on a tile selects that channel. Everything goes
through the disk cache (core/optvis/cache.py), so a second look is instant. For a
network that gives no gradients the tab says so instead.
"""
from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QCheckBox, QComboBox, QGraphicsRectItem, QHBoxLayout, QLabel, QPushButton,
                               QSpinBox, QSplitter, QTabWidget, QVBoxLayout, QWidget)

from featurescope.core.render import grids
from featurescope.gui.widgets.box_scroll_bar import BoxScrollBar
from featurescope.gui.widgets.image_box import image_box
from featurescope.gui.widgets.tab_page import TabPage

TILE_GAP = 2
ATLAS_BATCH = 8
PREVIEW_EVERY = 8
HIERARCHY_TEXT = ("From edges to shapes: the strongest channels of a few layers for this photo, "
                  "first layer to last.")



class VisualizeView(TabPage):
    """The selected channel's visualisation (live), its feature map, and the layer's atlas.

    ``cache``: an OptvisCache (default: the user cache folder). ``atlas_steps`` and
    ``atlas_size`` are the atlas tiles' settings (smaller than the main picture's).
    """

    def __init__(self, state, parent: Optional[QWidget] = None, jobs: Any = None,
                 cache: Any = None, atlas_steps: int = 64, atlas_size: int = 64) -> None:
        super().__init__(parent)
        self.state = state
        self.jobs = jobs
        self._cache = cache
        self.atlas_steps, self.atlas_size = int(atlas_steps), int(atlas_size)
        self.shown_key: Optional[tuple] = None  # what the big picture shows (final)
        self.wanted_key: Optional[tuple] = None  # what was last asked for
        self.from_cache = False  # the last picture came from the disk cache
        self.previews = 0  # previews received for the current request
        self._wanted_steps = 0
        # Nothing is optimised until asked (a click costs seconds of CPU): Visualise and
        # Build atlas work on the channel and layer selected then; only with "Follow the
        # selection" ticked does a new selection start its own. Cancel means stopped.
        self.asked_key: Optional[tuple] = None  # the channel Visualise was pressed for
        self.atlas_asked: Optional[tuple] = None  # the layer Build atlas was pressed for
        self._resume: dict[tuple, dict] = {}  # key -> where a cancelled optimisation stopped
        self._pictures: dict[tuple, Any] = {}  # key -> the last picture of it (a few)
        self.atlas_key: Optional[tuple] = None
        self.atlas_channels = 0
        self.atlas_done: set[int] = set()
        self._atlas_array: Optional[np.ndarray] = None
        self._atlas_columns = 1
        self._lut = grids.colormap_lut("viridis")[1:]

        self.header = QLabel(self)
        self.header.setWordWrap(True)
        font = self.header.font()
        font.setBold(True)
        self.header.setFont(font)
        self.note = QLabel(self)
        self.note.setWordWrap(True)
        self.note.setObjectName("visualizeNote")
        self.note.setStyleSheet("color: #9a6700;")

        self.channel_spin = QSpinBox(self)
        self.channel_spin.setObjectName("visualizeChannel")
        self.channel_spin.setToolTip("The channel to visualise (also chosen in the atlas below)")
        self.steps_spin = QSpinBox(self)
        self.steps_spin.setRange(1, 8192)
        self.steps_spin.setValue(256)
        self.steps_spin.setToolTip("Optimisation steps (more: a clearer picture, slower)")
        self.size_spin = QSpinBox(self)
        self.size_spin.setRange(16, 1024)
        self.size_spin.setValue(128)
        self.size_spin.setSuffix(" px")
        self.objective_combo = QComboBox(self)
        for name, tip in (("auto", "the whole map's mean; for the first layer its centre neuron"),
                          ("channel", "the whole map's mean"), ("neuron", "the centre position"),
                          ("negative", "the image the channel likes least")):
            self.objective_combo.addItem(name)
            self.objective_combo.setItemData(self.objective_combo.count() - 1, tip, Qt.ItemDataRole.ToolTipRole)
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.setEnabled(False)
        self.again_button = QPushButton("Visualise", self)
        self.again_button.setObjectName("visualizeStart")
        self.again_button.setToolTip("Optimise an image for the selected channel (from the cache "
                                     "when done before; after a Cancel it goes on from that step)")
        self.atlas_button = QPushButton("Build atlas", self)
        self.atlas_button.setObjectName("visualizeAtlas")
        self.atlas_button.setToolTip("Visualise every channel of the layer in the background, a batch "
                                     "at a time (progress and Cancel in the Jobs list too)")
        self.atlas_cancel_button = QPushButton("Cancel atlas", self)
        self.atlas_cancel_button.setObjectName("visualizeAtlasCancel")
        self.atlas_cancel_button.setEnabled(False)
        self.follow_box = QCheckBox("Follow", self)
        self.follow_box.setObjectName("visualizeFollow")
        self.follow_box.setToolTip("Follow the selection: visualise each channel (and build the atlas of each layer) you "
                                   "select from now on; otherwise only what you press the buttons for")
        controls, actions = QHBoxLayout(), QHBoxLayout()  # two rows: the tab may be narrow
        for label, widget in (("Channel", self.channel_spin), ("steps", self.steps_spin),
                              ("size", self.size_spin)):
            controls.addWidget(QLabel(label, self))
            controls.addWidget(widget)
        controls.addStretch(1)
        actions.addWidget(QLabel("objective", self))
        actions.addWidget(self.objective_combo)
        actions.addStretch(1)
        actions.addWidget(self.follow_box)
        actions.addWidget(self.again_button)
        actions.addWidget(self.cancel_button)

        self.plots = pg.GraphicsLayoutWidget(self)
        self.plots.setBackground(None)
        self.vis_box, self.vis_item = image_box()
        self.map_box, self.map_item = image_box()
        self.vis_label = self.plots.addLabel("what the channel looks for", row=0, col=0)
        self.map_label = self.plots.addLabel("where the photo gives it", row=0, col=1)
        self.plots.addItem(self.vis_box, row=1, col=0)
        self.plots.addItem(self.map_box, row=1, col=1)

        self.atlas_label = QLabel(self)
        self.atlas_label.setWordWrap(True)
        self.atlas_view = pg.GraphicsLayoutWidget(self)
        self.atlas_view.setBackground(None)
        self.atlas_box, self.atlas_item = image_box()
        self.atlas_view.addItem(self.atlas_box)
        self.atlas_marker = QGraphicsRectItem()
        self.atlas_marker.setPen(pg.mkPen((255, 80, 80), width=2, cosmetic=True))
        self.atlas_marker.setVisible(False)
        self.atlas_box.addItem(self.atlas_marker)
        self.atlas_box.scene().sigMouseClicked.connect(self._atlas_clicked)

        # edges to shapes: a row of strongest channels for a few layers, first to last
        self.hierarchy_button = QPushButton("Build hierarchy", self)
        self.hierarchy_button.setObjectName("visualizeHierarchy")
        self.hierarchy_button.setToolTip("For a few layers spread from the first to the last, the "
                                         "channels that respond most to the photo, visualised")
        self.hierarchy_label = QLabel(HIERARCHY_TEXT, self)
        self.hierarchy_label.setWordWrap(True)
        self.hierarchy_view = pg.GraphicsLayoutWidget(self)
        self.hierarchy_view.setBackground(None)
        self.hierarchy_box, self.hierarchy_item = image_box()
        self.hierarchy_view.addItem(self.hierarchy_box)
        self.hierarchy_rows: list = []
        self._hierarchy_key: Optional[tuple] = None
        atlas_page, hierarchy_page = QWidget(self), QWidget(self)
        atlas_layout = QVBoxLayout(atlas_page)
        atlas_layout.setContentsMargins(0, 0, 0, 0)
        atlas_top = QHBoxLayout()  # the atlas's own buttons, beside what it says
        atlas_top.addWidget(self.atlas_label, 1)
        atlas_top.addWidget(self.atlas_button)
        atlas_top.addWidget(self.atlas_cancel_button)
        atlas_layout.addLayout(atlas_top)
        # a wide layer's atlas is shown at tile size and scrolls (480 tiles fitted were 7 px)
        self.atlas_scroll = BoxScrollBar(self.atlas_box, self.atlas_item, atlas_page)
        atlas_row = QHBoxLayout()
        atlas_row.setSpacing(0)
        atlas_row.addWidget(self.atlas_view, 1)
        atlas_row.addWidget(self.atlas_scroll)
        atlas_layout.addLayout(atlas_row, 1)
        hierarchy_layout = QVBoxLayout(hierarchy_page)
        hierarchy_layout.setContentsMargins(0, 0, 0, 0)
        top = QHBoxLayout()
        top.addWidget(self.hierarchy_label, 1)
        top.addWidget(self.hierarchy_button)
        hierarchy_layout.addLayout(top)
        hierarchy_layout.addWidget(self.hierarchy_view, 1)
        self.lower_tabs = QTabWidget(self)
        self.lower_tabs.setObjectName("visualizeLowerTabs")
        self.lower_tabs.addTab(atlas_page, "Atlas")
        self.lower_tabs.addTab(hierarchy_page, "Hierarchy")
        # the hierarchy poster stands alone: it takes the pictures' room too, so its labels
        # are drawn near their own size (it was 210x120 px below them)
        self.lower_tabs.currentChanged.connect(
            lambda index: self.plots.setVisible(self.lower_tabs.widget(index) is not hierarchy_page))

        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(self.header)
        layout.addLayout(controls)
        layout.addLayout(actions)
        layout.addWidget(self.note)
        # the atlas and the hierarchy below the pictures, more room for either on a drag
        self.splitter = QSplitter(Qt.Orientation.Vertical, self)
        self.splitter.setChildrenCollapsible(False)
        self.splitter.addWidget(self.plots)
        self.splitter.addWidget(self.lower_tabs)
        self.splitter.setSizes([3000, 2000])  # shared in this proportion when first laid out
        self.plots.setMinimumHeight(160)
        self.lower_tabs.setMinimumHeight(200)
        layout.addWidget(self.splitter, 1)

        self.channel_spin.valueChanged.connect(self._channel_chosen)
        self.again_button.clicked.connect(self.start)
        self.atlas_button.clicked.connect(self.start_atlas)
        self.hierarchy_button.clicked.connect(self.start_hierarchy)
        self.cancel_button.clicked.connect(self.cancel)
        self.atlas_cancel_button.clicked.connect(self.cancel_atlas)
        self.follow_box.toggled.connect(lambda _on: self.refresh())
        self.steps_spin.editingFinished.connect(self.refresh)
        self.size_spin.editingFinished.connect(self.refresh)
        self.objective_combo.activated.connect(self.refresh)
        state.model_changed.connect(self._forget_model)
        for signal in (state.layer_changed, state.channel_changed, state.result_changed, state.model_changed):
            signal.connect(self.refresh)
        self.refresh()

    # --- what is asked for --------------------------------------------------------
    @property
    def following(self) -> bool:
        """A new channel or layer selected gets visualised without a button press."""
        return self.follow_box.isChecked()

    def key_now(self) -> Optional[tuple]:
        """What the big picture is for: (model, layer, channel, settings)."""
        model, layer = self.state.model, self.state.layer
        if model is None or not layer:
            return None
        return (id(model), layer, self.channel(), tuple(sorted(self.settings().items())))

    def start(self) -> None:
        """Visualise the selected channel now (going on from where a Cancel stopped it)."""
        self.asked_key = self.key_now()
        self.shown_key = None  # Visualise again: ask again (the cache answers at once)
        self.refresh()

    def start_atlas(self) -> None:
        """Build the selected layer's atlas now (in the background, a batch at a time)."""
        self.atlas_asked = (id(self.state.model), self.state.layer)
        self.refresh()

    @property
    def cache(self):
        if self._cache is None:
            from featurescope.core.optvis.cache import OptvisCache

            self._cache = OptvisCache()
        return self._cache

    def channel(self) -> int:
        return max(0, self.state.channel)

    def settings(self) -> dict:
        objective = self.objective_combo.currentText()
        if objective == "auto" and self.state.model is not None:
            from featurescope.core.optvis.hierarchy import natural_objective  # torch: lazily

            objective = natural_objective(self.state.model, self.state.layer)
        return {"steps": self.steps_spin.value(), "size": self.size_spin.value(),
                "objective": "channel" if objective == "auto" else objective}

    def _channels_of_layer(self) -> int:
        info = self.state.layer_info()
        return int(getattr(info, "out_channels", 0) or 0)

    def _channel_chosen(self, value: int) -> None:
        if value != self.state.channel and self.state.model is not None:
            self.state.set_channel(int(value))

    def _forget_model(self, model: Any) -> None:
        # even while hidden: the running jobs hold the previous network
        if self.jobs is not None:
            self.jobs.cancel("optvis")
            self.jobs.cancel("optvis_atlas")
        self.shown_key = self.wanted_key = self.atlas_key = None
        self.asked_key = self.atlas_asked = None
        self._resume.clear()
        self._pictures.clear()
        self.cancel_button.setEnabled(False)
        self.atlas_cancel_button.setEnabled(False)
        self.atlas_done = set()
        self._atlas_array = None
        if self.jobs is not None:
            self.jobs.cancel("optvis_hierarchy")
        self._hierarchy_key, self.hierarchy_rows = None, []
        self.hierarchy_label.setText(HIERARCHY_TEXT)
        self.vis_item.clear()
        self.map_item.clear()
        self.atlas_item.clear()
        self.hierarchy_item.clear()

    # --- drawing ----------------------------------------------------------------------
    def redraw(self) -> None:
        model, layer = self.state.model, self.state.layer
        if model is None or not layer:
            self.header.setText("Load a model and choose a layer to see what its channels look for.")
            return
        count = self._channels_of_layer()
        channel = self.channel()
        self.channel_spin.blockSignals(True)
        self.channel_spin.setRange(0, max(0, count - 1))
        self.channel_spin.setValue(channel)
        self.channel_spin.blockSignals(False)
        self.header.setText(f"{layer}, channel {channel} of {count}: the image it responds to most, "
                            f"and its feature map for the photo")
        self._draw_feature_map(layer, channel)
        key = self.key_now()
        if self.following or key == self.asked_key:
            self._request_visualization(model, layer, channel)
        if key != self.wanted_key:
            self._show_picture(key)
        if self.following or self.atlas_asked == (id(model), layer):
            self._request_atlas(model, layer, count)
        self._show_atlas_for(layer)
        self._place_marker(channel)

    def _show_picture(self, key: Optional[tuple]) -> None:
        """The picture made for ``key`` before, else an empty box that says what to press."""
        picture = self._pictures.get(key)
        if picture is not None:
            self.vis_item.setImage(picture[0], autoLevels=False, levels=(0, 255))
            self.vis_label.setText(picture[1])
            return
        self.vis_item.clear()
        stopped = self._stopped_step(key)
        self.vis_label.setText(f"stopped at step {stopped}: press Visualise to go on" if stopped
                               else "press Visualise: what it looks for")

    def _stopped_step(self, key: Optional[tuple]) -> Optional[int]:
        """The step a Cancel stopped ``key``'s optimisation at (Visualise goes on from it)."""
        saved = self._resume.get(key) or {}
        return next(iter(saved.values()))["step"] if saved else None

    def _keep_picture(self, key: tuple, image: Any, text: str) -> None:
        self._pictures.pop(key, None)
        self._pictures[key] = (image, text)
        while len(self._pictures) > 16:
            self._pictures.pop(next(iter(self._pictures)))

    def _draw_feature_map(self, layer: str, channel: int) -> None:
        result = self.state.result
        try:
            maps = result[layer] if result is not None else None
        except KeyError:
            maps = None
        if maps is None or maps.dim() != 3 or channel >= maps.shape[0]:
            self.map_item.clear()
            return
        array = maps[channel].numpy()
        low, high = float(array.min()), float(array.max())
        self.map_item.setImage(array, autoLevels=False, levels=(low, high if high > low else low + 1))
        self.map_item.setLookupTable(self._lut)
        self.map_label.setText(f"the photo: mean {array.mean():.3g}, max {high:.3g}")

    def _request_visualization(self, model, layer: str, channel: int) -> None:
        settings = self.settings()
        key = (id(model), layer, channel, tuple(sorted(settings.items())))
        if key in (self.shown_key, self.wanted_key) or self.jobs is None:
            return
        self.wanted_key = key
        self._wanted_steps = settings["steps"]
        self.previews = 0
        self.note.setText("")
        cache = self.cache
        resume = self._resume.setdefault(key, {})  # filled by a Cancel, read by the next go

        def work(progress, cancel, partial=None):
            def preview(_channels, images, step):
                if partial is not None:
                    partial((key, images[0], step))

            made = cache.visualize(model, layer, [channel], steps=settings["steps"], size=settings["size"],
                                   objective=settings["objective"], progress=progress, cancel=cancel,
                                   preview=preview, preview_every=PREVIEW_EVERY, resume=resume)
            return key, made

        self.cancel_button.setEnabled(True)
        self.jobs.submit("optvis", work, label=f"Visualising {layer} channel {channel}",
                         on_result=self._visualization_ready, on_partial=self._preview,
                         on_error=lambda message, error=None: self._failed(key, message),
                         on_cancelled=lambda: self._cancelled(key))

    def _preview(self, piece) -> None:
        key, image, step = piece
        if key != self.wanted_key:
            return
        self.previews += 1
        text = f"what the channel looks for (step {step} of {self._wanted_steps})"
        self._keep_picture(key, image, text)
        if key == self.key_now():
            self.vis_item.setImage(image, autoLevels=False, levels=(0, 255))
            self.vis_label.setText(text)

    def _visualization_ready(self, answer) -> None:
        key, made = answer
        if key != self.wanted_key:
            return
        self.cancel_button.setEnabled(False)
        self.shown_key, self.wanted_key = key, None
        self._resume.pop(key, None)
        if key == self.asked_key:
            self.asked_key = None  # done: a later selection asks again
        self.from_cache = bool(made.settings.get("cached"))
        where = " (from the cache)" if self.from_cache else ""
        text = f"what it looks for: activation {made.activations[0]:.3g}{where}"
        self._keep_picture(key, made.images[0], text)
        if key == self.key_now():
            self.vis_item.setImage(made.images[0], autoLevels=False, levels=(0, 255))
            self.vis_label.setText(text)

    def _failed(self, key: tuple, message: str) -> None:
        if key != self.wanted_key:
            return  # a request already replaced by a newer one
        self.cancel_button.setEnabled(False)
        self.wanted_key = None
        self.note.setText(self._explain(message))

    @staticmethod
    def _explain(message: str) -> str:
        return message  # the engine's sentence says what (e.g. an ONNX model gives no gradients)

    def _cancelled(self, key: tuple) -> None:
        if key != self.wanted_key:
            return  # replaced by a newer request, not stopped by the user
        self.cancel_button.setEnabled(False)
        self.wanted_key = self.asked_key = None
        self.follow_box.setChecked(False)  # cancelled means stopped until asked again
        step = self._stopped_step(key)
        stopped = f" at step {step}" if step else ""
        self.note.setText(f"Cancelled{stopped}; press Visualise to go on from there.")

    def cancel(self) -> None:
        """Stop the channel's optimisation (the preview so far stays); nothing starts
        again until Visualise is pressed (Follow the selection goes off)."""
        self.follow_box.setChecked(False)
        self.asked_key = None
        if self.jobs is not None:
            self.jobs.cancel("optvis")

    # --- atlas ------------------------------------------------------------------------
    def _request_atlas(self, model, layer: str, count: int) -> None:
        key = (id(model), layer, self.atlas_steps, self.atlas_size)
        if key == self.atlas_key or self.jobs is None or count < 1:
            return
        self.atlas_key, self.atlas_channels, self.atlas_done = key, count, set()
        columns = self._atlas_columns = self._readable_columns(count)
        rows = math.ceil(count / columns)
        step = self.atlas_size + TILE_GAP
        self._atlas_array = np.full((rows * step, columns * step, 3), 40, np.uint8)
        self.atlas_item.setImage(self._atlas_array, autoLevels=False, levels=(0, 255))
        self._show_atlas_top()
        self._atlas_text()
        cache, steps, size = self.cache, self.atlas_steps, self.atlas_size
        from featurescope.core.optvis.hierarchy import natural_objective  # torch: lazily

        objective = natural_objective(model, layer)  # the first conv: its centre neuron

        def unit(batch):
            def run(progress, cancel):
                made = cache.visualize(model, layer, batch, steps=steps, size=size, objective=objective,
                                       cancel=cancel)
                return key, made.channels, made.images
            return run

        batches = [list(range(i, min(count, i + ATLAS_BATCH))) for i in range(0, count, ATLAS_BATCH)]
        self.atlas_cancel_button.setEnabled(True)
        self.jobs.submit_units("optvis_atlas", [unit(b) for b in batches], label=f"Atlas of {layer}",
                               on_partial=self._atlas_piece, on_error=self._atlas_failed,
                               on_result=lambda _none: self._atlas_ended(key),
                               on_cancelled=lambda: self._atlas_ended(key, cancelled=True))

    def _atlas_ended(self, key: tuple, cancelled: bool = False) -> None:
        if key != self.atlas_key:
            return
        self.atlas_cancel_button.setEnabled(False)
        if cancelled:
            self.atlas_key = self.atlas_asked = None  # Build atlas starts it again (cached tiles come at once)
            self.follow_box.setChecked(False)
            self.atlas_label.setText(f"Atlas of {key[1]}: cancelled at {len(self.atlas_done)} of "
                                     f"{self.atlas_channels} channels; Build atlas goes on.")

    def cancel_atlas(self) -> None:
        """Stop building the atlas; nothing builds again until Build atlas is pressed."""
        self.follow_box.setChecked(False)
        self.atlas_asked = None
        if self.jobs is not None:
            self.jobs.cancel("optvis_atlas")

    def _show_atlas_for(self, layer: str) -> None:
        """The atlas shown is the selected layer's; another layer's stays aside (building
        on in the background when it was asked for) and comes back with its layer."""
        mine = self.atlas_key is not None and self.atlas_key[1] == layer and self._atlas_array is not None
        self.atlas_item.setVisible(mine)
        if mine:
            if self.atlas_key is not None:
                self._atlas_text()
            return
        self.atlas_marker.setVisible(False)
        elsewhere = ""
        if self.atlas_key is not None and self.atlas_cancel_button.isEnabled():
            elsewhere = (f" (the atlas of {self.atlas_key[1]} is still being built: "
                         f"{len(self.atlas_done)} of {self.atlas_channels}; see Jobs)")
        self.atlas_label.setText(f"Build atlas: every channel of {layer}, computed in the background{elsewhere}.")

    def _atlas_piece(self, piece) -> None:
        key, channels, images = piece
        if key != self.atlas_key or self._atlas_array is None:
            return
        step = self.atlas_size + TILE_GAP
        for channel, image in zip(channels, images):
            row, column = divmod(channel, self._atlas_columns)
            self._atlas_array[row * step: row * step + self.atlas_size,
                              column * step: column * step + self.atlas_size] = image
            self.atlas_done.add(channel)
        self.atlas_item.setImage(self._atlas_array, autoLevels=False, levels=(0, 255))
        self._show_atlas_top()
        self._atlas_text()

    def _atlas_failed(self, message: str, _error: Any = None) -> None:
        self.atlas_cancel_button.setEnabled(False)
        self.atlas_label.setText(f"Atlas: {self._explain(message)}")

    def _atlas_text(self) -> None:
        done, total = len(self.atlas_done), self.atlas_channels
        state = "" if done == total else " (computing in the background)"
        first = " (first layer: each channel's centre neuron, the edge or colour it detects)" \
            if self.atlas_key is not None and self.state.model is not None and \
            self.state.model.layers[:1] == [self.state.layer] else ""
        layer = self.atlas_key[1] if self.atlas_key is not None else self.state.layer
        if layer != self.state.layer:
            self._show_atlas_for(self.state.layer)
            return
        self.atlas_label.setText(f"Atlas of {layer}{first}: {done} of {total} channels{state}; "
                                 f"click one to look at it")

    def _readable_columns(self, count: int) -> int:
        """As many tiles a row as fit the atlas view at their own size (one tile a screen
        pixel a picture pixel); the rows beyond the view's height scroll."""
        step = self.atlas_size + TILE_GAP
        width = self.atlas_view.width() if self.atlas_view.isVisible() else 0
        if width < step:  # not laid out yet: a mosaic a little wider than tall
            return max(1, math.ceil(math.sqrt(count * 1.6)))
        return max(1, min(count, int((width - 8) // step)))

    def _show_atlas_top(self) -> None:
        """The first rows of the atlas across the whole width of the view."""
        height, width = self._atlas_array.shape[:2]
        view = self.atlas_box.boundingRect()
        shown = width * view.height() / max(1.0, view.width())
        self.atlas_box.setRange(xRange=(0, width), yRange=(0, min(height, shown)), padding=0)

    def atlas_channel_at(self, x: float, y: float) -> int:
        """The channel of the atlas tile at item coordinates (x, y), or -1."""
        step = self.atlas_size + TILE_GAP
        column, row = int(x // step), int(y // step)
        if x < 0 or y < 0 or column >= self._atlas_columns:
            return -1
        channel = row * self._atlas_columns + column
        return channel if channel < self.atlas_channels else -1

    def _atlas_clicked(self, event) -> None:
        if self._atlas_array is None or not self.atlas_item.isVisible():
            return
        point = self.atlas_item.mapFromScene(event.scenePos())
        channel = self.atlas_channel_at(point.x(), point.y())
        if channel >= 0:
            self.state.set_channel(channel)

    def _place_marker(self, channel: int) -> None:
        if self._atlas_array is None or channel >= self.atlas_channels or not self.atlas_item.isVisible():
            self.atlas_marker.setVisible(False)
            return
        step = self.atlas_size + TILE_GAP
        row, column = divmod(channel, self._atlas_columns)
        self.atlas_marker.setRect(column * step - 1, row * step - 1, self.atlas_size + 2, self.atlas_size + 2)
        self.atlas_marker.setVisible(True)
        top, bottom = self.atlas_box.viewRange()[1]
        if not (top <= row * step and (row + 1) * step <= bottom):  # scroll the tile into view
            start = max(0, row * step - (bottom - top) / 3)
            self.atlas_box.setYRange(start, start + (bottom - top), padding=0)

    # --- hierarchy --------------------------------------------------------------------
    def start_hierarchy(self, layers: Optional[list] = None, per_layer: int = 6) -> None:
        """Visualise the strongest channels (for the photo; else 0, 1, ...) of a few layers
        from first to last at the atlas settings, one background unit per layer."""
        model, image = self.state.model, self.state.image
        if model is None or self.jobs is None:
            return
        from featurescope.core.optvis.hierarchy import (hierarchy_layers, natural_objective,
                                                        strongest_channels)

        layers = list(layers) if layers else hierarchy_layers(model)
        key = (id(model), id(image), tuple(layers), self.atlas_steps, self.atlas_size)
        self._hierarchy_key, self.hierarchy_rows = key, []
        self.hierarchy_item.clear()
        cache, steps, size = self.cache, self.atlas_steps, self.atlas_size
        order = {name: i for i, name in enumerate(model.layers)}

        def unit(layer):
            def run(progress, cancel):
                from featurescope.core.optvis.hierarchy import HierarchyRow

                info = next(i for i in model.layer_info if i.name == layer)
                count = min(per_layer, info.out_channels)
                channels = strongest_channels(model, image, layer, count) if image is not None \
                    else list(range(count))
                made = cache.visualize(model, layer, channels, steps=steps, size=size,
                                       objective=natural_objective(model, layer), cancel=cancel)
                return key, HierarchyRow(layer, order.get(layer, 0) / max(1, len(order) - 1), made)
            return run

        self.hierarchy_label.setText(f"Building the hierarchy of {len(layers)} layers in the background...")
        self.jobs.submit_units("optvis_hierarchy", [unit(layer) for layer in layers],
                               on_partial=self._hierarchy_row, on_error=self._hierarchy_failed)

    def _hierarchy_row(self, piece) -> None:
        key, row = piece
        if key != self._hierarchy_key:
            return
        from featurescope.core.optvis.hierarchy import poster

        self.hierarchy_rows.append(row)
        picture = poster(self.hierarchy_rows, tile=max(48, self.atlas_size))
        self.hierarchy_item.setImage(picture, autoLevels=False, levels=(0, 255))
        self.hierarchy_label.setText(f"From edges to shapes: {len(self.hierarchy_rows)} layers, first to "
                                     "last, the channels that respond most to this photo.")

    def _hierarchy_failed(self, message: str, _error: Any = None) -> None:
        self.hierarchy_label.setText(self._explain(message))
