"""The products of a 1x1 convolution as a table, strongest first.

A 1x1 convolution over 240 input channels is 240 products: as grids the numbers overlapped
and the titles were cut. As rows they never overlap, the products that decide the value
come first, and the rest are one scroll away, however many inputs there are.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableWidget, QTableWidgetItem, QWidget

COLUMNS = ("input ch", "input", "\u00d7 weight", "= product", "running sum")
ROWS_SHOWN = 6


class ProductsTable(QTableWidget):
    """``set_products(channels, inputs, weights)``: one row per input channel, sorted by |product|."""

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__(0, len(COLUMNS), parent)
        self.setObjectName("productsTable")
        self.setHorizontalHeaderLabels(COLUMNS)
        self.verticalHeader().hide()
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.horizontalHeader().setMinimumSectionSize(70)
        self.setToolTip("Every input channel's product, the largest (by size) first; "
                        "the running sum adds them in this order")
        row = self.fontMetrics().height() + 8
        self.verticalHeader().setDefaultSectionSize(row)
        self.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        # the strongest rows in view, the sum below the table in view too; the rest scroll
        self.setFixedHeight(self.horizontalHeader().sizeHint().height() + ROWS_SHOWN * row + 4)

    def set_products(self, channels: Sequence[int], inputs: np.ndarray, weights: np.ndarray) -> None:
        inputs, weights = np.asarray(inputs, np.float64), np.asarray(weights, np.float64)
        products = inputs * weights
        order = np.argsort(-np.abs(products), kind="stable")
        running = np.cumsum(products[order])
        self.setRowCount(len(order))
        for row, index in enumerate(order):
            values = (str(channels[index]), f"{inputs[index]:.4g}", f"{weights[index]:.4g}",
                      f"{products[index]:.4g}", f"{running[row]:.4g}")
            for column, text in enumerate(values):
                item = QTableWidgetItem(text)
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.setItem(row, column, item)
        self.scrollToTop()

    def shown_order(self) -> list[int]:
        """The input channels row by row (strongest product first)."""
        return [int(self.item(row, 0).text()) for row in range(self.rowCount())]
