"""Live: a camera or a video file through the network, frame after frame, in the app.

Frames are grabbed on their own thread (core/live/grabber.py; the newest wins, older
ones are dropped). One ``live`` job on the worker thread takes the newest frame and
captures it, only as deep as the selected layer (to the end when the predictions are
on screen); its answer becomes the state's image and result, so the grid, the Channel
tab, the Grad-CAM tab and the predictions follow as for a photo, and the next job is
submitted. The GUI thread only draws. Pause (Space) turns the current frame into an
opened photo (a full capture), so every tab and export works on it.
"""
from __future__ import annotations

import time
from collections import deque
from typing import Any, Callable

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QFileDialog, QInputDialog, QMainWindow, QToolBar

from featurescope.core.errors import FeaturescopeError
from featurescope.core.io.provenance import FrameOf
from featurescope.gui.controllers.model_loading import first_layer
from featurescope.gui.widgets.live_bar import LiveBar

VIDEO_FILTER = "Videos (*.mp4 *.m4v *.mov *.avi *.mkv *.webm *.mpg *.mpeg *.wmv);;All files (*)"


def _cameras() -> list[int]:
    from featurescope.core.io.videos import list_cameras

    return list_cameras()


def _open_camera(index: int):
    from featurescope.core.live.sources import CameraSource

    return CameraSource(index)


