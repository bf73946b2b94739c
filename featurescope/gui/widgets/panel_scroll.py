"""A scroll area for a panel that shows and hides itself (the arithmetic under the maps).

In a splitter the panel takes the room it needs, never more, and scrolls when the splitter
gives it less, so the pictures above keep their share; the area is shown exactly while the
panel is.
"""
from __future__ import annotations

from typing import Any

from PySide6.QtCore import QEvent
from PySide6.QtWidgets import QFrame, QScrollArea, QWidget


class PanelScroll(QScrollArea):
    """``PanelScroll(panel)``: holds ``panel`` and follows its show() and hide()."""

    def __init__(self, panel: QWidget) -> None:
        super().__init__()
        self.panel = panel
        self.setObjectName(f"{panel.objectName() or 'panel'}Scroll")
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setWidget(panel)
        panel.installEventFilter(self)
        self.setVisible(not panel.isHidden())

    def eventFilter(self, watched: Any, event: Any) -> bool:  # noqa: N802 (Qt)
        if watched is not getattr(self, "panel", None):
            return False
        if event.type() in (QEvent.Type.ShowToParent, QEvent.Type.HideToParent):
            self.setVisible(event.type() == QEvent.Type.ShowToParent)
        elif event.type() == QEvent.Type.LayoutRequest:
            # no taller than the panel wants: the pictures above get the rest
            panel = self.panel
            self.setMaximumHeight(max(panel.minimumSizeHint().height(), panel.sizeHint().height()) + 2)
        return False
