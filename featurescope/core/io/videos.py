"""Reading and writing video files, and opening cameras, through OpenCV.

Why OpenCV (``opencv-python-headless``, the ``featurescope[video]`` extra) and not PyAV
or Qt Multimedia: it is the one pip wheel that does all three jobs on Linux, macOS and
Windows, with no system libraries and no Qt: cameras (V4L2 / AVFoundation / Media
Foundation and DirectShow, each OS's own API), reading every common container (FFmpeg is
inside the Linux and Windows wheels, AVFoundation on macOS) and writing MP4 (``mp4v``)
or AVI (``MJPG``). PyAV reads and writes files as well but opens a camera only with a
per-OS device string (``/dev/video0``, ``avfoundation:0``, ``dshow:video=...``), and
Qt Multimedia (PySide6-Addons, ~300 MB) would tie the engine to Qt, which core must
never import. OpenCV is already in the test extra through grad-cam. The headless wheel
has no GUI of its own, so it does not fight PySide6 over Qt plugins.

Frames are (H, W, 3) uint8 RGB numpy arrays everywhere (OpenCV's BGR stays in here).
Every failure is a :class:`~featurescope.core.errors.VideoError` with one sentence.
"""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Optional, Union

import numpy as np

from featurescope.core.errors import CameraError, ExportError, VideoError
from featurescope.core.io.writers import refuse_existing

PathLike = Union[str, os.PathLike]

# extension -> FourCC; both are inside OpenCV's wheels on every OS
WRITE_CODECS = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG"}
# frame rates both codecs write and read back as asked: OpenCV's MJPG writer wants >= 1
# below 0.5 and its .avi reader caps the rate at 600
FPS_RANGE = (0.5, 600.0)
# Below this much free space a video being written is taken to have hit a full disk
# (checked every DISK_CHECK_EVERY frames, so a long render stops soon after it fills).
MIN_FREE_BYTES = 1 << 20
DISK_CHECK_EVERY = 16


def _cv2():
    try:
        import cv2
    except ImportError:  # pragma: no cover - the extra is missing
        raise VideoError("Video and camera support needs OpenCV: pip install 'featurescope[video]'.") from None
    try:  # OpenCV prints a line per failed probe otherwise ("can't open camera by index")
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    except AttributeError:  # pragma: no cover
        pass
    return cv2


