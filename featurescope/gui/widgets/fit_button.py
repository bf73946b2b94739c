"""A "Fit" button over every picture, and fitting every picture of a view at once.

Every picture is a pyqtgraph ViewBox: the wheel zooms, a drag pans, and the button (or F,
View > Fit pictures) brings the whole picture back. The button sits in the bottom-right
corner of the graphics view (the titles are at the top), so the way back is visible,
not only known.
"""
from __future__ import annotations

from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import QEvent, QObject
from PySide6.QtWidgets import QToolButton, QWidget

TIP = "Fit the pictures to the view (F). Wheel: zoom, drag: pan"
MARGIN = 4


def image_boxes(view: pg.GraphicsView) -> list:
    """The view boxes in ``view`` that show a picture (an ImageItem)."""
    boxes = []
    for item in view.scene().items():
        if isinstance(item, pg.ViewBox) and any(isinstance(child, pg.ImageItem)
                                                for child in item.addedItems):
            boxes.append(item)
    return boxes


def fit_pictures(widget: QWidget) -> None:
    """Show every picture under ``widget`` whole (the same as clicking each Fit button)."""
    for view in widget.findChildren(pg.GraphicsView):
        for box in image_boxes(view):
            box.autoRange(padding=0.01)


class FitButton(QToolButton):
    """``FitButton(view)``: a small button in ``view``'s bottom-right corner that fits it."""

    def __init__(self, view: pg.GraphicsView) -> None:
        super().__init__(view)
        self.view = view
        self.setObjectName("fitButton")
        self.setText("Fit")
        self.setToolTip(TIP)
        self.setAutoRaise(False)
        self.setStyleSheet("QToolButton { background: rgba(255, 255, 255, 200); color: black;"
                           " border: 1px solid #888; border-radius: 3px; padding: 1px 6px; }")
        self.clicked.connect(self.fit)
        self._follower = _CornerFollower(self)
        view.installEventFilter(self._follower)
        self.place()
        self.raise_()

    def fit(self) -> None:
        for box in image_boxes(self.view):
            box.autoRange(padding=0.01)

    def place(self) -> None:
        size = self.sizeHint()
        self.resize(size)
        self.move(max(0, self.view.width() - size.width() - MARGIN),
                  max(0, self.view.height() - size.height() - MARGIN))


class _CornerFollower(QObject):
    def __init__(self, button: FitButton) -> None:
        super().__init__(button)
        self.button = button

    def eventFilter(self, watched: Any, event: Any) -> bool:  # noqa: N802 (Qt)
        if event.type() in (QEvent.Type.Resize, QEvent.Type.Show):
            self.button.place()
        return False


def add_fit_buttons(widget: QWidget) -> list:
    """A FitButton on every graphics view under ``widget`` that shows a picture."""
    buttons = []
    for view in widget.findChildren(pg.GraphicsLayoutWidget):
        if image_boxes(view) and view.findChild(FitButton) is None:
            buttons.append(FitButton(view))
    return buttons
