"""Docks of the main window: creating them, their default arrangement, a Qt tab-bar fix."""
from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QDockWidget, QMainWindow, QTabBar, QWidget

DOCK_FEATURES = (QDockWidget.DockWidgetMovable | QDockWidget.DockWidgetFloatable
                 | QDockWidget.DockWidgetClosable)


def add_dock(window: QMainWindow, title: str, name: str, widget: QWidget,
             area: Qt.DockWidgetArea) -> QDockWidget:
    """A movable, floatable, closable dock with an objectName (for saveState)."""
    dock = QDockWidget(title, window)
    dock.setObjectName(name)
    dock.setWidget(widget)
    dock.setFeatures(DOCK_FEATURES)
    window.addDockWidget(area, dock)
    dock.dockLocationChanged.connect(lambda *_: schedule_tab_bar_check(window))
    dock.topLevelChanged.connect(lambda *_: schedule_tab_bar_check(window))
    return dock


def arrange_default(window: QMainWindow, left_top: QDockWidget, left_tabs: list,
                    right_top: QDockWidget, right_tabs: list) -> None:
    """One dock on top of each side column, the others as tabs below it (first one raised)."""
    for tabs in (left_tabs, right_tabs):
        for other in tabs[1:]:
            window.tabifyDockWidget(tabs[0], other)
        tabs[0].raise_()
    window.resizeDocks([left_top, left_tabs[0]], [440, 340], Qt.Vertical)
    window.resizeDocks([right_top, right_tabs[0]], [440, 340], Qt.Vertical)
    window.resizeDocks([left_top, right_top], [390, 330], Qt.Horizontal)


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
