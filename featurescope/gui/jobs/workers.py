"""Work off the GUI thread: one worker thread, two lanes, latest request wins.

The model and its capture hooks are not re-entrant, so every long job runs on ONE
worker thread, one unit after the other. Units wait in two lanes: what the user just
asked for (open an image, load a model, capture, Grad-CAM, a missing layer) in the
*interactive* lane, and work that only prepares things (grids and statistics of other
layers, exports) in the *background* lane, split into small units (one layer each).
The worker always takes the oldest interactive unit first, so a click waits for at
most the one background unit already running.

Each request has an id and a :class:`CancelToken`; a new request of the same kind
cancels the old one (its units left in the lane are dropped), and the answers of
requests that are no longer current are dropped. Only plain data (numpy arrays,
dataclasses, CaptureResult, LoadedModel) crosses back to the GUI thread, through the
queued signals of a separate ``JobSignals`` QObject that lives in the GUI thread.
"""
from __future__ import annotations

import itertools
import logging
import traceback
from typing import Any, Callable, Iterable, Optional, Sequence

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal, Slot

from featurescope.core.errors import FeaturescopeError
from featurescope.core.progress import CancelToken, Cancelled
from featurescope.gui.jobs.lanes import BACKGROUND, BACKGROUND_KINDS, INTERACTIVE, Lanes, Request, Unit

log = logging.getLogger(__name__)

_ids = itertools.count(1)


class JobSignals(QObject):
    """Emitted from the worker thread; delivered queued in the GUI thread."""

    finished = Signal(int, object)  # request id, result
    failed = Signal(int, str)  # request id, one sentence for the user
    cancelled = Signal(int)  # request id
    progress = Signal(int, int, int, str)  # request id, done, total, text
    partial = Signal(int, object)  # request id, a piece of the result published early


def _emit(signals: JobSignals, name: str, *args: Any) -> None:
    """Emit from the worker thread, tolerating a signals object Qt has already deleted.

    When the application quits while a job runs (a script that never closes the window),
    Qt deletes the JobSignals before the worker finishes, and emitting raises
    "RuntimeError: Signal source has been deleted". Nobody is left to receive the
    answer, so it is dropped silently instead of printing a traceback.
    """
    try:
        getattr(signals, name).emit(*args)
    except RuntimeError:
        pass


def _run_unit(unit: Unit) -> None:  # worker thread: never touch a widget here
    request, signals = unit.request, unit.signals
    if request.ended:
        return  # an earlier unit of it failed or saw the cancel
    rid, token = request.id, request.token
    whole = unit.count == 0
    try:
        if token.is_cancelled:
            raise Cancelled("cancelled before it started")

        def progress(done: int, total: int, text: str = "") -> None:
            if whole:
                _emit(signals, "progress", rid, int(done), int(total), str(text))

        kwargs: dict[str, Any] = {"progress": progress, "cancel": token}
        if whole and request.on_partial is not None:
            kwargs["partial"] = lambda piece: _emit(signals, "partial", rid, piece)
        result = unit.fn(**kwargs)
        if token.is_cancelled:
            raise Cancelled("cancelled")
    except Cancelled:
        request.ended = True
        _emit(signals, "cancelled", rid)
    except FeaturescopeError as error:
        request.ended, request.error = True, error
        _emit(signals, "failed", rid, str(error))
    except MemoryError as error:
        request.ended, request.error = True, error
        _emit(signals, "failed", rid, f"Out of memory while {request.label.lower() or 'working'}; "
                                     "try a smaller image or a smaller model.")
    except Exception as error:  # a bug, but the app must stay alive
        request.ended, request.error = True, error
        log.error("%s failed:\n%s", request.label or request.kind, traceback.format_exc())
        _emit(signals, "failed", rid, f"{request.label or request.kind} failed: "
                                     f"{type(error).__name__}: {error}")
    else:
        if whole:
            request.ended = True
            _emit(signals, "finished", rid, result)
            return
        _emit(signals, "partial", rid, result)
        if request.label:  # unlabelled background work stays out of the status bar
            _emit(signals, "progress", rid, unit.index + 1, unit.count, request.label)
        if unit.index + 1 == unit.count:
            request.ended = True
            _emit(signals, "finished", rid, None)


class _Drain(QRunnable):
    """One turn of the worker: run the most urgent unit waiting (one per unit queued)."""

    def __init__(self, lanes: Lanes, hook: Optional[Callable[[Unit], None]] = None):
        super().__init__()
        self.setAutoDelete(True)
        self._lanes, self._hook = lanes, hook

    def run(self) -> None:
        unit = self._lanes.take()
        if unit is None:
            return
        if self._hook is not None:
            self._hook(unit)
        _run_unit(unit)


