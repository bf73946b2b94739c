"""One picture in a pyqtgraph view: the view box and its ImageItem, set up alike everywhere,
the pixel under a scene position, and outlines drawn over it."""
from __future__ import annotations

from typing import Optional

import pyqtgraph as pg
import numpy as np
from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import QGraphicsRectItem


def image_box() -> tuple[pg.ViewBox, pg.ImageItem]:
    """A view box (aspect locked, y down, no context menu) holding one ImageItem that reads
    (H, W[, 3]) arrays row by row; the axis order is set on the item, not globally."""
    box = pg.ViewBox(lockAspect=True, invertY=True, enableMenu=False)
    item = pg.ImageItem(axisOrder="row-major")
    box.addItem(item)
    return box, item


def item_pixel(item: pg.ImageItem, scene_pos: QPointF) -> Optional[tuple[int, int]]:
    """(row, col) of ``item``'s picture under a scene position, or None outside it."""
    if item.image is None:
        return None
    p = item.mapFromScene(scene_pos)
    h, w = item.image.shape[:2]
    if not (0 <= p.y() < h and 0 <= p.x() < w):
        return None
    return int(p.y()), int(p.x())


def outline_item(box: pg.ViewBox, color: str, width: float = 2.0, dashed: bool = False) -> QGraphicsRectItem:
    """A hidden outline (cosmetic pen, so it stays thin at any zoom) above the pictures."""
    item = QGraphicsRectItem()
    pen = pg.mkPen(color, width=width, style=Qt.PenStyle.DashLine if dashed else Qt.PenStyle.SolidLine)
    pen.setCosmetic(True)
    item.setPen(pen)
    item.setZValue(10)
    item.hide()
    box.addItem(item, ignoreBounds=True)
    return item


THUMBNAIL_HEIGHT = 56


def thumbnail(rgb: np.ndarray, height: int = THUMBNAIL_HEIGHT) -> QPixmap:
    """A smooth, small QPixmap of an (H, W, 3) uint8 picture."""
    rgb = np.ascontiguousarray(rgb[:, :, :3], dtype=np.uint8)
    h, w = rgb.shape[:2]
    image = QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()
    return QPixmap.fromImage(image).scaledToHeight(height, Qt.TransformationMode.SmoothTransformation)
