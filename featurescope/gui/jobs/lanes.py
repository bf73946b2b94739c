"""The two lanes the worker thread drains: what the user asked for, then background units.

Plain Python (no Qt): a request is split into units; the worker takes the oldest
interactive unit when there is one, else the oldest background unit, so interactive
work waits for at most the one unit already running.
"""
from __future__ import annotations

import collections
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Optional

from featurescope.core.progress import CancelToken

INTERACTIVE, BACKGROUND = "interactive", "background"
#: kinds that only prepare or write things: they never make the user wait
BACKGROUND_KINDS = frozenset({"grids", "stats", "export"})


@dataclass
class Request:
    """One submitted job: what it is, how to cancel it, where its answer goes."""

    id: int
    kind: str
    label: str
    token: CancelToken
    lane: str = INTERACTIVE
    on_result: Optional[Callable[[Any], None]] = None
    on_error: Optional[Callable[[str, BaseException], None]] = None
    on_partial: Optional[Callable[[Any], None]] = None
    on_cancelled: Optional[Callable[[], None]] = None
    error: Optional[BaseException] = field(default=None, repr=False)
    ended: bool = field(default=False, repr=False)  # worker thread: its answer is out
    # GUI thread: the last progress reported (the jobs list shows it)
    done: int = field(default=0, repr=False)
    total: int = field(default=0, repr=False)
    text: str = field(default="", repr=False)


@dataclass
class Unit:
    """One piece of a request: ``index`` of ``count``; ``count`` 0 for a whole job."""

    request: Request
    fn: Callable[..., Any]
    signals: Any  # the JobSignals its answers go through
    index: int = 0
    count: int = 0


class Lanes:
    """The two queues the worker drains, interactive first (any thread, locked)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lanes = {INTERACTIVE: collections.deque(), BACKGROUND: collections.deque()}

    def put(self, units: Iterable[Unit]) -> None:
        with self._lock:
            for unit in units:
                self._lanes[unit.request.lane].append(unit)

    def take(self) -> Optional[Unit]:
        with self._lock:
            for lane in (INTERACTIVE, BACKGROUND):
                if self._lanes[lane]:
                    return self._lanes[lane].popleft()
        return None

    def drop_ended(self) -> None:
        """Forget units of cancelled requests except each one's first (it reports)."""
        with self._lock:
            for lane, queue in self._lanes.items():
                seen: set[int] = set()
                kept = collections.deque()
                for unit in queue:
                    request = unit.request
                    if request.token.is_cancelled and request.id in seen:
                        continue
                    seen.add(request.id)
                    kept.append(unit)
                self._lanes[lane] = kept

    def clear(self) -> None:
        with self._lock:
            for queue in self._lanes.values():
                queue.clear()
