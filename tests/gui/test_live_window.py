"""Live in the real window: a fake camera playing a generated clip, a video file, pause
and export, and every failure path (no camera, busy camera, unreadable video)."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from PySide6.QtWidgets import QFileDialog

from featurescope.core.errors import CameraError
from featurescope.core.io.videos import NO_CAMERA
from featurescope.core.live.sources import FakeCamera, VideoFileSource, write_shapes_video
from featurescope.core.render.grids import feature_grid


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return write_shapes_video(tmp_path_factory.mktemp("clip") / "shapes.mp4", frames=50, fps=25)


@pytest.fixture
def window(make_window, wait_idle):
    win = make_window(start=False)
    win.start(model="resnet18", weights="none", input_size="64")
    wait_idle(win)
    return win


def _grid(window):
    image = window.grid_view.image_item.image
    return None if image is None else np.array(image)


def test_no_camera_is_one_sentence_and_nothing_changes(window):
    before = (window.state.image, window.state.result)
    window.live.list_cameras = lambda: []
    window.live.camera_action.trigger()
    assert window.banner.isVisible() and NO_CAMERA in window.statusBar().currentMessage()
    assert (window.state.image, window.state.result) == before
    assert window.live.grabber is None and not window.live.pause_action.isEnabled()


def test_without_opencv_live_names_the_extra_to_install_not_a_missing_camera(window, monkeypatch):
    """A base install has no OpenCV: "no camera" would send the user looking for one."""
    from featurescope.core.errors import VideoError
    from featurescope.core.io import videos

    def missing():
        raise VideoError("Video and camera support needs OpenCV: pip install 'featurescope[video]'.")

    monkeypatch.setattr(videos, "_cv2", missing)
    before = (window.state.image, window.state.result)
    window.live.camera_action.trigger()
    message = window.statusBar().currentMessage()
    assert "featurescope[video]" in message and NO_CAMERA not in message
    assert (window.state.image, window.state.result) == before and window.live.grabber is None


def test_busy_camera_is_one_sentence(window):
    window.live.list_cameras = lambda: [0]

    def busy(index):
        raise CameraError(f"Camera {index} is present but gives no picture; another program is probably using it.")

    window.live.open_camera = busy
    window.live.camera_action.trigger()
    assert "another program" in window.statusBar().currentMessage()
    assert window.live.grabber is None


def test_fake_camera_updates_grid_predictions_and_pause_exports_like_a_photo(
        window, clip, qtbot, wait_idle, monkeypatch, tmp_path):
    live, state = window.live, window.state
    live.list_cameras = lambda: [0]
    live.open_camera = lambda index: FakeCamera(VideoFileSource(clip), loop=True, name=f"camera {index}")
    grids, indices = [], []
    live.frame_shown.connect(lambda index: (grids.append(_grid(window)), indices.append(index)))
    live.camera_action.trigger()
    qtbot.waitUntil(lambda: len(grids) >= 6, timeout=60000)
    assert "camera 0 (frame" in state.image_source
    # the grid follows the frames: it is the selected layer of the frame shown, and moves
    assert any(not np.array_equal(a, b) for a, b in zip(grids, grids[1:]))
    assert indices == sorted(indices)
    assert state.result.logits is not None or not window.predictions_panel.isVisible()
    assert "fps" in live.bar.rate_label.text()

    # stepping layers while live keeps the stream going, at the new layer
    layers = [info.name for info in state.model.layer_info]
    deeper = layers[layers.index(state.layer) + 3]
    state.set_layer(deeper)
    count = len(grids)
    qtbot.waitUntil(lambda: len(grids) >= count + 3 and deeper in state.result, timeout=60000)
    assert live.grabber is not None and state.layer == deeper

    # pause: the frame becomes the opened photo, fully captured
    frozen = live.last.image
    live.pause_action.trigger()
    qtbot.waitUntil(lambda: window.jobs.is_idle() and state.result is not None and state.result.complete,
                    timeout=60000)
    assert state.image is frozen and live.paused
    shown = len(grids)
    qtbot.wait(200)
    assert len(grids) == shown  # no more frames while paused
    target = tmp_path / "frame_grid.png"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(lambda *a: (str(target), a[3])))
    window.exports.annotate_action.setChecked(False)
    window.exports.export_grid_action.trigger()
    png = np.asarray(Image.open(target).convert("RGB"))
    np.testing.assert_array_equal(png, feature_grid(state.result[state.layer], colormap=state.display.colormap))

    live.pause_action.trigger()  # resume
    qtbot.waitUntil(lambda: len(grids) > shown, timeout=60000)
    live.stop()
    assert live.grabber is None


def test_video_file_plays_seeks_and_holds_its_last_frame(window, clip, qtbot):
    live, state = window.live, window.state
    seen = []
    live.frame_shown.connect(seen.append)
    assert live.open_video(str(clip))
    assert live.bar.slider.maximum() == 49
    qtbot.waitUntil(lambda: len(seen) >= 3, timeout=60000)
    live.toggle_pause()
    live.seek(30)
    qtbot.waitUntil(lambda: live.last is not None and live.last.frame.index == 30 and window.jobs.is_idle(),
                    timeout=60000)
    assert state.image_source.endswith("(frame 30)")
    live.step(1)
    qtbot.waitUntil(lambda: live.last.frame.index == 31, timeout=60000)
    live.seek(45)
    qtbot.waitUntil(lambda: live.last.frame.index == 45, timeout=60000)
    live.toggle_pause()  # play to the end: it holds the last frame, paused
    qtbot.waitUntil(lambda: live.paused and "ended" in window.statusBar().currentMessage(), timeout=60000)
    assert max(seen) >= 46
    live.stop()


def test_unreadable_video_is_one_sentence(window, tmp_path):
    bad = tmp_path / "clip.mp4"
    bad.write_bytes(b"\x00" * 5000)
    before = window.state.image
    assert not window.live.open_video(str(bad))
    assert "clip.mp4" in window.statusBar().currentMessage() and window.state.image is before
    assert window.live.grabber is None


def test_grad_cam_tab_follows_the_frames(window, clip, qtbot):
    from featurescope.gui.main_window import GRADCAM_TAB

    live, view = window.live, window.gradcam_view
    window.tabs.setCurrentIndex(GRADCAM_TAB)
    state = window.state
    state.set_layer([i.name for i in state.model.layer_info if i.kind == "Conv2d"][-1])
    explained = []
    live.start(FakeCamera(VideoFileSource(clip), loop=True))
    qtbot.waitUntil(lambda: view.cam is not None and (not explained or explained[-1][0] != state.image_source)
                    and explained.append((state.image_source, view.cam)) is None and len(explained) >= 3,
                    timeout=60000)
    live.stop()
    # one map per frame shown, each for the capture of that frame (logits ran to the end)
    assert len({source for source, _ in explained}) >= 3
    assert state.result.logits is not None


def test_video_opened_before_the_model_loads_starts_showing_once_it_is_in(make_window, clip, qtbot):
    """What `featurescope gui --video clip.mp4` does: the clip starts with the model still loading."""
    window = make_window(start=False)
    window.start(model="resnet18", weights="none", input_size="64")
    seen = []
    window.live.frame_shown.connect(seen.append)
    assert window.live.open_video(str(clip))
    qtbot.waitUntil(lambda: len(seen) >= 3, timeout=60000)
    assert window.state.model is not None and window.state.layer in window.state.result
    assert "shapes.mp4 (frame" in window.state.image_source
    window.live.stop()


def test_steps_show_each_next_frame_once_and_the_export_names_the_frame(window, clip, qtbot, tmp_path):
    import json

    from featurescope.core.io.writers import file_sha256
    from featurescope.core.live.grabber import Frame

    live, state = window.live, window.state
    assert live.open_video(str(clip))
    qtbot.waitUntil(lambda: live.shown >= 3, timeout=60000)
    live.toggle_pause()
    qtbot.waitUntil(window.jobs.is_idle, timeout=60000)
    start = live.position
    assert "Paused" in live.bar.rate_label.text() and f"frame {start}" in live.bar.rate_label.text()
    # a frame the grabber read ahead before the pause, never shown (the 49 -> 53 step)
    ahead = Frame(np.zeros((120, 160, 3), np.uint8), start + 4, 0.0, 25.0)
    live.grabber.slot.put(ahead)
    shown = []
    for _ in range(4):
        live.step(1)
        qtbot.waitUntil(lambda: window.jobs.is_idle() and live.last.frame.index == live.position
                        and state.image_source.endswith(f"(frame {live.position})"), timeout=60000)
        shown.append(live.last.frame.index)
    assert shown == [start + 1, start + 2, start + 3, start + 4]
    assert live.bar.slider.value() == start + 4
    assert live.bar.position_label.text() == f"frame {start + 4} / 49"
    assert "Paused" in live.bar.rate_label.text()  # still says so after the steps
    qtbot.waitUntil(lambda: window.jobs.is_idle() and state.result is not None, timeout=60000)
    written = window.exports.export_grid(tmp_path / "frame.png")
    sidecar = json.loads(next(p for p in written if p.suffix == ".json").read_text())
    assert sidecar["source_image"]["sha256"] == file_sha256(clip)
    assert sidecar["source_image"]["frame_index"] == start + 4
    live.stop()


def test_a_live_frame_is_one_event_and_dropped_frames_count_per_play(window, clip, qtbot):
    live, state = window.live, window.state
    events = []
    for name in ("image_changed", "result_changed"):
        getattr(state, name).connect(lambda *_a, name=name: events.append(name))
    frames = []
    live.frame_shown.connect(frames.append)
    assert live.open_video(str(clip))
    qtbot.waitUntil(lambda: len(frames) >= 4, timeout=60000)
    played, counted = list(events), len(frames)
    live.toggle_pause()
    assert played.count("image_changed") == 0  # the frames played: no image event at all
    assert played.count("result_changed") == counted  # one per frame
    qtbot.waitUntil(window.jobs.is_idle, timeout=60000)
    live.grabber.slot.dropped += 1000  # the first play dropped many
    live.toggle_pause()
    qtbot.waitUntil(lambda: len(frames) > counted + 1, timeout=60000)
    dropped = int(live.bar.rate_label.text().split(" dropped")[0].rsplit(" ", 1)[-1])
    assert dropped < 1000
    live.stop()
