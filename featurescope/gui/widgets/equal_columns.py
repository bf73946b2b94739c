"""Keep two pictures of a pyqtgraph layout exactly the same size, whatever their titles.

A QGraphicsGridLayout's stretch factors alone leave each column as wide as its items
wish, so a map and its overlay came out a few pixels different. On every resize this
gives the picture columns one fixed width that shares what the other columns leave.
"""
from __future__ import annotations

from typing import Sequence

import pyqtgraph as pg
from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtWidgets import QSizePolicy


class EqualColumns(QObject):
    """``EqualColumns(plots, picture_columns=(0, 2), other_items=(color_bar,))``."""

    def __init__(self, plots: pg.GraphicsLayoutWidget, picture_columns: Sequence[int],
                 other_items: Sequence = ()) -> None:
        super().__init__(plots)
        self.plots, self.columns, self.others = plots, tuple(picture_columns), tuple(other_items)
        grid = plots.ci.layout
        for index in range(grid.count()):
            item = grid.itemAt(index)
            if item not in self.others:
                # no picture or title may ask for more than its share
                item.setSizePolicy(QSizePolicy.Policy.Ignored, item.sizePolicy().verticalPolicy())
        plots.installEventFilter(self)
        self.apply()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt)
        if event.type() == QEvent.Type.Resize:
            self.apply()
        return False

    def apply(self) -> None:
        grid = self.plots.ci.layout
        left, _top, right, _bottom = grid.getContentsMargins()
        outer = self.plots.ci.getContentsMargins()
        others = sum(item.effectiveSizeHint(Qt.SizeHint.PreferredSize).width() for item in self.others)
        gaps = grid.horizontalSpacing() * (len(self.columns) + len(self.others) - 1)
        width = self.plots.viewport().width() - left - right - outer[0] - outer[2] - others - gaps - 2
        cell = max(width / len(self.columns), 20.0)
        for column in self.columns:
            grid.setColumnFixedWidth(column, cell)