class LiveController(QObject):
    """Live camera and video playback for ``window`` (menu, toolbar, status bar, bar).

    ``show_photo(image, source)`` makes a frame the opened photo (the window's normal
    path: set the image, capture every layer). ``want_logits()``: run each frame to the
    end (predictions or Grad-CAM on screen); ``worker_views()``: a view that computes on
    the worker from each frame is shown. ``list_cameras`` and ``open_camera``
    are attributes so tests can put a fake camera in.
    """

    frame_shown = Signal(int)  # frame index, after the state holds it
    stopped = Signal()

    def __init__(self, window: QMainWindow, state, jobs, show_photo: Callable[[Any, str], None],
                 show_status: Callable[[str], None], show_error: Callable[[str], None],
                 want_logits: Callable[[], bool] = lambda: True,
                 worker_views: Callable[[], bool] = lambda: False) -> None:
        super().__init__(window)
        self.window, self.state, self.jobs = window, state, jobs
        self.show_photo, self.show_status, self.show_error = show_photo, show_status, show_error
        self.want_logits = want_logits
        # True while a view that computes on the worker from each frame (Grad-CAM) is
        # shown: its job then goes before the next frame's, so it is drawn for every frame
        self.worker_views = worker_views
        self.list_cameras: Callable[[], list] = _cameras
        self.open_camera: Callable[[int], Any] = _open_camera
        self.source: Any = None
        self.grabber: Any = None
        self.paused = False
        self.last: Any = None  # the LiveFrame shown last
        self.shown = 0
        self.position = -1  # the frame shown, or asked for by a step or seek still on its way
        self._dropped_before = 0  # frames the slot had dropped when this play started
        self.latencies: deque = deque(maxlen=30)
        self._times: deque = deque(maxlen=30)
        self.longest_handler = 0.0  # seconds: the longest time one frame held the GUI thread
        self._build(window)
        state.model_changed.connect(self._on_model_changed)

    # -- construction -----------------------------------------------------------------------
    def _action(self, text: str, slot, shortcut=None, tip: str = "") -> QAction:
        action = QAction(text, self.window)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        action.setToolTip(tip or text.replace("&", "").rstrip("."))
        action.setStatusTip(tip)
        action.triggered.connect(lambda *_: slot())
        return action

    def _build(self, window: QMainWindow) -> None:
        self.camera_action = self._action("&Live camera...", self.start_camera, "Ctrl+L",
                                          "Show the camera's feature maps live")
        self.video_action = self._action("Open &video...", self.open_video_dialog, "Ctrl+Shift+O",
                                         "Play a video file through the network")
        self.pause_action = self._action("&Pause / resume", self.toggle_pause, Qt.Key_Space,
                                         "Freeze the current frame (it becomes the opened photo)")
        self.step_back_action = self._action("Step &back", lambda: self.step(-1), "Ctrl+Left")
        self.step_action = self._action("Step &forward", lambda: self.step(1), "Ctrl+Right")
        self.stop_action = self._action("&Stop live", self.stop, "Ctrl+Shift+L")
        menu = window.menuBar().addMenu("&Live")
        for action in (self.camera_action, self.video_action, None, self.pause_action,
                       self.step_back_action, self.step_action, None, self.stop_action):
            menu.addSeparator() if action is None else menu.addAction(action)
        self.toolbar = QToolBar("Live", window)
        self.toolbar.setObjectName("liveToolbar")
        self.toolbar.addAction(self.camera_action)
        self.toolbar.addAction(self.video_action)
        self.bar = LiveBar()
        self.bar_action = self.toolbar.addWidget(self.bar)
        window.addToolBar(Qt.TopToolBarArea, self.toolbar)
        self.bar.play_clicked.connect(self.toggle_pause)
        self.bar.step_clicked.connect(self.step)
        self.bar.seek_requested.connect(self.seek)
        window.statusBar().addPermanentWidget(self.bar.rate_label)
        self._update_actions()

    def _update_actions(self) -> None:
        running = self.grabber is not None
        seekable = running and bool(getattr(self.source, "seekable", False))
        for action in (self.pause_action, self.stop_action):
            action.setEnabled(running)
        for action in (self.step_action, self.step_back_action):
            action.setEnabled(seekable and self.paused)
        self.bar_action.setVisible(running)
        self.bar.set_mode(running, seekable, self.paused, int(getattr(self.source, "frame_count", 0) or 0))

    # -- starting ---------------------------------------------------------------------------
    def start_camera(self) -> None:
        """Live from a camera: one from the list of those present (asked when several)."""
        # Listing and opening stay on the GUI thread: on macOS OpenCV's AVFoundation
        # backend asks for camera permission by spinning the main run loop and fails from
        # any other thread (opencv/opencv#16427, #14396). On Linux the listing only tries
        # existing /dev/videoN nodes, so it answers at once.
        from featurescope.core.io.videos import NO_CAMERA

        try:
            cameras = self.list_cameras()
        except FeaturescopeError as error:  # no OpenCV: say which extra to install
            self.show_error(str(error))
            return
        if not cameras:
            self.show_error(NO_CAMERA)
            return
        index = cameras[0]
        if len(cameras) > 1:
            names = [f"Camera {i}" for i in cameras]
            name, ok = QInputDialog.getItem(self.window, "Live camera", "Camera:", names, 0, False)
            if not ok:
                return
            index = cameras[names.index(name)]
        try:
            source = self.open_camera(index)
        except FeaturescopeError as error:
            self.show_error(str(error))
            return
        self.start(source)

    def open_video_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self.window, "Open video", "", VIDEO_FILTER)
        if path:
            self.open_video(path)

    def open_video(self, path: str) -> bool:
        """Play a video file live; False (and one sentence shown) when it cannot be read."""
        from featurescope.core.live.sources import VideoFileSource

        try:
            source = VideoFileSource(path)
        except FeaturescopeError as error:
            self.show_error(str(error))
            return False
        self.start(source)
        return True

    def start(self, source: Any, pace: str = "realtime") -> None:
        """Show ``source`` (any core/live source) live."""
        from featurescope.core.live.grabber import FrameGrabber

        self.stop()
        self.source, self.paused, self.shown, self.position = source, False, 0, -1
        self._dropped_before = 0
        self.latencies.clear()
        self._times.clear()
        # a clip waits for the model: played while it loads, it would end unseen
        self.grabber = FrameGrabber(source, pace=pace, prepare=self._preparer(self.state.model),
                                    start_paused=self.state.model is None).start()
        self._update_actions()
        self.show_status(f"Live: {source.name}. Space pauses.")
        self._submit_next()

    @staticmethod
    def _preparer(model: Any):
        """Frames are preprocessed for ``model`` on the grabber thread (None: no model yet)."""
        from featurescope.core.live.loop import preparer

        return preparer(model) if model is not None else None

    def _on_model_changed(self, model: Any) -> None:
        if self.grabber is not None:
            self.grabber.prepare = self._preparer(model)  # one attribute: safe to swap
            if model is not None and not self.paused and self.grabber.paused:
                self.grabber.resume()  # it waited for the model

    def stop(self) -> None:
        """End live; what is shown stays."""
        if self.grabber is None:
            return
        self.jobs.cancel("live")
        self.grabber.stop()
        self.grabber, self.source = None, None
        self.bar.rate_label.setText("")
        self._update_actions()
        self.stopped.emit()

    # -- the loop ---------------------------------------------------------------------------
    def _layer(self) -> str:
        state = self.state
        if state.layer:
            return state.layer
        return first_layer(state.result) if state.result is not None else ""

    def _submit_next(self) -> None:
        grabber = self.grabber
        if grabber is None or self.paused:
            return
        model = self.state.model
        layer = self._layer()
        infos = list(getattr(model, "layer_info", None) or [])
        if infos and layer not in {info.name for info in infos}:  # a new model: its first conv
            layer = next((i.name for i in infos if i.kind == "Conv2d"), infos[0].name)
        logits = bool(self.want_logits())
        slot = grabber.slot

        def work(progress, cancel):
            from featurescope.core.live.loop import capture_frame

            while True:
                cancel.raise_if_cancelled()
                frame = slot.take(timeout=0.1)
                if frame is not None:
                    break
                if slot.ended and slot.empty:
                    return None
            if model is None or not layer:
                return frame  # no model yet: nothing to capture
            return capture_frame(model, frame, layer, logits=logits, cancel=cancel)

        self.jobs.submit("live", work, on_result=lambda answer: self._on_answer(answer, grabber, model),
                         on_error=self._on_error)

    def _on_answer(self, answer: Any, grabber: Any, model: Any) -> None:
        if grabber is not self.grabber or self.paused:
            return
        if answer is None:  # the source ended
            self._ended()
            return
        if not hasattr(answer, "result") or model is not self.state.model:
            self._submit_next()  # no model yet, or it changed: the next frame uses the new one
            return
        started = time.perf_counter()
        live = answer
        self.last = live
        serial = bool(self.worker_views())
        if not serial:  # the worker captures the next frame while this thread draws this one
            self._submit_next()
        self.state.set_frame(live.image, self._frame_name(live.frame.index), live.result)
        self.position = live.frame.index
        now = time.perf_counter()
        self.longest_handler = max(self.longest_handler, now - started)
        self.latencies.append(now - live.frame.grabbed_at)
        self._times.append(now)
        self.shown += 1
        self.bar.set_position(live.frame.index)
        self._show_rate()
        self.frame_shown.emit(live.frame.index)
        if serial:
            self._submit_next()

    def _show_rate(self) -> None:
        times = self._times
        fps = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0
        latency = sorted(self.latencies)[len(self.latencies) // 2] * 1000 if self.latencies else 0.0
        dropped = self.grabber.slot.dropped - self._dropped_before if self.grabber is not None else 0
        self.bar.rate_label.setText(f"Live {fps:.1f} fps, latency {latency:.0f} ms, "
                                    f"{dropped} dropped this play")

    def _frame_name(self, index: int) -> str:
        return f"{getattr(self.source, 'name', 'live')} (frame {index})"

    def _show_paused(self) -> None:
        """The status bar says so for as long as it is paused (not a passing message)."""
        at = f" at frame {self.position}" if self.position >= 0 else ""
        self.bar.rate_label.setText(f"Paused{at} (Space resumes)")

    def _on_error(self, message: str, _error: Any = None) -> None:
        self.stop()
        self.show_error(message)

    def _ended(self) -> None:
        grabber = self.grabber
        problem = str(grabber.error) if grabber is not None and grabber.error else \
            getattr(self.source, "problem", "")
        if getattr(self.source, "seekable", False) and not (grabber is not None and grabber.error):
            self.paused = True  # the end of a clip: hold its last frame, the slider can go back
            grabber.pause()
            self._freeze()
            self._update_actions()
            if problem:
                self.show_error(problem)
            else:
                self.show_status(f"{self.source.name} ended; drag the slider or press Space to play again.")
            return
        name = getattr(self.source, "name", "the camera")
        self.stop()
        self.show_error(problem or f"{name} stopped giving frames.")

    # -- pause, step, seek ------------------------------------------------------------------
    def _freeze(self) -> None:
        """The last shown frame becomes the opened photo (every tab and export works on it)."""
        if self.last is not None:
            index = self.last.frame.index
            path = getattr(self.source, "path", None)
            origin = FrameOf(str(path), index) if path else ""
            self.show_photo(self.last.image, self._frame_name(index), origin)
            self._show_paused()

    def toggle_pause(self) -> None:
        if self.grabber is None:
            return
        if self.paused:
            self.paused = False
            if self.grabber.slot.ended and getattr(self.source, "seekable", False):
                self.grabber.seek(0)  # play again from the start
            self._dropped_before = self.grabber.slot.dropped  # dropped frames count per play
            self._times.clear()
            self.grabber.resume()
            self._update_actions()
            self._submit_next()
        else:
            self.paused = True
            self.grabber.pause()
            self.jobs.cancel("live")
            self._freeze()
            self._update_actions()
            self.show_status("Paused: this frame is now the opened photo (Space resumes).")
            self._show_paused()

    def step(self, delta: int) -> None:
        """While paused on a video: show the frame ``delta`` away as the opened photo."""
        if self.grabber is None or not getattr(self.source, "seekable", False):
            return
        if not self.paused:
            self.toggle_pause()
        current = self.position if self.position >= 0 else 0
        frames = int(getattr(self.source, "frame_count", 0) or 0)
        target = max(0, current + int(delta))
        self.seek(min(target, frames - 1) if frames else target)

    def seek(self, index: int) -> None:
        """Go to frame ``index``: shown live when playing, as the opened photo when paused."""
        grabber = self.grabber
        if grabber is None or not getattr(self.source, "seekable", False):
            return
        if not self.paused:
            grabber.seek(index)
            return
        index = int(index)
        self.position = index  # a second step before this one is shown goes on from here
        self.bar.set_position(index)

        def work(progress, cancel):
            from PIL import Image

            frame = grabber.frame_at(index, cancel=cancel)  # exactly that frame, never a stale one
            return None if frame is None else (frame, Image.fromarray(frame.pixels))

        def shown(answer: Any) -> None:
            if answer is None or grabber is not self.grabber:
                return
            frame, image = answer
            from featurescope.core.live.loop import LiveFrame

            self.last = LiveFrame(image, None, frame)
            self.bar.set_position(frame.index)
            self._freeze()

        self.jobs.submit("live", work, on_result=shown, on_error=self._on_error)
