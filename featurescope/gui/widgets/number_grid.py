"""A small grid of numbers drawn as coloured cells: a window of inputs, a kernel, the
products. Padding cells are hatched and say "pad"; one cell can be outlined (the
maximum of a pooling window); cells can carry their own colour (an RGB patch).
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from PySide6.QtCore import QRectF, QSize, Qt
from PySide6.QtGui import QBrush, QColor, QFont, QFontMetricsF, QPainter, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget


MIN_CELL_WIDTH = 42  # "-12.34" at the smallest font drawn (6 pt) fits with room to spare
MIN_CELL_HEIGHT = 16


def _diverging(value: float, scale: float) -> QColor:
    """Blue for negative, red for positive, white at zero (coolwarm-like)."""
    # at most 70 % of the full colour, so dark text stays readable on every cell
    t = 0.0 if scale <= 0 else 0.7 * max(-1.0, min(1.0, value / scale))
    if t >= 0:
        return QColor(int(255 - 75 * t), int(255 - 190 * t), int(255 - 195 * t))
    t = -t
    return QColor(int(255 - 195 * t), int(255 - 135 * t), int(255 - 40 * t))


class NumberGrid(QWidget):
    """``values`` (rows, cols) shown as numbers on coloured cells, with a title above and
    optional row / column labels (input coordinates)."""

    def __init__(self, title: str = "", parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.title = title
        self.values: Optional[np.ndarray] = None
        self.mask: Optional[np.ndarray] = None
        self.colours: Optional[np.ndarray] = None  # (rows, cols, 3) uint8, or None
        self.highlight: Optional[tuple[int, int]] = None
        self.row_labels: Sequence[str] = ()
        self.col_labels: Sequence[str] = ()
        self.show_numbers = True
        self.digits = 3  # decimals; 2 when 3 do not fit the cells
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Maximum)

    def set_data(self, values, *, mask=None, colours=None, highlight=None, row_labels=(),
                 col_labels=(), title: Optional[str] = None, show_numbers: bool = True) -> None:
        self.values = None if values is None else np.asarray(values, dtype=np.float64)
        self.mask = None if mask is None else np.asarray(mask, dtype=bool)
        self.colours = None if colours is None else np.asarray(colours, dtype=np.uint8)
        self.highlight = highlight
        self.row_labels, self.col_labels = list(row_labels), list(col_labels)
        self.show_numbers = show_numbers
        if title is not None:
            self.title = title
        rows = 3 if self.values is None else self.values.shape[0]
        self.setMaximumHeight(max(90, 40 + rows * 30))
        self.updateGeometry()
        self.update()

    def text_at(self, row: int, col: int) -> str:
        """The text drawn in cell (row, col)."""
        if self.mask is not None and self.mask[row, col]:
            value = self.values[row, col]
            return "pad" if not np.isfinite(value) else "0 pad" if value == 0 else f"{value:.{self.digits}f} pad"
        if not self.show_numbers:
            return ""
        value = self.values[row, col] + 0.0
        if value != 0 and abs(value) < 10 ** -self.digits:  # would print as 0.000
            return f"{value:.0e}"
        return f"{value:.{self.digits}f}"

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt)
        rows, cols = (3, 3) if self.values is None else self.values.shape
        return QSize(40 + cols * 56, 38 + rows * 28)

    def minimumSizeHint(self) -> QSize:  # noqa: N802 (Qt)
        """Room for the whole title and for every number at a readable size: a layout
        short of space scrolls the grid instead of overlapping its numbers."""
        rows, cols = (3, 3) if self.values is None else self.values.shape
        bold = QFont(self.font())
        bold.setBold(True)
        title = int(QFontMetricsF(bold).horizontalAdvance(self.title)) + 6
        left = 40 if self.row_labels else 4
        cell = MIN_CELL_WIDTH if self.show_numbers else MIN_CELL_HEIGHT
        top = 20 + (14 if self.col_labels else 0)
        return QSize(max(title, left + cols * cell + 4), top + rows * MIN_CELL_HEIGHT + 4)

    def maximumSizeHint(self) -> QSize:  # noqa: N802
        return self.sizeHint()

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt)
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, False)
        palette = self.palette()
        painter.setPen(palette.windowText().color())
        title_font = QFont(self.font())
        title_font.setBold(True)
        painter.setFont(title_font)
        painter.drawText(QRectF(0, 0, self.width(), 18), Qt.AlignmentFlag.AlignLeft, self.title)
        if self.values is None or self.values.size == 0:
            return
        rows, cols = self.values.shape
        left, top = (40 if self.row_labels else 4), 20 + (14 if self.col_labels else 0)
        cell_w = max(14.0, min(70.0, (self.width() - left - 4) / cols))
        cell_h = max(12.0, min(34.0, (self.height() - top - 4) / rows))
        small = QFont(self.font())
        small.setPointSizeF(max(6.5, min(self.font().pointSizeF(), cell_h * 0.42)))
        def widest_text() -> float:
            texts = [self.text_at(i, j) for i in range(rows) for j in range(cols)
                     if np.isfinite(self.values[i, j]) or (self.mask is not None and self.mask[i, j])]
            return max((QFontMetricsF(small).horizontalAdvance(t) for t in texts), default=0.0)

        self.digits = 3
        widest = widest_text()
        if widest * 0.85 > cell_w - 4:  # much too wide: fewer digits (the sum keeps them all) ...
            self.digits = 2
            widest = widest_text()
        if widest > cell_w - 4:  # ... then a smaller font until the widest fits its cell
            small.setPointSizeF(max(6.0, small.pointSizeF() * (cell_w - 4) / widest))
        painter.setFont(small)
        label_pen = QPen(palette.placeholderText().color())
        for j, text in enumerate(self.col_labels[:cols]):
            painter.setPen(label_pen)
            painter.drawText(QRectF(left + j * cell_w, top - 15, cell_w, 14), Qt.AlignmentFlag.AlignCenter, text)
        for i, text in enumerate(self.row_labels[:rows]):
            painter.setPen(label_pen)
            painter.drawText(QRectF(0, top + i * cell_h, left - 3, cell_h),
                             Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter, text)
        finite = self.values[np.isfinite(self.values)]
        if self.mask is not None:
            finite = self.values[np.isfinite(self.values) & ~self.mask]
        scale = float(np.abs(finite).max()) if finite.size else 1.0
        for i in range(rows):
            for j in range(cols):
                rect = QRectF(left + j * cell_w, top + i * cell_h, cell_w, cell_h)
                padded = self.mask is not None and self.mask[i, j]
                if not padded and not np.isfinite(self.values[i, j]):
                    continue  # no cell here (the end of a channel grid)
                if padded:
                    colour = QColor(225, 225, 225)
                elif self.colours is not None:
                    colour = QColor(*[int(v) for v in self.colours[i, j]])
                else:
                    colour = _diverging(float(self.values[i, j]), scale)
                painter.fillRect(rect, colour)
                if padded:
                    painter.fillRect(rect, QBrush(QColor(150, 150, 150), Qt.BrushStyle.BDiagPattern))
                painter.setPen(QPen(QColor(120, 120, 120), 1))
                painter.drawRect(rect)
                text = self.text_at(i, j)
                if text:
                    dark = colour.lightness() < 110
                    painter.setPen(QColor(255, 255, 255) if dark else QColor(20, 20, 20))
                    painter.drawText(rect, Qt.AlignmentFlag.AlignCenter, text)
        if self.highlight is not None:
            i, j = self.highlight
            painter.setPen(QPen(QColor(255, 140, 0), 3))
            painter.drawRect(QRectF(left + j * cell_w + 1, top + i * cell_h + 1, cell_w - 2, cell_h - 2))
        painter.end()
