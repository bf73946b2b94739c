"""Every key of the window on one sheet (Help > Keyboard shortcuts, or ``?``).

The rows are read from the window's own actions and shortcuts when the sheet opens, so a
key added anywhere shows up here and a key that changes cannot go stale on the sheet.
"""
from __future__ import annotations

from typing import Any, Optional

from PySide6.QtGui import QAction, QKeySequence, QShortcut
from PySide6.QtWidgets import (QDialog, QDialogButtonBox, QHeaderView, QLabel, QMenu,
                               QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

MOUSE = (("Wheel", "Zoom a picture", "every picture"), ("Drag", "Pan a picture", "every picture"),
         ("Fit button", "Show the whole picture again", "every picture"))


def _keys(sequences: list) -> str:
    return ", ".join(s.toString(QKeySequence.SequenceFormat.NativeText) for s in sequences if not s.isEmpty())


def _where(action: QAction) -> str:
    for owner in action.associatedObjects():
        if isinstance(owner, QMenu) and owner.title():
            return owner.title().replace("&", "")
    return "anywhere"


def shortcut_rows(window: QWidget) -> list[tuple[str, str, str]]:
    """(keys, what they do, where) for every action and shortcut under ``window`` that has a key."""
    rows, seen = [], set()
    for action in window.findChildren(QAction):
        keys = _keys(action.shortcuts())
        text = action.text().replace("&", "").rstrip(".").strip()
        if keys and text and (keys, text) not in seen:
            seen.add((keys, text))
            rows.append((keys, text, _where(action)))
    for shortcut in window.findChildren(QShortcut):
        keys = _keys([shortcut.key()])
        text = shortcut.whatsThis() or "(no description)"
        if keys and (keys, text) not in seen:
            seen.add((keys, text))
            rows.append((keys, text, shortcut.property("where") or "a view"))
    rows.sort(key=lambda row: (row[2] != "anywhere", row[2], row[1]))
    return rows


class ShortcutSheet(QDialog):
    """A table of the keys of ``window`` and the mouse gestures every picture knows."""

    def __init__(self, window: QWidget, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent or window)
        self.setObjectName("shortcutSheet")
        self.setWindowTitle("Keyboard shortcuts")
        rows = shortcut_rows(window) + list(MOUSE)
        self.table = QTableWidget(len(rows), 3, self)
        self.table.setHorizontalHeaderLabels(["Keys", "What they do", "Where"])
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 6)
        for row, values in enumerate(rows):
            for column, value in enumerate(values):
                self.table.setItem(row, column, QTableWidgetItem(value))
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.ResizeToContents)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        buttons.rejected.connect(self.reject)
        box = QVBoxLayout(self)
        box.addWidget(QLabel("Keys work wherever the focus is; Up/Down/PgUp/PgDn stay with a "
                             "text field while you type in it.", self))
        box.addWidget(self.table, 1)
        box.addWidget(buttons)
        self.resize(620, 560)

    def rows(self) -> list[tuple[Any, ...]]:
        return [tuple(self.table.item(r, c).text() for c in range(3)) for r in range(self.table.rowCount())]
