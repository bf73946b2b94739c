"""At most one call per interval: what a live stream of results needs from slow listeners.

A live video hands the state a new capture 10-30 times a second. Listeners that compute
something from each one (the overview strip's tiles, the layer's histogram) would queue
work faster than it is done and keep the status bar busy; through a :class:`Throttle`
the first call runs at once (a photo is shown without delay) and the calls that come
within the interval collapse into one at its end, on the latest state.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Optional

from PySide6.QtCore import QObject, QTimer


class Throttle(QObject):
    """Calls ``fn()`` at most once per ``interval`` seconds (GUI thread)."""

    def __init__(self, fn: Callable[[], Any], interval: float, parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self.fn, self.interval = fn, float(interval)
        self.calls = 0  # how often fn ran (tests, benchmarks)
        self._last = float("-inf")
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self._fire)

    def __call__(self, *_: Any) -> None:
        wait = self._last + self.interval - time.perf_counter()
        if wait <= 0 and not self._timer.isActive():
            self._fire()
        elif not self._timer.isActive():
            self._timer.start(max(1, int(wait * 1000)))

    def _fire(self) -> None:
        self._last = time.perf_counter()
        self.calls += 1
        self.fn()
