"""Display options dock: how feature maps become pictures, with undo/redo.

Every change the user makes here goes through ``undo_stack`` as one command that calls
``state.set_display``; changes made elsewhere (settings restore) only update the widgets.
The main window should put ``undo_action`` / ``redo_action`` (these very QActions, which
carry Ctrl+Z and Ctrl+Shift+Z) into its Edit menu rather than create its own with the same
shortcuts, which Qt would treat as ambiguous.
"""
from __future__ import annotations

from dataclasses import asdict
from typing import Any, Optional

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtGui import QKeyEvent, QKeySequence, QUndoCommand, QUndoStack
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QHBoxLayout,
                               QSizePolicy, QSpinBox, QWidget)

from featurescope.core.render import grids

NORMALIZE = (("channel", "per channel"), ("layer", "per layer"))
ORDER = (("index", "channel index"), ("mean", "strongest mean"), ("max", "strongest max"),
         ("sparsity", "most often active"))
DEFAULT_CLIP = 1.0  # percent cut off at each end: 1..99th percentile


class DisplayChange(QUndoCommand):
    """Set the display options to ``new``; undo sets them back to ``old``.

    Consecutive changes of one spin box (spinning columns 4, 5, 6, 7) merge into one step;
    each choice in a combo box is its own step.
    """

    MERGING = ("columns", "upscale", "clip_percentile")

    def __init__(self, state, old, new, field: str) -> None:
        super().__init__(f"change {field.replace('_', ' ')}")
        self.state, self.old, self.new, self.field = state, old, new, field

    def id(self) -> int:  # noqa: A003 - Qt's name
        return 4711 if self.field in self.MERGING else -1

    def mergeWith(self, other: QUndoCommand) -> bool:  # noqa: N802 - Qt's name
        if not isinstance(other, DisplayChange) or other.field != self.field:
            return False
        self.new = other.new
        return True

    def redo(self) -> None:
        self.state.set_display(**asdict(self.new))

    def undo(self) -> None:
        self.state.set_display(**asdict(self.old))