class VideoReader:
    """A video file, read frame by frame: ``read()`` -> (H, W, 3) uint8 RGB or None at the end.

    ``fps``, ``frame_count`` (from the header; 0 when unknown), ``size`` (W, H),
    ``position`` (index of the next frame), ``seek(index)``. ``truncated`` is set (and
    ``problem`` says it in one sentence) when the file ends before the frames its header
    announces. Raises VideoError when the file is missing or not a video OpenCV reads.
    """

    def __init__(self, path: PathLike):
        self.path = Path(path)
        name = self.path.name
        if not self.path.exists():
            raise VideoError(f"{self.path} does not exist.")
        if self.path.is_dir():
            raise VideoError(f"{self.path} is a folder, not a video file.")
        if self.path.stat().st_size == 0:
            raise VideoError(f"{name} is empty (0 bytes), not a video.")
        cv2 = _cv2()
        self._cv2 = cv2
        self._capture = cv2.VideoCapture(str(self.path))
        if not self._capture.isOpened():
            self._capture.release()
            raise VideoError(f"{name} is not a video OpenCV can read (unknown format or damaged file).")
        self.fps = float(self._capture.get(cv2.CAP_PROP_FPS) or 0.0)
        if not (FPS_RANGE[0] <= self.fps <= FPS_RANGE[1]):
            self.fps = 25.0  # a header without a rate: play at a usual one
        self.frame_count = max(0, int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0))
        self.size = (int(self._capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
                     int(self._capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        self.position = 0
        self.truncated = False
        self.problem = ""
        first = self.read()
        if first is None:
            self.close()
            raise VideoError(f"{name} has no frame OpenCV can decode (truncated or damaged).")
        self._first: Optional[np.ndarray] = first
        self.position = 0

    @property
    def name(self) -> str:
        return self.path.name

    def read(self) -> Optional[np.ndarray]:
        """The next frame as RGB, or None at the end (``truncated`` set if it came early)."""
        first = getattr(self, "_first", None)
        if first is not None:
            self._first = None
            self.position = 1
            return first
        ok, bgr = self._capture.read()
        if not ok or bgr is None:
            # mp4 headers may round the count by a frame or two; more is a damaged file
            if self.frame_count and self.position < self.frame_count - 2 and not self.truncated:
                self.truncated = True
                self.problem = (f"{self.name} ended after {self.position} of the {self.frame_count} "
                                "frames its header announces (truncated or damaged file).")
            return None
        self.position += 1
        return self._cv2.cvtColor(bgr, self._cv2.COLOR_BGR2RGB)

    def seek(self, index: int) -> None:
        """Make frame ``index`` (clamped to the clip) the next one read."""
        index = max(0, int(index))
        if self.frame_count:
            index = min(index, self.frame_count - 1)
        self._first = None
        self._capture.set(self._cv2.CAP_PROP_POS_FRAMES, index)
        self.position = index

    def close(self) -> None:
        self._capture.release()

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *_exc) -> None:
        self.close()


def read_video(path: PathLike) -> VideoReader:
    """Open ``path`` for reading (see :class:`VideoReader`)."""
    return VideoReader(path)


class VideoWriter:
    """Write RGB frames to ``path`` (.mp4/.m4v/.mov with mp4v, .avi with MJPG) atomically.

    Frames go to a hidden partial file beside ``path``; :meth:`finish` renames it into
    place, :meth:`abort` (or leaving the ``with`` block by an exception) removes it, so
    a failed or cancelled render leaves no half-written video. Every frame must have
    the size of the first; odd sizes are padded by one pixel (codecs want even ones).
    Raises ExportError when the file exists (without ``force``), the folder cannot be
    written or OpenCV cannot encode that format.
    """

    def __init__(self, path: PathLike, fps: float, force: bool = False):
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in WRITE_CODECS:
            raise ExportError(f"{self.path.name}: featurescope writes videos as "
                              f"{', '.join(sorted(WRITE_CODECS))}, not {suffix or 'a file without extension'}.")
        refuse_existing([self.path], force)
        folder = self.path.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ExportError(f"Cannot create the folder {folder}: {error.strerror or error}.") from None
        if not os.access(folder, os.W_OK):
            raise ExportError(f"Cannot write {self.path.name}: the folder {folder} is read-only.")
        if not FPS_RANGE[0] <= float(fps) <= FPS_RANGE[1]:
            raise ExportError(f"{self.path.name}: {fps:g} frames per second is outside "
                              f"{FPS_RANGE[0]:g} to {FPS_RANGE[1]:g}, the rates .mp4 and .avi hold.")
        self.fps = float(fps)
        self.codec = WRITE_CODECS[suffix]
        self._partial = folder / f".{self.path.stem}.partial{suffix}"
        self._writer = None
        self._size: Optional[tuple[int, int]] = None
        self.frames = 0

    def _open(self, width: int, height: int) -> None:
        cv2 = _cv2()
        writer = cv2.VideoWriter(str(self._partial), cv2.VideoWriter_fourcc(*self.codec), self.fps,
                                 (width, height))
        if not writer.isOpened():
            writer.release()
            self._remove_partial()
            self._refuse_if_disk_full()
            raise ExportError(f"OpenCV cannot encode {self.path.name} with the {self.codec} codec on "
                              "this system; try the other of .mp4 and .avi.")
        self._writer, self._size = writer, (width, height)

    def write(self, rgb: np.ndarray) -> None:
        """Append one (H, W, 3) uint8 RGB frame."""
        rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
        height, width = rgb.shape[:2]
        even = (width + width % 2, height + height % 2)
        if self._writer is None:
            self._open(*even)
        if even != self._size:
            raise ExportError(f"Frame {self.frames} of {self.path.name} is {width}x{height}, "
                              f"not {self._size[0]}x{self._size[1]} like the first.")
        if (width, height) != even:
            rgb = np.pad(rgb, ((0, even[1] - height), (0, even[0] - width), (0, 0)), mode="edge")
        cv2 = _cv2()
        self._writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        self.frames += 1
        if self.frames % DISK_CHECK_EVERY == 0:  # OpenCV's writer drops frames silently
            self._refuse_if_disk_full()

    def _refuse_if_disk_full(self) -> None:
        try:
            free = shutil.disk_usage(self.path.parent).free
        except OSError:
            return
        if free < MIN_FREE_BYTES:
            raise ExportError(f"{self.path.name} could not be written because the disk holding "
                              f"{self.path.parent} is full; free some space or choose another folder.")

    def _frames_on_disk(self) -> int:
        """How many frames the finished partial file holds, read back (-1: unreadable).
        OpenCV reports no write error, so this is how a full disk or a file-size limit
        is noticed: the container's index (mp4's moov, avi's idx1) is written last."""
        cv2 = _cv2()
        capture = cv2.VideoCapture(str(self._partial))
        try:
            return int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else -1
        finally:
            capture.release()

    def finish(self) -> Path:
        """Close the file and move it into place; returns the path."""
        if self._writer is None:
            raise ExportError(f"No frame was written to {self.path.name}.")
        self._writer.release()
        self._writer = None
        written = self._partial.exists() and self._partial.stat().st_size > 0
        if not written or self._frames_on_disk() < self.frames:
            self._remove_partial()
            self._refuse_if_disk_full()
            if written:
                raise ExportError(f"{self.path.name} could not be written: the file was cut off "
                                  "before its end (a full disk or a file-size limit), so nothing "
                                  "was saved; free some space or choose another folder.")
            raise ExportError(f"OpenCV wrote nothing to {self.path.name} (the {self.codec} codec "
                              "failed); try the other of .mp4 and .avi.")
        try:
            os.replace(self._partial, self.path)
        except OSError as error:
            self._remove_partial()
            raise ExportError(f"Cannot write {self.path}: {error.strerror or error}.") from None
        return self.path

    def _remove_partial(self) -> None:
        try:
            self._partial.unlink()
        except OSError:
            pass

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        self._remove_partial()

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, *_exc) -> None:
        if exc_type is not None:
            self.abort()


# -- cameras ------------------------------------------------------------------------------
def _camera_backend(cv2) -> int:
    if sys.platform.startswith("linux"):
        return cv2.CAP_V4L2
    if sys.platform == "darwin":
        return cv2.CAP_AVFOUNDATION
    if sys.platform.startswith("win"):
        return cv2.CAP_MSMF
    return cv2.CAP_ANY  # pragma: no cover


def list_cameras(limit: int = 8) -> list[int]:
    """Indices of the cameras present (opened and closed again, nothing read).

    On Linux only the indices of existing /dev/videoN nodes are tried, so a machine
    without a camera answers at once. Returns [] when there is none; raises VideoError
    (its sentence names the extra to install) when OpenCV is missing, which is the reason
    to give then, not "no camera".
    """
    cv2 = _cv2()
    if sys.platform.startswith("linux"):
        candidates = sorted(int(p.name[5:]) for p in Path("/dev").glob("video*") if p.name[5:].isdigit())
    else:
        candidates = list(range(limit))
    found = []
    for index in candidates[:limit]:
        capture = cv2.VideoCapture(index, _camera_backend(cv2))
        if capture.isOpened():
            found.append(index)
        capture.release()
    return found


NO_CAMERA = "No camera was found; connect one (or allow this app to use it) and choose Live again."


class Camera:
    """Camera ``index`` opened for reading: ``read()`` -> RGB frame, blocking until the
    camera gives one. Raises CameraError when it cannot be opened or gives no frame
    (another program holds it)."""

    def __init__(self, index: int = 0, width: Optional[int] = None, height: Optional[int] = None):
        cv2 = _cv2()
        self._cv2 = cv2
        self.index = int(index)
        self.name = f"camera {self.index}"
        self._capture = cv2.VideoCapture(self.index, _camera_backend(cv2))
        if not self._capture.isOpened():
            self._capture.release()
            raise CameraError(f"Camera {self.index} cannot be opened (unplugged, or this app is "
                              "not allowed to use it).")
        if width and height:
            self._capture.set(cv2.CAP_PROP_FRAME_WIDTH, width)
            self._capture.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        self._capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # the newest frame, not a queue
        self.fps = float(self._capture.get(cv2.CAP_PROP_FPS) or 0.0) or 30.0
        ok, _ = self._capture.read()
        if not ok:
            self._capture.release()
            raise CameraError(f"Camera {self.index} is present but gives no picture; another "
                              "program is probably using it.")

    def read(self) -> Optional[np.ndarray]:
        ok, bgr = self._capture.read()
        if not ok or bgr is None:
            return None
        return self._cv2.cvtColor(bgr, self._cv2.COLOR_BGR2RGB)

    def close(self) -> None:
        self._capture.release()
