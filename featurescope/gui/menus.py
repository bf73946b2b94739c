"""The menu bar and the window's keyboard shortcuts: File, Edit, View, Help."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QDockWidget, QMainWindow, QMenu

from featurescope.gui.widgets.shortcut_sheet import ShortcutSheet
from featurescope.gui.widgets.view_switcher import ViewSwitcher

from featurescope.gui.export_actions import ExportActions
from featurescope.gui.image_sources import ImageSources


@dataclass
class MenuActions:
    """The actions other code (and tests) trigger directly."""

    open_action: QAction
    paste_action: QAction
    quit_action: QAction
    fit_action: QAction
    cancel_action: QAction
    recent_menu: QMenu
    panels_action: QAction
    shortcuts_action: QAction


def make_action(parent: QMainWindow, text: str, slot: Callable[[], object], shortcut=None,
                tip: str = "") -> QAction:
    action = QAction(text, parent)
    if shortcut is not None:
        action.setShortcut(QKeySequence(shortcut))
    if tip:
        action.setToolTip(tip)
        action.setStatusTip(tip)
    action.triggered.connect(lambda *_: slot())
    return action


def build_menus(window: QMainWindow, images: ImageSources, exports: ExportActions, atlas,
                tabs: ViewSwitcher, fit_pictures: Callable[[], None], docks: Iterable[QDockWidget],
                cancel_jobs: Callable[[], None]) -> MenuActions:
    """Fill ``window``'s menu bar; Esc (cancel the running job) works anywhere in it."""
    menus = window.menuBar()
    file_menu = menus.addMenu("&File")
    open_action = make_action(window, "&Open image...", images.open_image_dialog, QKeySequence.Open,
                              "Open an image file")
    paste_action = make_action(window, "&Paste image", images.paste, QKeySequence.Paste,
                               "Use the image (or image file path) on the clipboard")
    recent_menu = file_menu.addMenu("Open &recent")
    file_menu.insertAction(recent_menu.menuAction(), open_action)
    file_menu.addAction(paste_action)
    _add_samples(file_menu.addMenu("&Samples"), images)
    file_menu.addSeparator()
    export_menu = file_menu.addMenu("&Export")
    for action in (exports.export_grid_action, exports.export_activations_action,
                   exports.export_all_action, exports.export_selected_action):
        export_menu.addAction(action)
    export_menu.addSeparator()
    export_menu.addAction(exports.export_gradcam_action)
    export_menu.addAction(exports.export_comparison_action)
    # a comparison or a Grad-CAM becomes possible without a state event: check on opening
    export_menu.aboutToShow.connect(exports.update_enabled)
    export_menu.addSeparator()
    export_menu.addAction(exports.annotate_action)
    file_menu.addSeparator()
    file_menu.addAction(atlas.build_action)
    file_menu.addAction(atlas.open_action)
    file_menu.addSeparator()
    quit_action = make_action(window, "&Quit", window.close, QKeySequence.Quit)
    file_menu.addAction(quit_action)

    edit_menu = menus.addMenu("&Edit")
    edit_menu.addAction(exports.copy_action)
    edit_menu.addAction(paste_action)

    view_menu = menus.addMenu("&View")
    fit_action = make_action(window, "&Fit pictures", fit_pictures, "F",
                             "Show the pictures of the current view whole")
    view_menu.addAction(fit_action)
    _add_tab_switches(view_menu, window, tabs)
    view_menu.addSeparator()
    panels_action = make_action(window, "Side &panels", lambda: None, "Ctrl+B",
                                "Collapse or bring back every side panel")
    view_menu.addAction(panels_action)
    for dock in docks:
        view_menu.addAction(dock.toggleViewAction())
    cancel_action = make_action(window, "Cancel running job", cancel_jobs, "Esc")
    window.addAction(cancel_action)

    help_menu = menus.addMenu("&Help")
    shortcuts_action = make_action(window, "&Keyboard shortcuts", lambda: ShortcutSheet(window).exec(),
                                   None, "Every key of the window")
    shortcuts_action.setShortcuts([QKeySequence("?"), QKeySequence("F1")])
    help_menu.addAction(shortcuts_action)
    images.attach_recent_menu(recent_menu)
    return MenuActions(open_action, paste_action, quit_action, fit_action, cancel_action, recent_menu,
                       panels_action, shortcuts_action)


def _add_samples(menu: QMenu, images: ImageSources) -> None:
    from featurescope.core.resources import sample_images

    for path in sample_images():
        menu.addAction(path.stem.replace("_", " "), lambda p=str(path): images.request_image(p))


def _add_tab_switches(menu: QMenu, window: QMainWindow, tabs: ViewSwitcher) -> None:
    """One action per view, Ctrl+1 ... Ctrl+9 and Ctrl+0 in the view bar's order; the bar's
    tooltips name the keys."""
    for index in range(tabs.count()):
        key = f"Ctrl+{index + 1}" if index < 9 else "Ctrl+0" if index == 9 else None
        menu.addAction(make_action(window, tabs.tabText(index),
                                   lambda i=index: tabs.setCurrentIndex(i), key))
        if key:
            tabs.bar.set_shortcut_text(index, key)