class DisplayOptionsPanel(QWidget):
    """Colormap, normalisation, channel order, columns, upscale and percentile clipping."""

    def __init__(self, state, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.state = state
        self.undo_stack = QUndoStack(self)
        self.undo_action = self.undo_stack.createUndoAction(self, "&Undo")
        self.undo_action.setShortcuts([QKeySequence("Ctrl+Z")])
        self.redo_action = self.undo_stack.createRedoAction(self, "&Redo")
        self.redo_action.setShortcuts([QKeySequence("Ctrl+Shift+Z"), QKeySequence("Ctrl+Y")])
        for action in (self.undo_action, self.redo_action):
            action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
            self.addAction(action)

        self.colormap = QComboBox(self)
        self.colormap.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.colormap.setMinimumContentsLength(7)
        self.colormap.addItems(list(grids.COLORMAPS))
        self.colormap.setToolTip("Colours from low to high activation; coolwarm is centred on zero.")
        self.normalize = QComboBox(self)
        self.normalize.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.normalize.setMinimumContentsLength(8)
        for key, text in NORMALIZE:
            self.normalize.addItem(text, key)
        self.normalize.setToolTip("Per channel: each map uses its full colour range.\n"
                                  "Per layer: one scale for all maps, so strong and weak maps compare.")
        self.order = QComboBox(self)
        self.order.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.order.setMinimumContentsLength(8)
        for key, text in ORDER:
            self.order.addItem(text, key)
        self.order.setToolTip("Order of the maps in the grid; channel numbers stay the true ones.")
        self.columns = QSpinBox(self)
        self.columns.setRange(0, 512)
        self.columns.setSpecialValueText("auto")
        self.columns.setToolTip("Maps per row; auto makes the grid near-square.")
        self.upscale = QSpinBox(self)
        self.upscale.setRange(1, 32)
        self.upscale.setSuffix("x")
        self.upscale.setToolTip("Integer enlargement of exported grids, so 7x7 maps stay readable.")
        self.clip = QCheckBox("clip", self)
        self.clip_value = QDoubleSpinBox(self)
        self.clip_value.setRange(0.1, 25.0)
        self.clip_value.setDecimals(1)
        self.clip_value.setSingleStep(0.5)
        self.clip_value.setSuffix(" % at each end")
        # may be narrower than its suffix wants, so the dock (and the window) can be narrow
        self.clip_value.setSizePolicy(QSizePolicy.Preferred, QSizePolicy.Fixed)
        self.clip_value.setValue(DEFAULT_CLIP)
        self.clip.setToolTip("Clip to the p..(100-p)th percentile, so a few extreme values do not wash out the rest.")
        clip_row = QHBoxLayout()
        clip_row.setContentsMargins(0, 0, 0, 0)
        clip_row.addWidget(self.clip)
        clip_row.addWidget(self.clip_value, 1)

        self.after_activation = QCheckBox("show after activation", self)
        self.after_activation.setObjectName("afterActivation")
        self.after_activation.setToolTip(
            "A convolution followed by batch norm and an activation shows the activation's "
            "output: what the next layer receives (found in the traced graph)")

        form = QFormLayout(self)
        form.setContentsMargins(6, 6, 6, 6)
        form.addRow("Colormap", self.colormap)
        form.addRow("Normalise", self.normalize)
        form.addRow("Order", self.order)
        form.addRow("Columns", self.columns)
        form.addRow("Upscale", self.upscale)
        form.addRow("Clipping", clip_row)
        form.addRow("", self.after_activation)

        self.colormap.currentTextChanged.connect(lambda v: self._change("colormap", v))
        self.normalize.currentIndexChanged.connect(
            lambda i: self._change("normalize", self.normalize.itemData(i)))
        self.order.currentIndexChanged.connect(lambda i: self._change("order", self.order.itemData(i)))
        self.columns.valueChanged.connect(lambda v: self._change("columns", v or None))
        self.upscale.valueChanged.connect(lambda v: self._change("upscale", v))
        self.clip.toggled.connect(self._clip_changed)
        self.after_activation.toggled.connect(lambda on: self._change("after_activation", bool(on)))
        self.clip_value.valueChanged.connect(self._clip_changed)
        # A spin box's line edit would take Ctrl+Z for its own text undo; here Ctrl+Z
        # means "undo the last display change", wherever the focus is in the panel.
        for spin in (self.columns, self.upscale, self.clip_value):
            spin.installEventFilter(self)
            spin.lineEdit().installEventFilter(self)
        state.display_changed.connect(self.show_options)
        self.show_options(state.display)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt's name
        if event.type() == QEvent.Type.ShortcutOverride and isinstance(event, QKeyEvent):
            if event.matches(QKeySequence.StandardKey.Undo) or event.matches(QKeySequence.StandardKey.Redo):
                event.ignore()  # let the panel's undo/redo actions have it
                return True
        return super().eventFilter(watched, event)

    def _clip_changed(self, *_: Any) -> None:
        self.clip_value.setEnabled(self.clip.isChecked())
        self._change("clip_percentile", self.clip_value.value() if self.clip.isChecked() else None)

    def _change(self, field: str, value: Any) -> None:
        old = self.state.display
        if getattr(old, field) == value:
            return
        new = type(old)(**{**asdict(old), field: value})
        self.undo_stack.push(DisplayChange(self.state, old, new, field))

    def show_options(self, display) -> None:
        """Make the widgets show ``display`` without recording an undo step."""
        widgets = (self.colormap, self.normalize, self.order, self.columns, self.upscale,
                   self.clip, self.clip_value, self.after_activation)
        for w in widgets:
            w.blockSignals(True)
        try:
            self.colormap.setCurrentText(display.colormap)
            self.normalize.setCurrentIndex(max(0, self.normalize.findData(display.normalize)))
            self.order.setCurrentIndex(max(0, self.order.findData(display.order)))
            self.columns.setValue(display.columns or 0)
            self.upscale.setValue(display.upscale)
            self.clip.setChecked(display.clip_percentile is not None)
            if display.clip_percentile is not None:
                self.clip_value.setValue(display.clip_percentile)
            self.clip_value.setEnabled(display.clip_percentile is not None)
            self.after_activation.setChecked(bool(display.after_activation))
        finally:
            for w in widgets:
                w.blockSignals(False)
