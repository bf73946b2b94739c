"""A vertical scroll bar for a picture taller than its view (the atlas of a wide layer).

The picture stays in its pyqtgraph view box, so the wheel zooms, a drag pans and Fit shows
it whole as everywhere else; the bar scrolls it at the scale it is shown at and hides
when the whole height is in view.
"""
from __future__ import annotations

from typing import Any, Optional

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QScrollBar, QWidget

UNITS = 10  # scroll bar steps per picture pixel (smooth at large zoom)


class BoxScrollBar(QScrollBar):
    """``BoxScrollBar(box, item)``: scrolls ``box`` over the height of ``item``."""

    def __init__(self, box: pg.ViewBox, item: pg.ImageItem, parent: Optional[QWidget] = None) -> None:
        super().__init__(Qt.Orientation.Vertical, parent)
        self.box, self.item = box, item
        self.setObjectName("boxScrollBar")
        self._following = False
        box.sigRangeChanged.connect(self.follow)
        self.valueChanged.connect(self._scroll)
        self.hide()

    def follow(self, *_: Any) -> None:
        """Match the bar to the part of the picture in view."""
        image = self.item.image
        if image is None:
            self.hide()
            return
        top, bottom = self.box.viewRange()[1]
        height, shown = float(image.shape[0]), bottom - top
        self._following = True
        try:
            self.setRange(0, int(max(0.0, height - shown) * UNITS))
            self.setPageStep(max(1, int(shown * UNITS)))
            self.setSingleStep(max(1, int(shown * UNITS / 10)))
            self.setValue(int(max(0.0, top) * UNITS))
        finally:
            self._following = False
        self.setVisible(shown < height - 0.5)

    def _scroll(self, value: int) -> None:
        if self._following:
            return
        top, bottom = self.box.viewRange()[1]
        start = value / UNITS
        self.box.setYRange(start, start + (bottom - top), padding=0)
