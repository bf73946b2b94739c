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

from typing import Any, Optional

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QCheckBox, QComboBox, QHBoxLayout, QLabel, QPushButton, QSpinBox,
                               QSplitter, QTabWidget, QVBoxLayout, QWidget)

from featurescope.core.render import grids
from featurescope.gui.views.visualize_atlas import AtlasSection
from featurescope.gui.views.visualize_hierarchy import HIERARCHY_TEXT, HierarchySection
from featurescope.gui.widgets.image_box import image_box
from featurescope.gui.widgets.tab_page import TabPage

PREVIEW_EVERY = 8



class VisualizeView(AtlasSection, HierarchySection, TabPage):
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

        atlas_page, hierarchy_page = self._build_atlas_page(), self._build_hierarchy_page()
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
        if made.failed:  # no better picture than a sample photo: a failure, said as such
            photo = float(made.photo[0])
            text = (f"no picture found: {made.activations[0]:.3g} does not beat a sample photo's "
                    f"{photo:.3g}{where}")
            self.note.setText(f"Channel {made.channels[0]}'s objective gives no useful gradient from "
                              f"noise or from a photo at {made.settings.get('steps', '?')} steps; "
                              "more steps may find one.")
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
