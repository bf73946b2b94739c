"""Up/Down/PgUp/PgDn change the layer wherever the focus is, except while typing.

The keys are window actions (so the shortcut sheet lists them and every view gets them);
a text field or a spin box keeps them: Qt asks the focused widget and then its parents
with a ShortcutOverride event before a shortcut fires, and a filter on the window says
"the field wants this key" while the focus is in a field a user types in.
"""
from __future__ import annotations

from typing import Any, Callable

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (QAbstractSpinBox, QApplication, QLineEdit, QMainWindow,
                               QPlainTextEdit, QTextEdit)

STEPS = (("Previous layer", "Up", -1), ("Next layer", "Down", 1),
         ("Five layers back", "PgUp", -5), ("Five layers on", "PgDown", 5))
TYPING = (QLineEdit, QAbstractSpinBox, QTextEdit, QPlainTextEdit)
KEYS = {Qt.Key.Key_Up, Qt.Key.Key_Down, Qt.Key.Key_PageUp, Qt.Key.Key_PageDown}


def is_typing(widget: Any) -> bool:
    """True for a widget the user types into (a read-only text view does not count)."""
    if isinstance(widget, (QTextEdit, QPlainTextEdit)):
        return not widget.isReadOnly()
    return isinstance(widget, TYPING)


class LayerKeys(QObject):
    """``LayerKeys(window, layer_names, current, set_layer)``; ``actions`` in STEPS order."""

    def __init__(self, window: QMainWindow, layer_names: Callable[[], list],
                 current: Callable[[], str], set_layer: Callable[[str], Any]) -> None:
        super().__init__(window)
        self.layer_names, self.current, self.set_layer = layer_names, current, set_layer
        self.actions: list[QAction] = []
        for text, key, step in STEPS:
            action = QAction(text, window)
            action.setShortcut(QKeySequence(key))
            action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
            action.triggered.connect(lambda *_, s=step: self.step(s))
            window.addAction(action)
            self.actions.append(action)
        window.installEventFilter(self)

    def step(self, step: int) -> None:
        names = self.layer_names()
        if not names:
            return
        here = names.index(self.current()) if self.current() in names else 0
        self.set_layer(names[max(0, min(len(names) - 1, here + step))])

    def eventFilter(self, watched: Any, event: Any) -> bool:  # noqa: N802 (Qt)
        if (event.type() == QEvent.Type.ShortcutOverride and event.key() in KEYS
                and is_typing(QApplication.focusWidget())):
            event.accept()  # the field gets the key as a key press, the shortcut does not fire
        return False
