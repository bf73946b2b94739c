"""The canvas: the view bar on the left, the current view beside it.

It answers the questions a QTabWidget answers (``count``, ``currentIndex``,
``setCurrentIndex``, ``currentWidget``, ``widget``, ``indexOf``, ``tabText``,
``currentChanged``), so the window and the tests switch views the same way as before.
Each view sits in a scroll area: a view larger than the room it gets scrolls, never clips.
"""
from __future__ import annotations

from typing import Optional

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QHBoxLayout, QStackedWidget, QVBoxLayout, QWidget

from featurescope.gui.widgets.minimum_scroll import MinimumScroll

from featurescope.gui.widgets.view_bar import ViewBar


class ViewSwitcher(QWidget):
    """``addTab(view, title, group, tip)``; one view shown at a time."""

    currentChanged = Signal(int)  # noqa: N815 (QTabWidget's name)

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setObjectName("viewSwitcher")
        self.bar = ViewBar(self)
        self.stack = QStackedWidget(self)
        self.stack.setObjectName("viewStack")
        self._views: list[QWidget] = []
        self._titles: list[str] = []
        box = QHBoxLayout(self)
        box.setContentsMargins(0, 0, 0, 0)
        box.setSpacing(0)
        box.addWidget(self.bar)
        self.column = QWidget(self)  # what sits above the views (the overview strip) goes here
        column = QVBoxLayout(self.column)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(0)
        column.addWidget(self.stack, 1)
        box.addWidget(self.column, 1)
        self.bar.view_chosen.connect(self.setCurrentIndex)
        self.stack.currentChanged.connect(self._on_current_changed)

    def add_above(self, widget: QWidget) -> None:
        """Put ``widget`` above the views, right of the bar (inserted above earlier ones' views)."""
        self.column.layout().insertWidget(self.column.layout().count() - 1, widget)

    def addTab(self, view: QWidget, title: str, group: str = "", tip: str = "") -> int:  # noqa: N802
        page = MinimumScroll(view, self.stack)
        page.setObjectName(f"page_{len(self._views)}")
        self.stack.addWidget(page)
        self._views.append(view)
        self._titles.append(title)
        self.bar.add_view(title, group, tip)
        if len(self._views) == 1:
            self.bar.set_current(0)
        return len(self._views) - 1

    def count(self) -> int:
        return len(self._views)

    def currentIndex(self) -> int:  # noqa: N802
        return self.stack.currentIndex()

    def setCurrentIndex(self, index: int) -> None:  # noqa: N802
        if 0 <= index < len(self._views):
            self.stack.setCurrentIndex(index)
            self.bar.set_current(index)

    def currentWidget(self) -> Optional[QWidget]:  # noqa: N802
        index = self.currentIndex()
        return self._views[index] if 0 <= index < len(self._views) else None

    def setCurrentWidget(self, view: QWidget) -> None:  # noqa: N802
        self.setCurrentIndex(self.indexOf(view))

    def widget(self, index: int) -> Optional[QWidget]:
        return self._views[index] if 0 <= index < len(self._views) else None

    def indexOf(self, view: QWidget) -> int:  # noqa: N802
        return self._views.index(view) if view in self._views else -1

    def views(self) -> list[QWidget]:
        return list(self._views)

    def tabText(self, index: int) -> str:  # noqa: N802
        return self._titles[index]

    def _on_current_changed(self, index: int) -> None:
        self.bar.set_current(index)
        self.currentChanged.emit(index)

