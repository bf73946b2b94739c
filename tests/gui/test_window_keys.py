"""Issue 16: the keys work wherever the focus is, the key sheet lists them all, the side
panels collapse and come back, and the view registry is what the window shows."""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QApplication, QTabBar

from featurescope.gui.views.registry import VIEWS
from featurescope.gui.widgets.shortcut_sheet import ShortcutSheet, shortcut_rows


def _activate(qtbot, window):
    window.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is window)


def _front_tabs(window) -> set:
    """The panel in front in each tabbed group of docks."""
    bars = [bar for bar in window.findChildren(QTabBar) if bar.isVisible() and bar.count()
            and bar.parentWidget() is window]
    return {bar.tabText(bar.currentIndex()) for bar in bars}


def test_layer_keys_work_from_any_view_but_not_while_typing(window, qtbot):
    _activate(qtbot, window)
    layers = window.layer_panel.layer_names()
    window.tabs.setCurrentWidget(window.playground_view)
    window.playground_view.setFocus()
    start = layers.index(window.state.layer)
    qtbot.keyClick(window.playground_view, Qt.Key.Key_Down)
    assert window.state.layer == layers[start + 1]
    qtbot.keyClick(window.playground_view, Qt.Key.Key_PageDown)
    assert window.state.layer == layers[start + 6]
    qtbot.keyClick(window.playground_view, Qt.Key.Key_Up)
    assert window.state.layer == layers[start + 5]
    # in a text field Up/Down belong to the field
    window.tabs.setCurrentWidget(window.gradcam_view)
    field = window.gradcam_view.class_search
    field.setFocus()
    qtbot.waitUntil(field.hasFocus)
    here = window.state.layer
    qtbot.keyClick(field, Qt.Key.Key_Down)
    qtbot.keyClick(field, Qt.Key.Key_PageUp)
    assert window.state.layer == here


def test_the_key_sheet_lists_every_key_the_window_has(window, qtbot):
    rows = shortcut_rows(window)
    keys = {(k, text) for k, text, _where in rows}
    assert ("Down", "Next layer") in keys and ("PgUp", "Five layers back") in keys
    for index, entry in enumerate(VIEWS[:9]):
        assert (f"Ctrl+{index + 1}", entry.title) in keys
    assert any(text == "Next channel" and where == "Channel view" for _k, text, where in rows)
    assert any("?" in k and text == "Keyboard shortcuts" for k, text, _w in rows)
    # read from the actions when it opens: a key added anywhere is on the sheet
    extra = QAction("Do something new", window)
    extra.setShortcut(QKeySequence("Ctrl+Alt+J"))
    window.addAction(extra)
    sheet = ShortcutSheet(window)
    assert ("Ctrl+Alt+J", "Do something new", "anywhere") in sheet.rows()
    sheet.close()


def test_side_panels_collapse_and_come_back_remembered(make_window, qtbot, settings_path, wait_idle):
    window = make_window()
    wait_idle(window)
    docks = window._docks()
    stack_width = window.tabs.stack.width()
    layers_height, front = window.layers_dock.height(), _front_tabs(window)
    assert front == {"Layers", "Image"}
    window.panels.action.trigger()  # Ctrl+B
    qtbot.waitUntil(lambda: all(dock.isHidden() for dock in docks))
    qtbot.waitUntil(lambda: window.tabs.stack.width() > stack_width + 200)
    window.save_settings()
    # back as they were: the same panels in front, the same heights
    window.panels.action.trigger()
    qtbot.waitUntil(lambda: window.tabs.stack.width() == stack_width)
    qtbot.wait(50)
    assert abs(window.layers_dock.height() - layers_height) <= 3
    assert _front_tabs(window) == front
    window.panels.action.trigger()
    qtbot.waitUntil(lambda: all(dock.isHidden() for dock in docks))
    again = make_window(start=False)
    assert all(dock.isHidden() for dock in again._docks()) and not again.panels.action.isChecked()
    again.panels.action.trigger()
    assert all(not dock.isHidden() for dock in again._docks())


def test_the_registry_is_what_the_window_shows(window):
    assert window.tabs.count() == len(VIEWS)
    for index, entry in enumerate(VIEWS):
        view = getattr(window, f"{entry.name}_view")
        assert window.tabs.widget(index) is view and window.tabs.tabText(index) == entry.title
        window.tabs.bar.buttons[index].click()
        assert window.tabs.currentWidget() is view
    headings = [entry.group for entry in VIEWS]
    assert headings.index("Explain a decision") > headings.index("Explore a layer")
