"""Where live frames come from: a camera, a video file, generated moving shapes, and a
fake camera that plays any of them in real time (tests and machines without a camera).

A source has ``name``, ``fps``, ``frame_count`` (0 for a camera), ``seekable``, ``live``
(True when it paces itself, as a camera does), ``read()`` -> (H, W, 3) uint8 RGB or None
at the end, ``seek(index)``, ``position`` (the index of the next frame), ``problem`` (a
sentence when it ended early, else "") and ``close()``. Only the grabber thread calls them.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import numpy as np

from featurescope.core.io.videos import Camera, VideoReader, VideoWriter


class VideoFileSource:
    """A video file (OpenCV); raises VideoError when it cannot be read."""

    live = False
    seekable = True

    def __init__(self, path):
        self.reader = VideoReader(path)
        self.path = self.reader.path  # exports hash the file and record the frame's index
        self.name = self.reader.name
        self.fps = self.reader.fps
        self.frame_count = self.reader.frame_count

    @property
    def position(self) -> int:
        return self.reader.position

    @property
    def problem(self) -> str:
        return self.reader.problem

    def read(self) -> Optional[np.ndarray]:
        return self.reader.read()

    def seek(self, index: int) -> None:
        self.reader.seek(index)

    def close(self) -> None:
        self.reader.close()


class CameraSource:
    """Camera ``index`` (OpenCV); raises CameraError when it is missing or busy."""

    live = True
    seekable = False
    frame_count = 0
    problem = ""

    def __init__(self, index: int = 0):
        self.camera = Camera(index)
        self.name = self.camera.name
        self.fps = self.camera.fps
        self.position = 0

    def read(self) -> Optional[np.ndarray]:
        frame = self.camera.read()
        if frame is not None:
            self.position += 1
        return frame

    def seek(self, index: int) -> None:  # a camera has no past
        pass

    def close(self) -> None:
        self.camera.close()


def shapes_frame(index: int, width: int = 160, height: int = 120, frames: int = 75) -> np.ndarray:
    """Frame ``index`` of the moving-shapes clip: a red disc crossing left to right, a
    blue square moving down and a green bar sweeping, on a grey gradient; every frame differs."""
    t = (index % max(1, frames)) / max(1, frames - 1)
    yy, xx = np.mgrid[0:height, 0:width]
    frame = np.empty((height, width, 3), np.uint8)
    frame[...] = (60 + 80 * xx / width)[..., None].astype(np.uint8)
    cx, cy, r = int(10 + t * (width - 20)), height // 3, max(4, height // 8)
    frame[(xx - cx) ** 2 + (yy - cy) ** 2 <= r * r] = (230, 40, 40)
    sy, s = int(t * (height - height // 4)), height // 4
    sx = width - width // 4 - s // 2
    frame[sy:sy + s, sx:sx + s] = (40, 60, 230)
    bar = int((1 - t) * (width - 6))
    frame[height - height // 5:, bar:bar + 6] = (40, 220, 60)
    return frame


class GeneratedSource:
    """``frames`` frames of moving shapes at ``fps`` (no file, no camera)."""

    live = False
    seekable = True
    problem = ""

    def __init__(self, frames: int = 75, size: tuple[int, int] = (160, 120), fps: float = 25.0):
        self.frame_count, self.size, self.fps = int(frames), size, float(fps)
        self.name = "generated shapes"
        self.position = 0

    def read(self) -> Optional[np.ndarray]:
        if self.position >= self.frame_count:
            return None
        frame = shapes_frame(self.position, *self.size, self.frame_count)
        self.position += 1
        return frame

    def seek(self, index: int) -> None:
        self.position = max(0, min(int(index), self.frame_count - 1))

    def close(self) -> None:
        pass


class FakeCamera:
    """Plays ``source`` as a camera would: ``read()`` blocks until the next frame is due
    at the source's rate, whether or not anyone keeps up; ``loop`` starts over at the end."""

    live = True
    seekable = False
    frame_count = 0
    problem = ""

    def __init__(self, source, loop: bool = False, fps: Optional[float] = None, name: str = "fake camera"):
        self.source, self.loop, self.name = source, loop, name
        self.fps = float(fps or source.fps or 25.0)
        self.position = 0
        self._next = None

    def read(self) -> Optional[np.ndarray]:
        now = time.perf_counter()
        if self._next is None:
            self._next = now
        if self._next > now:
            time.sleep(self._next - now)
        self._next = max(self._next + 1.0 / self.fps, time.perf_counter() - 1.0 / self.fps)
        frame = self.source.read()
        if frame is None and self.loop:
            self.source.seek(0)
            frame = self.source.read()
        if frame is not None:
            self.position += 1
        return frame

    def seek(self, index: int) -> None:
        pass

    def close(self) -> None:
        self.source.close()


def write_shapes_video(path, frames: int = 75, size: tuple[int, int] = (160, 120), fps: float = 25.0,
                       force: bool = True) -> Path:
    """Write the moving-shapes clip to ``path`` (.mp4 or .avi); returns the path."""
    writer = VideoWriter(path, fps, force=force)
    with writer:
        for index in range(frames):
            writer.write(shapes_frame(index, *size, frames))
        return writer.finish()


def open_source(spec) -> object:
    """A source from a spec: an int (camera index), "camera:N", or a video file path."""
    if isinstance(spec, int):
        return CameraSource(spec)
    text = str(spec)
    if text.startswith("camera:") and text[7:].isdigit():
        return CameraSource(int(text[7:]))
    return VideoFileSource(text)
