"""Progress reporting and cooperative cancellation for long work.

Long work in the engine is a plain function that takes ``progress`` (a callable
``(done, total, text)``) and ``cancel`` (a :class:`CancelToken`). It knows nothing of
threads or Qt; the GUI runs it on a worker thread and the CLI prints a bar.
"""
from __future__ import annotations

import threading
from typing import Callable, Optional

ProgressCallback = Callable[[int, int, str], None]


class Cancelled(Exception):
    """Raised inside long work when its :class:`CancelToken` was cancelled."""


class CancelToken:
    """A flag one thread sets and long work checks between steps."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def is_cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise Cancelled("cancelled")


def report(progress: Optional[ProgressCallback], done: int, total: int, text: str = "") -> None:
    """Call ``progress`` if there is one; long work calls this instead of checking for None."""
    if progress is not None:
        progress(done, total, text)


def check(cancel: Optional[CancelToken]) -> None:
    """Raise :class:`Cancelled` if ``cancel`` is set; a no-op without a token."""
    if cancel is not None:
        cancel.raise_if_cancelled()
