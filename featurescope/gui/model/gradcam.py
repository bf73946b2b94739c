"""The Grad-CAM choices a user makes, as plain data: the class explained and the opacity.

Qt-free (psygnal), held by :class:`AppState` as ``state.gradcam``: the Grad-CAM view
shows and changes them, the Grad-CAM export reads them from here (never from a widget).
"""
from __future__ import annotations

from typing import Optional

from psygnal import Signal

DEFAULT_OPACITY = 0.55


class GradCamChoice:
    """The class to explain (None: the top class) and the overlay's opacity (0-1)."""

    target_changed = Signal(object)  # int class index or None
    opacity_changed = Signal(float)

    def __init__(self) -> None:
        self.target: Optional[int] = None
        self.opacity: float = DEFAULT_OPACITY

    def set_target(self, target: Optional[int]) -> None:
        target = None if target is None else int(target)
        if target != self.target:
            self.target = target
            self.target_changed.emit(target)

    def set_opacity(self, opacity: float) -> None:
        opacity = min(1.0, max(0.0, float(opacity)))
        if opacity != self.opacity:
            self.opacity = opacity
            self.opacity_changed.emit(opacity)
