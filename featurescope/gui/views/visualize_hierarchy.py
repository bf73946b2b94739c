"""The hierarchy section of the Visualise tab: the strongest channels of a few layers,
first layer to last, at the atlas settings, one background unit per layer
("optvis_hierarchy"). A mixin of :class:`~featurescope.gui.views.visualize_view.
VisualizeView`, which builds the widgets (``hierarchy_item``, ``hierarchy_label``)."""
from __future__ import annotations

from typing import Any, Optional

import pyqtgraph as pg
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from featurescope.gui.widgets.image_box import image_box

HIERARCHY_TEXT = ("From edges to shapes: the strongest channels of a few layers for this photo, "
                  "first layer to last.")


class HierarchySection:
    """Building, requesting and drawing the hierarchy poster."""

    def _build_hierarchy_page(self) -> QWidget:
        """The hierarchy's page of the lower tabs: what it says, its button, the poster."""
        hierarchy_page = QWidget(self)
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
        hierarchy_layout = QVBoxLayout(hierarchy_page)
        hierarchy_layout.setContentsMargins(0, 0, 0, 0)
        top = QHBoxLayout()
        top.addWidget(self.hierarchy_label, 1)
        top.addWidget(self.hierarchy_button)
        hierarchy_layout.addLayout(top)
        hierarchy_layout.addWidget(self.hierarchy_view, 1)
        return hierarchy_page

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

                info = model.find_layer_info(layer)
                count = min(per_layer, info.out_channels)
                channels = strongest_channels(model, image, layer, count) if image is not None \
                    else list(range(count))
                made = cache.visualize(model, layer, channels, steps=steps, size=size,
                                       objective=natural_objective(model, layer), cancel=cancel)
                return key, HierarchyRow(layer, order.get(layer, 0) / max(1, len(order) - 1), made)
            return run

        self.hierarchy_label.setText(f"Building the hierarchy of {len(layers)} layers in the background...")
        # labelled: it shows in the Jobs list with its progress (layers done) and a Cancel
        self.jobs.submit_units("optvis_hierarchy", [unit(layer) for layer in layers],
                               label=f"Hierarchy of {len(layers)} layers",
                               on_partial=self._hierarchy_row, on_error=self._hierarchy_failed,
                               on_cancelled=lambda: self._hierarchy_cancelled(key))

    def _hierarchy_cancelled(self, key) -> None:
        if key == self._hierarchy_key:
            self.hierarchy_label.setText(
                f"Hierarchy stopped after {len(self.hierarchy_rows)} layers (cancelled); choose "
                "Build hierarchy to start it again.")

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
