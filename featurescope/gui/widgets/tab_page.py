"""A tab page that redraws only while it is shown.

The Filters, Channel, Grad-CAM and Compare tabs listen to every layer, channel and
display change, but only the visible one should spend time on it (a layer switch must
stay within a frame). ``refresh()`` redraws a visible page and only marks a hidden one
stale; showing a stale page redraws it.
"""
from __future__ import annotations

from typing import Any

from PySide6.QtWidgets import QWidget


class TabPage(QWidget):
    """Subclasses implement ``redraw()``; signals connect to ``refresh``."""

    _stale = True

    def showEvent(self, event: Any) -> None:  # noqa: N802 - Qt's name
        super().showEvent(event)
        if self._stale:
            self.refresh()

    def refresh(self, *_: Any) -> None:
        """Redraw now if visible; otherwise redraw when next shown."""
        if not self.isVisible():
            self._stale = True
            return
        self._stale = False
        self.redraw()

    def redraw(self) -> None:
        raise NotImplementedError
