"""The column of view buttons left of the canvas, under headings for what the user is doing.

It never scrolls and never hides: every view is one click away at any window size (a tab
bar of nine views needed scroll arrows at 1280x800). Buttons at the bottom hold window
actions (side panels, the key sheet).
"""
from __future__ import annotations

from typing import Optional

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import (QButtonGroup, QFrame, QLabel, QPushButton, QSizePolicy,
                               QVBoxLayout, QWidget)

WIDTH = 134  # wide enough for "Learn the arithmetic", the longest heading
STYLE = """
QPushButton { text-align: left; padding: 4px 8px; border: none; border-radius: 3px; }
QPushButton:hover:!checked { background: palette(midlight); }
QPushButton:checked { background: palette(highlight); color: palette(highlighted-text); }
QPushButton[foot="true"] { color: palette(dark); }
QLabel[heading="true"] { color: palette(dark); font-size: 8pt;
                         padding: 8px 2px 1px 2px; }
"""


class ViewBar(QFrame):
    """Checkable buttons, one per view, in groups; ``view_chosen(index)`` on a click."""

    view_chosen = Signal(int)

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setObjectName("viewBar")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setStyleSheet(STYLE)
        self.setFixedWidth(WIDTH)
        self.buttons: list[QPushButton] = []
        self._group = QButtonGroup(self)
        self._group.setExclusive(True)
        self._group.idClicked.connect(self.view_chosen)
        self._heading = ""
        self._box = QVBoxLayout(self)
        self._box.setContentsMargins(4, 2, 4, 4)
        self._box.setSpacing(1)
        self._views = QVBoxLayout()
        self._views.setSpacing(1)
        self._box.addLayout(self._views)
        self._box.addStretch(1)

    def add_view(self, title: str, group: str = "", tip: str = "") -> QPushButton:
        """A button for the next view, under ``group``'s heading (a new one when it changes)."""
        if group and group != self._heading:
            heading = QLabel(group, self)
            heading.setProperty("heading", True)
            self._views.addWidget(heading)
            self._heading = group
        button = self._button(title, tip)
        button.setCheckable(True)
        self._group.addButton(button, len(self.buttons))
        self.buttons.append(button)
        self._views.addWidget(button)
        return button

    def add_action(self, action: QAction, text: str = "") -> QPushButton:
        """A button at the foot of the bar that triggers ``action`` (a window action, not a view)."""
        keys = action.shortcut().toString()
        button = self._button(text or action.text().replace("&", ""),
                              action.toolTip() + (f" ({keys})" if keys else ""))
        button.setProperty("foot", True)
        button.clicked.connect(action.trigger)
        self._box.addWidget(button)
        return button

    def set_current(self, index: int) -> None:
        if 0 <= index < len(self.buttons):
            self.buttons[index].setChecked(True)

    def set_shortcut_text(self, index: int, keys: str) -> None:
        """Name the key in the button's tooltip ("Grad-CAM (Ctrl+4): ...")."""
        button = self.buttons[index]
        tip = button.property("plainTip") or ""
        button.setToolTip(f"{button.text()} ({keys})" + (f": {tip}" if tip else ""))

    def _button(self, title: str, tip: str) -> QPushButton:
        button = QPushButton(self)
        button.setText(title)
        button.setProperty("plainTip", tip)
        button.setToolTip(tip)
        button.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        button.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # keys stay with the view
        return button
