"""Every captured layer in network order, with its kind, output shape and depth; a slider.

By default the list holds the convolution and pooling layers; "Every module" switches
it (and the app's capture) to every module with a feature map: activations, batch
norms, blocks, stages (``state.every_module``).

Up/Down and PgUp/PgDn move through the list (Qt's own list keys) and the current item goes
straight to ``state.set_layer``, so the grid follows at once. Ctrl/Shift-click selects
several layers for "Export selected layers..."; the current item stays the one shown. The slider sweeps from the
first layer to the last: edges to shapes.
"""
from __future__ import annotations

from typing import Any, Optional

from PySide6.QtCore import QRect, Qt, Signal
from PySide6.QtGui import QColor, QPainter
from PySide6.QtWidgets import (
    QAbstractItemView, QCheckBox, QHBoxLayout, QHeaderView, QLabel, QSlider, QStyledItemDelegate,
    QTreeWidget, QTreeWidgetItem, QVBoxLayout, QWidget,
)

from featurescope.gui.model.state import AppState

DEPTH_ROLE = Qt.UserRole + 1
NAME_ROLE = Qt.UserRole


def shape_text(shape: Any) -> str:
    try:
        c, h, w = shape
        return f"{c}×{h}×{w}"
    except (TypeError, ValueError):
        return "?"


def short_kind(kind: str) -> str:
    """'Conv2d' -> 'Conv', 'AdaptiveAvgPool2d' -> 'AdaptAvgPool': the list stays narrow."""
    return kind.removesuffix("2d").replace("Adaptive", "Adapt")


class DepthDelegate(QStyledItemDelegate):
    """A bar whose length is the layer's depth in the network (first = short)."""

    def paint(self, painter: QPainter, option: Any, index: Any) -> None:
        super().paint(painter, option, index)
        depth = index.data(DEPTH_ROLE)
        if depth is None:
            return
        rect: QRect = option.rect.adjusted(3, 5, -3, -5)
        painter.save()
        painter.setPen(Qt.NoPen)
        painter.setBrush(QColor(128, 128, 128, 60))
        painter.drawRect(rect)
        fill = QRect(rect)
        fill.setWidth(max(2, int(rect.width() * float(depth))))
        # light (shallow: edges) to dark (deep: shapes)
        painter.setBrush(QColor.fromHsvF(0.58, 0.35 + 0.55 * float(depth), 0.95 - 0.4 * float(depth)))
        painter.drawRect(fill)
        painter.restore()


