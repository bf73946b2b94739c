"""Docks of the main window: creating them, their default arrangement, collapsing them all,
a Qt tab-bar fix.

The side panels share one column left of the canvas (the canvas keeps at least 60 % of a
1280 px window); each panel sits in a scroll area, so a short dock scrolls instead of
squeezing its contents. ``LAYOUT_VERSION`` goes with saveState: a layout saved by an
older arrangement is not restored over a new one.
"""
from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QDockWidget, QMainWindow, QTabBar, QWidget

from featurescope.gui.widgets.minimum_scroll import MinimumScroll

LAYOUT_VERSION = 3  # 1: two dock columns and a tab bar of views (until issue 16); 2: model on top
COLUMN_WIDTH = 345  # the side column's width in the default layout
DOCK_FEATURES = (QDockWidget.DockWidgetMovable | QDockWidget.DockWidgetFloatable
                 | QDockWidget.DockWidgetClosable)


def add_dock(window: QMainWindow, title: str, name: str, widget: QWidget,
             area: Qt.DockWidgetArea) -> QDockWidget:
    """A movable, floatable, closable dock with an objectName (for saveState); ``widget``
    scrolls inside it when the dock is smaller than the widget's minimum size."""
    dock = QDockWidget(title, window)
    dock.setObjectName(name)
    scroll = MinimumScroll(widget, dock)
    scroll.setObjectName(f"{name}Scroll")
    dock.setWidget(scroll)
    dock.setFeatures(DOCK_FEATURES)
    window.addDockWidget(area, dock)
    dock.dockLocationChanged.connect(lambda *_: schedule_tab_bar_check(window))
    dock.topLevelChanged.connect(lambda *_: schedule_tab_bar_check(window))
    return dock


def arrange_default(window: QMainWindow, top_tabs: list, bottom_tabs: list) -> None:
    """Two groups of tabbed docks, one above the other, the first of each raised."""
    for tabs in (top_tabs, bottom_tabs):
        for other in tabs[1:]:
            window.tabifyDockWidget(tabs[0], other)
        tabs[0].raise_()
    window.resizeDocks([top_tabs[0], bottom_tabs[0]], [300, 420], Qt.Vertical)
    window.resizeDocks([top_tabs[0]], [COLUMN_WIDTH], Qt.Horizontal)


class PanelToggle:
    """Collapse every side panel at once and bring back the ones that were open.

    ``action`` is checkable (checked = panels shown); the docks' own visibility is what
    saveState remembers between runs.
    """

    def __init__(self, window: QMainWindow, docks: list, action: Any) -> None:
        self.window, self.docks, self.action = window, list(docks), action
        self._saved: Any = None  # the window's state when the panels were folded away
        action.setCheckable(True)
        self.sync()
        action.toggled.connect(self.set_shown)
        for dock in self.docks:
            dock.visibilityChanged.connect(lambda *_: self.sync())

    def any_shown(self) -> bool:
        return any(not dock.isHidden() for dock in self.docks)

    def set_shown(self, shown: bool) -> None:
        if shown == self.any_shown():
            return
        if shown and self._saved is not None:
            # the arrangement as it was: showing docks one by one raises the last of each
            # tab group and shares the heights out anew
            self.window.restoreState(self._saved, LAYOUT_VERSION)
        elif shown:
            for dock in self.docks:
                dock.show()
        else:
            self._saved = self.window.saveState(LAYOUT_VERSION)
            for dock in self.docks:
                dock.hide()
        schedule_tab_bar_check(self.window)

    def sync(self) -> None:
        """Follow a dock closed or opened on its own (its close button, the View menu)."""
        shown = self.any_shown()
        if self.action.isChecked() != shown:
            self.action.blockSignals(True)
            self.action.setChecked(shown)
            self.action.blockSignals(False)


def schedule_tab_bar_check(window: QMainWindow, *_: Any) -> None:
    QTimer.singleShot(0, window, lambda: hide_stray_tab_bars(window))


def hide_stray_tab_bars(window: QMainWindow) -> None:
    """Hide dock tab bars the layout no longer uses.

    Qt 6.12 leaves a second, stale copy of a tabbed dock group's tab bar visible
    (after a second tabifyDockWidget or a restoreState), drawn over the window. The
    live bar sits right against the dock it shows; a stray one does not.
    """
    docks = {dock.windowTitle(): dock for dock in window.findChildren(QDockWidget)}
    for bar in window.findChildren(QTabBar, options=Qt.FindDirectChildrenOnly):
        if not bar.isVisible() or bar.count() == 0:
            continue
        dock = docks.get(bar.tabText(bar.currentIndex()))
        if dock is None:
            continue
        g, d = bar.geometry(), dock.geometry()
        live = (dock.isVisible() and not dock.isFloating() and abs(g.left() - d.left()) <= 4
                and (abs(g.top() - d.bottom()) <= 8 or abs(g.bottom() - d.top()) <= 8))
        if not live:
            bar.hide()
