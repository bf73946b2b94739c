"""The Examples tab's crops: the shown channel's top images, each cropped to the field its
unit saw. With the Channel tab's backprop view on (guided or deconvnet), each crop has its
unit's pattern beside it: ``guided_backprop`` of that example image at the channel and the
example's position, cut to the same field (network-input pixels, ``Example.input_box``).
The patterns are made on the worker one example per background unit ("examples-backprop";
a new channel or method replaces the request) and fill in as they arrive.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np
from PySide6.QtCore import QSize
from PySide6.QtGui import QIcon, QImage, QPixmap
from PySide6.QtWidgets import QListView, QListWidget, QListWidgetItem, QWidget

TILE = 128
GAP = 4


def _pixmap(array: np.ndarray) -> QPixmap:
    array = np.ascontiguousarray(array)
    height, width = array.shape[:2]
    image = QImage(array.data, width, height, 3 * width, QImage.Format.Format_RGB888)
    return QPixmap.fromImage(image.copy())


class ExampleCrops(QListWidget):
    """``show_examples(layer, channel, examples, crops)``; ``set_backprop(method)``."""

    def __init__(self, state, jobs: Any = None, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.state, self.jobs = state, jobs
        self.method = "off"  # the Channel tab's backprop view: off, guided or deconvnet
        self.layer, self.channel = "", -1
        self.examples: list = []
        self.pictures: list = []  # the crops shown, (h, w, 3) uint8
        self.patterns: dict[int, np.ndarray] = {}  # row -> its unit's pattern, cut to the field
        self.problems: dict[int, str] = {}  # row -> why it has no pattern
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setMovement(QListView.Movement.Static)
        self.setWordWrap(True)
        self.setToolTip("Click a crop to open its image with this channel in the Channel tab. With the "
                        "Channel tab's backprop view on, each crop has its unit's pattern beside it.")
        self._size_tiles()

    def _size_tiles(self) -> None:
        width = 2 * TILE + GAP if self.method != "off" else TILE
        self.setIconSize(QSize(width, TILE))
        self.setGridSize(QSize(width + 16, TILE + 36))

    def show_examples(self, layer: str, channel: int, examples: list, pictures: list,
                      files: Optional[list] = None) -> None:
        """Show ``examples`` (Example records, best first) with their ``pictures``;
        ``files``: each one's ``Example.problem()`` ("missing", "changed" or ""), said in
        its caption instead of the activation."""
        self.layer, self.channel = layer, int(channel)
        self.examples, self.pictures = list(examples), list(pictures)
        self.patterns, self.problems = {}, {}
        self.clear()
        for example, file in zip(self.examples, files or [""] * len(self.examples)):
            value = file if file else f"{example.activation:.3g}"
            item = QListWidgetItem(f"#{example.rank + 1} {value}\n{Path(example.path).name}")
            item.setToolTip(f"{example.path}\nactivation {example.activation:.4g} at "
                            f"{example.position}, box {list(example.box)}")
            self.addItem(item)
        self._draw_icons()
        self._make_patterns()

    def set_backprop(self, method: str) -> None:
        """Show each crop's pattern by ``method`` ("guided", "deconvnet"), or none ("off")."""
        if method == self.method:
            return
        self.method = method
        self.patterns, self.problems = {}, {}
        self._size_tiles()
        self._draw_icons()
        self._make_patterns()

    def tile(self, row: int) -> np.ndarray:
        """What row ``row``'s icon shows: its crop, and beside it its pattern when the
        backprop view is on (a pale square until it arrives)."""
        from featurescope.core.render.why_report import square_tile

        crop = square_tile(self.pictures[row], TILE)
        if self.method == "off":
            return crop
        gap = np.full((TILE, GAP, 3), 255, np.uint8)
        return np.concatenate([crop, gap, square_tile(self.patterns.get(row), TILE)], axis=1)

    def _draw_icons(self, only: Optional[int] = None) -> None:
        for row in range(min(self.count(), len(self.pictures))):
            if only is None or row == only:
                self.item(row).setIcon(QIcon(_pixmap(self.tile(row))))

    def _make_patterns(self) -> None:
        if self.jobs is None:
            return
        self.jobs.cancel("examples-backprop")
        model, layer, channel, method = self.state.model, self.layer, self.channel, self.method
        if method == "off" or model is None or not self.examples:
            return
        tag = (layer, channel, method, tuple(e.path for e in self.examples))

        def unit_for(row: int, example):
            def unit(progress=None, cancel=None):
                from featurescope.core.analysis.guided import guided_backprop
                from featurescope.core.errors import FeaturescopeError
                from featurescope.core.io.images import load_image

                try:
                    found = guided_backprop(model, load_image(example.path), layer, channel,
                                            position=tuple(example.position), method=method)
                except (FeaturescopeError, OSError) as error:  # one sentence in the crop's tooltip
                    return tag, row, None, str(error)
                top, left, bottom, right = example.input_box
                return tag, row, np.ascontiguousarray(found.picture[top:bottom, left:right]), ""
            return unit

        self.jobs.submit_units("examples-backprop", [unit_for(r, e) for r, e in enumerate(self.examples)],
                               label=f"Backprop view of {layer} channel {channel}'s examples",
                               on_partial=self._pattern_ready, on_error=lambda *_: None)

    def _pattern_ready(self, answer: tuple) -> None:
        tag, row, pattern, problem = answer
        if tag != (self.layer, self.channel, self.method, tuple(e.path for e in self.examples)):
            return  # another channel or method by now
        if pattern is None:
            self.problems[row] = problem
            self.item(row).setToolTip(f"{self.item(row).toolTip()}\n{problem}")
            return
        self.patterns[row] = pattern
        self._draw_icons(only=row)
