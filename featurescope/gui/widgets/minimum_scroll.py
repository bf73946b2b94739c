"""A scroll area that fills its view with its widget and scrolls only below its minimum.

QScrollArea's own resizing sizes a widget whose layout wraps text by its height for the
width, worked out from the preferred sizes: a panel with a picture and a wrapped caption
grew far taller than its dock and scrolled with room to spare (the picture's preferred
size followed its own size). Here the widget gets the viewport's size, never less than its
minimum: a panel or a view is whole when there is room and scrolls, never clips, when not.
"""
from __future__ import annotations

from typing import Any, Optional

from PySide6.QtCore import QEvent, Qt
from PySide6.QtWidgets import QFrame, QScrollArea, QWidget


def minimum_size(widget: QWidget, width: int) -> tuple[int, int]:
    """The least (width, height) ``widget`` needs when ``width`` wide."""
    hint, minimum = widget.minimumSizeHint(), widget.minimumSize()
    least_w = max(minimum.width(), hint.width(), 0)
    least_h = max(minimum.height(), hint.height(), 0)
    layout = widget.layout()
    if layout is not None and layout.hasHeightForWidth():
        least_h = max(least_h, layout.minimumHeightForWidth(max(width, least_w)))
    return least_w, least_h


class MinimumScroll(QScrollArea):
    """``MinimumScroll(widget)``: frameless; scroll bars only when ``widget`` needs them."""

    def __init__(self, widget: QWidget, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setWidgetResizable(False)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.setWidget(widget)
        widget.installEventFilter(self)

    def fit_widget(self) -> None:
        widget = self.widget()
        if widget is None:
            return
        width, height = self.viewport().width(), self.viewport().height()
        least_w, least_h = minimum_size(widget, width)
        bar = self.verticalScrollBar().sizeHint().width()
        if least_h > height and width - bar >= least_w:
            width -= bar  # the vertical bar will take its room
            least_w, least_h = minimum_size(widget, width)
        widget.resize(max(width, least_w), max(height, least_h))

    def resizeEvent(self, event: Any) -> None:  # noqa: N802 (Qt)
        super().resizeEvent(event)
        self.fit_widget()

    def eventFilter(self, watched: Any, event: Any) -> bool:  # noqa: N802 (Qt)
        if watched is self.widget() and event.type() == QEvent.Type.LayoutRequest:
            self.fit_widget()
        return False
