"""The feature grid draws its tile boundaries as one-screen-pixel lines over the mosaic."""
from __future__ import annotations

import numpy as np
from PySide6.QtGui import QPainterPath

from featurescope.core.render.grids import SEPARATOR_RGB, grid_indices


class _Result:
    """The little of a CaptureResult the grid view reads."""

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        self.arrays, self.layers, self.info = arrays, list(arrays), {}

    def __contains__(self, name: str) -> bool:
        return name in self.arrays

    def __getitem__(self, name: str) -> np.ndarray:
        return self.arrays[name]


def _lines(path: QPainterPath) -> list[tuple[float, float, float, float]]:
    """(x0, y0, x1, y1) of each moveTo/lineTo pair of a path."""
    points = [(path.elementAt(i).x, path.elementAt(i).y) for i in range(path.elementCount())]
    kinds = [path.elementAt(i).type for i in range(path.elementCount())]
    assert kinds == [QPainterPath.ElementType.MoveToElement, QPainterPath.ElementType.LineToElement] * (len(kinds) // 2)
    return [points[i] + points[i + 1] for i in range(0, len(points), 2)]


def test_separator_lines_follow_the_tile_boundaries_of_each_layer(qtbot):
    from featurescope.gui.model.state import AppState
    from featurescope.gui.views.grid_view import FeatureGridView

    rng = np.random.default_rng(0)
    arrays = {"a": rng.standard_normal((10, 5, 7)).astype(np.float32),   # 4 rows x 3 columns of 5x7
              "b": rng.standard_normal((4, 3, 3)).astype(np.float32),    # 2 x 2 tiles of 3x3
              "c": rng.standard_normal((1, 6, 6)).astype(np.float32)}    # one tile: no lines
    state = AppState()
    view = FeatureGridView(state)
    qtbot.addWidget(view)
    state.set_result(_Result(arrays))

    indices, layout = grid_indices(arrays["a"], normalize="channel", gap=1)
    np.testing.assert_array_equal(view.image_item.image, indices)  # the image is untouched
    assert (layout.rows, layout.columns) == (4, 3)
    lines = _lines(view.separators.path())
    height, width = layout.shape  # 23 x 23
    assert len(lines) == (layout.rows - 1) + (layout.columns - 1)
    assert lines[:3] == [(0, 5.5, width, 5.5), (0, 11.5, width, 11.5), (0, 17.5, width, 17.5)]
    assert lines[3:] == [(7.5, 0, 7.5, height), (15.5, 0, 15.5, height)]
    # every line runs through separator pixels (value 0) of the mosaic
    for x0, y0, x1, y1 in lines:
        if y0 == y1:
            assert not indices[int(y0)].any()
        else:
            assert not indices[:, int(x0)].any()
    pen = view.separators.pen()
    assert pen.isCosmetic() and pen.widthF() <= 1
    assert pen.color().getRgb()[:3] == SEPARATOR_RGB

    state.set_layer("b")
    assert _lines(view.separators.path()) == [(0, 3.5, 7, 3.5), (3.5, 0, 3.5, 7)]
    state.set_layer("c")
    assert view.separators.path().elementCount() == 0
    state.set_result(None)
    assert view.separators.path().elementCount() == 0
