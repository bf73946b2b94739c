"""How the Compare view lays out its three pictures (A, B, |A - B|): all three the same
size, side by side or two over one, whichever shows the mosaics larger, with the shared
colour bar beside them. A mixin of :class:`~featurescope.gui.views.compare_view.
CompareView`, which owns the widgets (``plots``, ``boxes``, ``titles``, ``color_bar``)."""
from __future__ import annotations

PICTURES = (("a", "A: current image"), ("b", "B"), ("difference", "|A - B|"))
COLOR_BAR_WIDTH = 70  # the bar and its axis, in pixels
TITLE_HEIGHT = 22


def best_columns(width: float, height: float, mosaic_shape: tuple) -> int:
    """3 (side by side) or 2 (two over one): whichever shows the mosaics larger."""
    mh, mw = mosaic_shape
    if mh <= 0 or mw <= 0:
        return 3
    width = max(width - COLOR_BAR_WIDTH, 1.0)
    def scale(columns: int, rows: int) -> float:
        return min(width / columns / mw, max(height / rows - TITLE_HEIGHT, 1.0) / mh)
    return 2 if scale(2, 2) > scale(3, 1) else 3


class ThreeLinkedPictures:
    """Arranging and fitting the three linked views of the Compare view."""

    def _arrange(self, columns: int, force: bool = False) -> None:
        """Three views side by side (3) or A and B over |A - B| (2), all cells equal."""
        if columns == self.columns and not force:
            return
        self.columns = columns
        grid = self.plots.ci.layout
        cells = {"a": (0, 0), "b": (0, 1), "difference": (0, 2)} if columns == 3 else \
            {"a": (0, 0), "b": (0, 1), "difference": (2, 0)}
        for key, _title in PICTURES:
            grid.removeItem(self.titles[key])
            grid.removeItem(self.boxes[key])
        grid.removeItem(self.color_bar)
        for key, (row, column) in cells.items():
            grid.addItem(self.titles[key], row, column)
            grid.addItem(self.boxes[key], row + 1, column)
        grid.addItem(self.color_bar, 1, columns, 3 if columns == 2 else 1, 1)
        self._size_cells()
        if self.compare.comparison is not None:
            self.fit()

    def _size_cells(self) -> None:
        """Give the three views' cells one fixed size that fills the widget (a grid
        layout's stretch factors alone leave columns as wide as their items wish)."""
        grid, columns = self.plots.ci.layout, self.columns
        rows = 1 if columns == 3 else 2
        spacing = grid.horizontalSpacing()
        width = self.plots.width() - 8 - COLOR_BAR_WIDTH - spacing * columns
        height = self.plots.height() - 8 - rows * TITLE_HEIGHT - spacing * (2 * rows - 1)
        cell_w, cell_h = max(width / columns, 20.0), max(height / rows, 20.0)
        for column in range(4):
            if column < columns:
                grid.setColumnFixedWidth(column, cell_w)
            else:
                grid.setColumnMinimumWidth(column, 0)
                grid.setColumnMaximumWidth(column, COLOR_BAR_WIDTH if column == columns else 0)
                grid.setColumnPreferredWidth(column, COLOR_BAR_WIDTH if column == columns else 0)
        for row in range(4):
            if row >= 2 * rows:
                grid.setRowFixedHeight(row, 0)
            else:
                grid.setRowFixedHeight(row, TITLE_HEIGHT if row % 2 == 0 else cell_h)
        self.plots.ci.updateGeometry()

    def _choose_arrangement(self) -> None:
        shape = self.grid_layout.shape if self.grid_layout is not None else (1, 1)
        columns = best_columns(self.plots.width(), self.plots.height(), shape)
        if columns != self.columns:
            self._arrange(columns)
        else:
            self._size_cells()

    def fit(self) -> None:
        """Show the whole mosaic in all three linked views, following their size as the
        layout settles, until the user pans or zooms."""
        for box in self.boxes.values():
            box.enableAutoRange()