class LayerPanel(QWidget):
    """Layer list + slider. Reads ``state.model``/``state.result``, sets ``state.layer``."""

    layer_activated = Signal(str)

    def __init__(self, state: AppState, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.state = state
        self._updating = False

        self.every_module = QCheckBox("Every module")
        self.every_module.setObjectName("everyModule")
        self.every_module.setToolTip("List every module with a feature map (activations, batch "
                                     "norms, blocks, stages), not only convolutions and pooling")
        self.every_module.setChecked(state.every_module)
        self.tree = QTreeWidget()
        self.tree.setObjectName("layerList")
        self.tree.setColumnCount(4)
        self.tree.setHeaderLabels(["Layer", "Type", "C×H×W", "Depth"])
        self.tree.setRootIsDecorated(False)
        self.tree.setUniformRowHeights(True)
        self.tree.setAlternatingRowColors(True)
        self.tree.setSelectionMode(QAbstractItemView.ExtendedSelection)
        self.tree.setItemDelegateForColumn(3, DepthDelegate(self.tree))
        header = self.tree.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(0, QHeaderView.Stretch)
        header.setSectionResizeMode(1, QHeaderView.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.ResizeToContents)
        header.setSectionResizeMode(3, QHeaderView.Fixed)
        header.resizeSection(3, 40)
        # "features.denseblock4.denselayer16.conv2": the end tells layers apart
        self.tree.setTextElideMode(Qt.ElideLeft)
        self.tree.setMinimumWidth(200)
        self.tree.setToolTip("Up/Down, PgUp/PgDn: move through the layers; "
                             "Ctrl/Shift-click: select several to export")
        self.tree.setContextMenuPolicy(Qt.ActionsContextMenu)

        self.slider = QSlider(Qt.Horizontal)
        self.slider.setObjectName("layerSlider")
        self.slider.setMinimum(0)
        self.slider.setMaximum(0)
        self.slider.setToolTip("Sweep from the first layer (edges) to the last (shapes)")
        self.position = QLabel("")

        sweep = QHBoxLayout()
        sweep.addWidget(QLabel("edges"))
        sweep.addWidget(self.slider, 1)
        sweep.addWidget(QLabel("shapes"))
        box = QVBoxLayout(self)
        box.setContentsMargins(4, 4, 4, 4)
        box.addWidget(self.every_module)
        box.addWidget(self.tree, 1)
        box.addLayout(sweep)
        box.addWidget(self.position)

        self.tree.currentItemChanged.connect(self._on_current_item_changed)
        self.slider.valueChanged.connect(self._on_slider)
        state.model_changed.connect(self._on_model_changed)
        state.result_changed.connect(self._on_result_changed)
        state.layer_changed.connect(self._on_layer_changed)
        state.every_module_changed.connect(self._on_every_module_changed)
        self.every_module.toggled.connect(state.set_every_module)

    # -- filling -----------------------------------------------------------------------
    def _layer_infos(self) -> list:
        result, model = self.state.result, self.state.model
        if result is not None:
            infos = [result.info[name] for name in result.layers]
        elif model is not None:
            # every_layer_info is a forward pass: read it only when a worker made it
            made = self.state.every_module and "every_layer_info" in getattr(model, "__dict__", {})
            infos = list(getattr(model, "every_layer_info" if made else "layer_info", []) or [])
        else:
            infos = []
        return self.state.listed(infos)

    def populate(self) -> None:
        infos = self._layer_infos()
        rows = [(info.name, shape_text(info.output_shape)) for info in infos]
        if rows == self._rows():
            self._select(self.state.layer)
            return
        self._updating = True
        try:
            self.tree.clear()
            n = max(1, len(infos) - 1)
            items = []
            for i, info in enumerate(infos):
                item = QTreeWidgetItem([info.name, short_kind(info.kind), shape_text(info.output_shape), ""])
                item.setData(0, NAME_ROLE, info.name)
                item.setData(3, DEPTH_ROLE, i / n)
                tip = f"{i + 1} of {len(infos)}: {info.name} ({info.kind}, output {shape_text(info.output_shape)})"
                for column in range(4):
                    item.setToolTip(column, tip)
                items.append(item)
            self.tree.addTopLevelItems(items)
            self.slider.setMaximum(max(0, len(infos) - 1))
        finally:
            self._updating = False
        self._select(self.state.layer)

    def selected_layers(self) -> list[str]:
        """The selected layers in network order (the current one when none is)."""
        selected = {item.data(0, NAME_ROLE) for item in self.tree.selectedItems()}
        names = [name for name in self.layer_names() if name in selected]
        return names or ([self.state.layer] if self.state.layer else [])

    def add_context_actions(self, actions: list) -> None:
        """Actions offered on a right-click in the list (e.g. export the selection)."""
        self.tree.addActions(actions)

    def _rows(self) -> list[tuple[str, str]]:
        """(name, shape text) per row: the same names at another input size are new rows."""
        return [(self.tree.topLevelItem(i).data(0, NAME_ROLE), self.tree.topLevelItem(i).text(2))
                for i in range(self.tree.topLevelItemCount())]

    def layer_names(self) -> list[str]:
        return [self.tree.topLevelItem(i).data(0, NAME_ROLE) for i in range(self.tree.topLevelItemCount())]

    def _select(self, name: str) -> None:
        names = self.layer_names()
        if name not in names:
            self.position.setText(f"{len(names)} layers" if names else "")
            return
        row = names.index(name)
        self._updating = True
        try:
            item = self.tree.topLevelItem(row)
            if self.tree.currentItem() is not item:
                self.tree.setCurrentItem(item)
            self.tree.scrollToItem(item)
            self.slider.setValue(row)
        finally:
            self._updating = False
        self.position.setText(f"layer {row + 1} of {len(names)}")

    # -- state -> widgets -----------------------------------------------------------------
    def _on_model_changed(self, _model: Any) -> None:
        self.populate()

    def _on_result_changed(self, _result: Any) -> None:
        self.populate()

    def _on_layer_changed(self, name: str) -> None:
        self._select(name)

    def _on_every_module_changed(self, every: bool) -> None:
        if self.every_module.isChecked() != every:
            self.every_module.setChecked(every)
        self.populate()

    # -- widgets -> state -------------------------------------------------------------------
    def _on_current_item_changed(self, current: Optional[QTreeWidgetItem], _previous: Any) -> None:
        if self._updating or current is None:
            return
        self.state.set_layer(current.data(0, NAME_ROLE))

    def _on_slider(self, value: int) -> None:
        if self._updating:
            return
        names = self.layer_names()
        if 0 <= value < len(names):
            self.state.set_layer(names[value])

    def focus_list(self) -> None:
        self.tree.setFocus(Qt.OtherFocusReason)
