"""A detector's boxes (with label and score) or a segmenter's class mask over a picture.

Drawn into a pyqtgraph ViewBox that shows the model's input picture in input pixels
(y down), the coordinates :func:`~featurescope.gui.model.dense_targets.dense_rows`
gives, so the boxes line up with the picture whatever its zoom.
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF
from PySide6.QtGui import QColor, QPen
from PySide6.QtWidgets import QGraphicsRectItem

# one colour per class (index modulo), bright enough over a photo
PALETTE = ((230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
           (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
           (0, 128, 128), (220, 190, 255), (170, 110, 40), (255, 250, 200), (128, 0, 0),
           (170, 255, 195), (128, 128, 0), (255, 215, 180), (0, 0, 128), (128, 128, 128))
MASK_ALPHA = 110  # of 255: the photo stays visible under the mask
LABELLED = 8  # boxes that get a label on the picture (the best ones; the list names all)


def class_colour(index: int) -> tuple[int, int, int]:
    return PALETTE[int(index) % len(PALETTE)]


def mask_picture(class_map: np.ndarray, chosen: Optional[int] = None) -> np.ndarray:
    """(H, W, 4) uint8 RGBA: each class in its colour, translucent; with ``chosen``, that
    class only (the one Grad-CAM explains), the others clear. Background (0) is clear."""
    lut = np.zeros((max(int(class_map.max()) + 1, 1), 4), np.uint8)
    for index in range(1, len(lut)):
        if chosen is None or index == chosen:
            lut[index] = (*class_colour(index), MASK_ALPHA)
    if chosen == 0:
        lut[0] = (255, 255, 255, MASK_ALPHA)
    return lut[class_map]


class DenseOverlay:
    """Boxes or a class mask in ``view_box``; ``show(model, result, rows, chosen)`` replaces
    whatever was drawn. ``box_items`` (QGraphicsRectItem) and ``label_items``
    (pg.TextItem) are what is on screen, for tests; ``mask_item`` holds the mask."""

    def __init__(self, view_box: pg.ViewBox) -> None:
        self.view_box = view_box
        self.box_items: list[QGraphicsRectItem] = []
        self.label_items: list[pg.TextItem] = []
        self.mask_item = pg.ImageItem(axisOrder="row-major")
        self.mask_item.setZValue(5)
        view_box.addItem(self.mask_item)

    def clear(self) -> None:
        for item in (*self.box_items, *self.label_items):
            self.view_box.removeItem(item)
        self.box_items, self.label_items = [], []
        self.mask_item.clear()

    def show(self, result: Any, rows: list, chosen: Optional[int]) -> None:
        """Draw ``rows`` (DenseRow: boxes) or ``result.dense``'s class mask; the row whose
        target is ``chosen`` is drawn thicker (a box) or alone (a class)."""
        self.clear()
        dense = getattr(result, "dense", None)
        if dense is None:
            return
        if dense.task == "segmentation":
            self.mask_item.setImage(mask_picture(dense.class_map, chosen), autoLevels=False,
                                    levels=(0, 255))
            return
        for row in reversed(rows):  # the best box last, so on top
            x0, y0, x1, y1 = row.box
            colour = QColor(*class_colour(row.class_index))
            selected = row.target == chosen
            pen = QPen(QColor("white") if selected else colour)
            pen.setCosmetic(True)
            pen.setWidthF(3.5 if selected else 2.0)
            rect = QGraphicsRectItem(QRectF(x0, y0, max(x1 - x0, 0.5), max(y1 - y0, 0.5)))
            rect.setPen(pen)
            rect.setZValue(10 + (5 if selected else 0))
            self.view_box.addItem(rect)
            self.box_items.append(rect)
            if row.target >= LABELLED and not selected:
                continue
            # inside the box's top corner on the picture's nearer side, so it stays on it
            right = x0 > dense.input_size[1] / 2
            light = 0.299 * colour.red() + 0.587 * colour.green() + 0.114 * colour.blue() > 150
            label = pg.TextItem(f"{row.target}: {row.label} {row.value:.2f}",
                                color=(0, 0, 0) if light else (255, 255, 255),
                                fill=pg.mkBrush(colour.red(), colour.green(), colour.blue(), 200),
                                anchor=(1 if right else 0, 0))
            font = label.textItem.font()
            font.setPointSizeF(7.5)  # the preview is small: a label should not hide its box
            label.setFont(font)
            label.setPos(x1 if right else x0, y0)
            label.setZValue(11 + (5 if selected else 0))
            self.view_box.addItem(label)
            self.label_items.append(label)