def submit_or_run(jobs: Optional["JobRunner"], kind: str, work: Callable[..., Any], *,
                  on_result: Callable[[Any], None], on_error: Callable[..., None],
                  **options: Any) -> Optional["Request"]:
    """Submit ``work`` to ``jobs``; with no runner (a view used on its own, as some tests
    build them) run it here and now. A user error becomes ``on_error(sentence, error)``
    either way."""
    if jobs is not None:
        return jobs.submit(kind, work, on_result=on_result, on_error=on_error, **options)
    try:
        answer = work()
    except Exception as error:  # noqa: BLE001 - shown as a sentence, as the worker would
        on_error(str(error), error)
        return None
    on_result(answer)
    return None


class JobRunner(QObject):
    """Runs jobs on one worker thread, interactive lane first; a new request of a kind
    cancels the old one.

    ``busy_changed(busy, label)`` drives the status bar; ``progress(done, total, text)``
    reports the current job. Closing the window calls :meth:`shutdown`.
    """

    busy_changed = Signal(bool, str)
    progress = Signal(int, int, str)
    idle = Signal()
    jobs_changed = Signal()  # a labelled job started, ended or was cancelled
    job_progress = Signal(int, int, int, str)  # request id, done, total, text

    def __init__(self, parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(1)  # the model and its hooks are not re-entrant
        self._lanes = Lanes()
        self._pending: dict[int, tuple[Request, JobSignals]] = {}
        self._current: dict[str, int] = {}  # kind -> id of the request that counts
        #: called in the worker thread with each unit about to run (tests, benchmarks)
        self.unit_started: Optional[Callable[[Unit], None]] = None

    # -- submitting ---------------------------------------------------------------
    def submit(
        self,
        kind: str,
        fn: Callable[..., Any],
        *,
        label: str = "",
        on_result: Optional[Callable[[Any], None]] = None,
        on_error: Optional[Callable[[str, BaseException], None]] = None,
        on_partial: Optional[Callable[[Any], None]] = None,
        on_cancelled: Optional[Callable[[], None]] = None,
        also_cancel: Iterable[str] = (),
        lane: Optional[str] = None,
    ) -> Request:
        """Queue ``fn(progress=..., cancel=...[, partial=...])`` on the worker thread.

        The previous request of ``kind`` (and of every kind in ``also_cancel``) is
        cancelled; its answer, if it still comes, is dropped. ``lane`` defaults to
        background for the kinds in :data:`BACKGROUND_KINDS`, else interactive.
        """
        request = self._new_request(kind, label, lane, on_result, on_error, on_partial,
                                    on_cancelled, also_cancel)
        signals = self._signals()
        self._start(request, signals, [Unit(request, fn, signals)])
        return request

    def submit_units(
        self,
        kind: str,
        units: Sequence[Callable[..., Any]],
        *,
        label: str = "",
        on_partial: Optional[Callable[[Any], None]] = None,
        on_result: Optional[Callable[[Any], None]] = None,
        on_error: Optional[Callable[[str, BaseException], None]] = None,
        on_cancelled: Optional[Callable[[], None]] = None,
        also_cancel: Iterable[str] = (),
        lane: str = BACKGROUND,
    ) -> Optional[Request]:
        """Queue one request made of small units, ``unit(progress=..., cancel=...)`` each.

        Each unit waits in the lane on its own, so interactive work queued meanwhile
        runs before the next unit. What a unit returns goes to ``on_partial`` (GUI
        thread); ``on_result(None)`` follows the last one. None when ``units`` is empty
        (the previous request of ``kind`` is still cancelled).
        """
        units = list(units)
        if not units:
            for other in (kind, *also_cancel):
                self.cancel(other)
            return None
        request = self._new_request(kind, label, lane, on_result, on_error, on_partial,
                                    on_cancelled, also_cancel)
        signals = self._signals()
        self._start(request, signals, [Unit(request, fn, signals, index, len(units))
                                       for index, fn in enumerate(units)])
        return request

    def _new_request(self, kind, label, lane, on_result, on_error, on_partial, on_cancelled,
                     also_cancel) -> Request:
        for other in (kind, *also_cancel):
            self.cancel(other)
        if lane is None:
            lane = BACKGROUND if kind in BACKGROUND_KINDS else INTERACTIVE
        if lane not in (INTERACTIVE, BACKGROUND):
            raise ValueError(f"unknown lane {lane!r}")
        return Request(next(_ids), kind, label, CancelToken(), lane, on_result, on_error,
                       on_partial, on_cancelled)

    def _signals(self) -> JobSignals:
        signals = JobSignals()  # created here, so it lives in the GUI thread
        signals.finished.connect(self._on_finished)
        signals.failed.connect(self._on_failed)
        signals.cancelled.connect(self._on_cancelled)
        signals.progress.connect(self._on_progress)
        signals.partial.connect(self._on_partial)
        return signals

    def _start(self, request: Request, signals: JobSignals, units: list[Unit]) -> None:
        self._pending[request.id] = (request, signals)
        self._current[request.kind] = request.id
        was_idle = len(self._pending) == 1
        self._lanes.put(units)
        for _ in units:
            self.pool.start(_Drain(self._lanes, self.unit_started))
        if was_idle or request.label:
            self.busy_changed.emit(True, self._busy_label())
        if request.label:
            self.jobs_changed.emit()

    def cancel(self, kind: Optional[str] = None) -> None:
        """Cancel the current request of ``kind``, or every request when None."""
        cancelled = False
        for request, _ in list(self._pending.values()):
            if (kind is None or request.kind == kind) and not request.token.is_cancelled:
                request.token.cancel()
                cancelled = True
        if kind is None:
            self._current.clear()
        else:
            self._current.pop(kind, None)
        if cancelled:
            self._lanes.drop_ended()
            self.jobs_changed.emit()

    def cancel_request(self, request_id: int) -> None:
        """Cancel one request (the jobs list's Cancel); stopped until asked again."""
        entry = self._pending.get(request_id)
        if entry is None or entry[0].token.is_cancelled:
            return
        request = entry[0]
        request.token.cancel()
        if self._current.get(request.kind) == request_id:
            del self._current[request.kind]
        self._lanes.drop_ended()
        self.jobs_changed.emit()

    def running(self) -> list[Request]:
        """The labelled requests waiting or running and not cancelled, oldest first:
        what the jobs list shows."""
        return [r for r, _ in self._pending.values() if r.label and not r.token.is_cancelled]

    # -- state --------------------------------------------------------------------
    def is_current(self, request_id: int) -> bool:
        request = self._pending.get(request_id)
        return request is not None and self._current.get(request[0].kind) == request_id

    def is_idle(self) -> bool:
        """True when no request is waiting or running (answers delivered included)."""
        return not self._pending

    def shutdown(self, timeout_ms: int = 30000) -> bool:
        """Cancel everything and wait for the worker thread; True when it stopped.

        Units not yet started never run, so this waits for the one running unit only.
        """
        self.cancel()
        self._lanes.clear()
        self.pool.clear()
        done = self.pool.waitForDone(timeout_ms)
        for request_id in list(self._pending):
            self._forget(request_id)
        return done

    def _busy_label(self) -> str:
        labels = [r.label for r, _ in self._pending.values() if r.label and not r.token.is_cancelled]
        return labels[-1] if labels else ""

    # -- answers (GUI thread) -------------------------------------------------------
    def _forget(self, request_id: int) -> Optional[Request]:
        entry = self._pending.pop(request_id, None)
        if entry is None:
            return None
        request, signals = entry
        if self._current.get(request.kind) == request_id:
            del self._current[request.kind]
        signals.deleteLater()
        if request.label:
            self.jobs_changed.emit()
        if not self._pending:
            self.busy_changed.emit(False, "")
            self.idle.emit()
        else:
            self.busy_changed.emit(True, self._busy_label())
        return request

    def _take(self, request_id: int) -> tuple[Optional[Request], bool]:
        current = self.is_current(request_id)
        return self._forget(request_id), current

    @Slot(int, object)
    def _on_finished(self, request_id: int, result: Any) -> None:
        request, current = self._take(request_id)
        if request is not None and current and not request.token.is_cancelled and request.on_result:
            request.on_result(result)

    @Slot(int, str)
    def _on_failed(self, request_id: int, message: str) -> None:
        request, current = self._take(request_id)
        if request is not None and current and request.on_error:
            request.on_error(message, request.error)

    @Slot(int)
    def _on_cancelled(self, request_id: int) -> None:
        request, _ = self._take(request_id)
        if request is not None and request.on_cancelled:
            request.on_cancelled()

    @Slot(int, int, int, str)
    def _on_progress(self, request_id: int, done: int, total: int, text: str) -> None:
        if self.is_current(request_id):
            request = self._pending[request_id][0]
            request.done, request.total, request.text = done, total, text
            self.progress.emit(done, total, text)
            self.job_progress.emit(request_id, done, total, text)

    @Slot(int, object)
    def _on_partial(self, request_id: int, piece: Any) -> None:
        entry = self._pending.get(request_id)
        if entry and self.is_current(request_id) and entry[0].on_partial:
            entry[0].on_partial(piece)
