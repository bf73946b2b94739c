"""One picture in a pyqtgraph view: the view box and its ImageItem, set up alike everywhere."""
from __future__ import annotations

import pyqtgraph as pg


def image_box() -> tuple[pg.ViewBox, pg.ImageItem]:
    """A view box (aspect locked, y down, no context menu) holding one ImageItem that reads
    (H, W[, 3]) arrays row by row; the axis order is set on the item, not globally."""
    box = pg.ViewBox(lockAspect=True, invertY=True, enableMenu=False)
    item = pg.ImageItem(axisOrder="row-major")
    box.addItem(item)
    return box, item
