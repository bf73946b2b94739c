"""The receptive-field outlines of the Channel view: a map position's field on the input
picture, the position itself on the map and, while an input pixel is hovered, that pixel
and every map position whose field contains it (dashed)."""
from __future__ import annotations

from typing import Any, Optional

import pyqtgraph as pg

from featurescope.gui.caches import receptive_fields as field_cache
from featurescope.gui.widgets.image_box import outline_item


class FieldOutlines:
    """Four outlines, hidden until :meth:`draw` places them."""

    def __init__(self, map_box: pg.ViewBox, input_box: pg.ViewBox) -> None:
        self.rf_item = outline_item(input_box, "#00e5ff")  # the field on the input
        self.pixel_item = outline_item(input_box, "#ffffff", 1.0)  # the hovered input pixel
        self.position_item = outline_item(map_box, "#00e5ff")  # the position on the map
        self.seeing_item = outline_item(map_box, "#ffffff", 1.0, dashed=True)

    def draw(self, field: Any, position: Optional[tuple[int, int]], pixel: Optional[tuple[int, int]] = None
             ) -> tuple[Optional[tuple], Optional[tuple], Optional[tuple]]:
        """Outline ``position``'s field (and, with ``pixel``, the pixel and the positions
        seeing it). Returns (position drawn, its (y0, x0, y1, x1) box on the input, the
        (y0, x0, y1, x1) block of positions seeing ``pixel``), None for what is not drawn."""
        for item in (self.rf_item, self.position_item, self.pixel_item, self.seeing_item):
            item.hide()
        if field is None or position is None:
            return None, None, None
        y, x = position
        try:
            y0, x0, y1, x1 = field.box(y, x)
        except IndexError:
            return None, None, None
        self.rf_item.setRect(x0, y0, x1 - x0, y1 - y0)
        self.rf_item.show()
        self.position_item.setRect(x, y, 1, 1)
        self.position_item.show()
        seeing = None
        if pixel is not None:
            self.pixel_item.setRect(pixel[1], pixel[0], 1, 1)
            self.pixel_item.show()
            seeing = field_cache.positions_seeing(field, *pixel)
            if seeing is not None:
                sy0, sx0, sy1, sx1 = seeing
                self.seeing_item.setRect(sx0, sy0, sx1 - sx0, sy1 - sy0)
                self.seeing_item.show()
        return (y, x), (y0, x0, y1, x1), seeing
