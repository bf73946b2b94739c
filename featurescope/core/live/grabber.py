"""Frames grabbed on their own thread; the newest frame wins, older ones are dropped.

:class:`LatestFrame` is a one-frame slot: ``put`` replaces a frame nobody took (counted
in ``dropped``), ``take`` waits for a fresh one. :class:`FrameGrabber` reads a source
into a slot on a daemon thread, paced three ways: a live source (camera) paces itself;
``pace="realtime"`` plays a file at its frame rate (frames the model cannot keep up with
are dropped, as with a camera); ``pace="demand"`` decodes the next frame as soon as the
previous one was taken (benchmarks and "as fast as the network runs"). Seeking, stepping
and pausing are requests the grabber thread carries out, since sources are not
thread-safe.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional

import numpy as np


@dataclass
class Frame:
    """One grabbed frame: pixels (H, W, 3) uint8 RGB, its index in the source, when it
    was grabbed (``time.perf_counter()``) and the source's frame rate."""

    pixels: np.ndarray
    index: int
    grabbed_at: float
    fps: float = 0.0
    prepared: Any = None  # what ``prepare(pixels)`` returned on the grabber thread, if given

    @property
    def seconds(self) -> float:
        return self.index / self.fps if self.fps else 0.0


class LatestFrame:
    """A slot holding at most one frame: the newest."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._frame: Optional[Frame] = None
        self.ended = False
        self.dropped = 0
        self.grabbed = 0

    def put(self, frame: Frame) -> None:
        with self._cond:
            if self._frame is not None:
                self.dropped += 1  # nobody took it: the newer one replaces it
            self._frame = frame
            self.grabbed += 1
            self._cond.notify_all()

    def discard(self) -> None:
        """Forget the frame nobody took (not counted as dropped: the user moved away)."""
        with self._cond:
            self._frame = None
            self._cond.notify_all()

    def end(self) -> None:
        with self._cond:
            self.ended = True
            self._cond.notify_all()

    def take(self, timeout: Optional[float] = None) -> Optional[Frame]:
        """The newest frame not yet taken, waiting up to ``timeout`` s; None when none came
        (or the source ended and everything was taken)."""
        with self._cond:
            if self._frame is None and not self.ended:
                self._cond.wait(timeout)
            frame, self._frame = self._frame, None
            self._cond.notify_all()
            return frame

    @property
    def empty(self) -> bool:
        with self._cond:
            return self._frame is None

    def wait_empty(self, timeout: float) -> bool:
        with self._cond:
            if self._frame is not None:
                self._cond.wait(timeout)
            return self._frame is None


class FrameGrabber:
    """Reads ``source`` into :attr:`slot` on its own thread until stopped or the end.

    ``pace``: "realtime" (default; a live source always paces itself) or "demand".
    ``prepare(pixels)``, when given, runs on the grabber thread for each frame (the
    model's preprocessing, so it overlaps the previous frame's forward pass); its answer
    is ``frame.prepared``. ``error``: the exception that ended it, else None.
    """

    def __init__(self, source, pace: str = "realtime", start_paused: bool = False,
                 prepare: Optional[Callable[[np.ndarray], Any]] = None):
        if pace not in ("realtime", "demand"):
            raise ValueError(f"unknown pace {pace!r}")
        self.source, self.pace, self.prepare = source, pace, prepare
        self.slot = LatestFrame()
        self.error: Optional[BaseException] = None
        self._stop = threading.Event()
        self._running = threading.Event()
        if not start_paused:
            self._running.set()
        self._lock = threading.Lock()
        self._seek: Optional[int] = None
        self._steps = 0
        self._thread = threading.Thread(target=self._run, name=f"grab {source.name}", daemon=True)

    def start(self) -> "FrameGrabber":
        self._thread.start()
        return self

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    def pause(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    def seek(self, index: int) -> None:
        """Grab frame ``index`` next (also while paused: it is shown)."""
        with self._lock:
            self._seek, self._steps = int(index), 1
        self.slot.ended = False
        self._wake()

    def frame_at(self, index: int, timeout: float = 5.0, cancel=None) -> Optional[Frame]:
        """Seek to frame ``index`` and wait for exactly that frame; None when it does not
        come within ``timeout`` s (past the end). A frame grabbed before the seek (still
        in the slot, or read while it was asked for) is never the answer: stepping from
        49 shows 50, not a frame the grabber had read ahead."""
        from featurescope.core.progress import check

        index = int(index)
        self.slot.discard()
        self.seek(index)
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            check(cancel)
            frame = self.slot.take(timeout=0.1)
            if frame is not None and frame.index == index:
                return frame
            if frame is None and self.slot.ended and self.slot.empty and self._seek is None:
                return None
        return None

    def step(self, delta: int = 1) -> None:
        """While paused: grab the frame ``delta`` away from the last one."""
        position = self.source.position
        self.seek(position - 1 + delta)

    def _wake(self) -> None:
        with self.slot._cond:
            self.slot._cond.notify_all()

    def frames(self, cancel=None) -> Iterator[Frame]:
        """The newest frame each time the caller asks (older ones dropped), until the
        source has ended and its last frame was taken; ``cancel`` is checked between."""
        from featurescope.core.progress import check

        while True:
            check(cancel)
            frame = self.slot.take(timeout=0.1)
            if frame is not None:
                yield frame
            elif self.slot.ended and self.slot.empty:
                return

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        self._running.set()
        self._wake()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        try:
            self.source.close()
        except Exception:  # pragma: no cover - closing must not fail the caller
            pass

    def _run(self) -> None:
        source = self.source
        fps = float(getattr(source, "fps", 0.0) or 25.0)
        paced = self.pace == "realtime" and not getattr(source, "live", False)
        next_due = time.perf_counter()
        try:
            while not self._stop.is_set():
                with self._lock:
                    seek, one_shot = self._seek, self._steps > 0
                    self._seek, self._steps = None, 0
                if seek is not None:
                    source.seek(seek)
                elif not self._running.is_set():
                    self._running.wait(0.05)
                    continue
                if self.pace == "demand" and not one_shot:
                    # one frame ahead: decode the next only once the last was taken
                    if not self.slot.wait_empty(0.05):
                        continue
                elif paced and not one_shot:
                    now = time.perf_counter()
                    if next_due > now:
                        time.sleep(min(next_due - now, 0.05))
                        continue
                    next_due = max(next_due + 1.0 / fps, now - 1.0 / fps)
                index = source.position
                pixels = source.read()
                if pixels is None:
                    self.slot.end()
                    if one_shot or self._seek is not None:
                        continue
                    while not self._stop.is_set() and self._seek is None:
                        self._stop.wait(0.05)  # wait for a seek back or the stop
                    continue
                grabbed = time.perf_counter()
                prepared = self.prepare(pixels) if self.prepare is not None else None
                self.slot.put(Frame(pixels, index, grabbed, fps, prepared))
        except Exception as error:  # a source that fails mid-way: one sentence, not a hang
            self.error = error
            self.slot.end()
