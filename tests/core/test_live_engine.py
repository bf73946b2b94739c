"""Live sources, the newest-frame-wins grabber, the live loop and video files (no Qt)."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch
from torch import nn

from featurescope.core.capture.capture import capture
from featurescope.core.errors import CameraError, ExportError, VideoError
from featurescope.core.io.videos import VideoReader, VideoWriter, list_cameras
from featurescope.core.live.grabber import FrameGrabber, LatestFrame
from featurescope.core.live.loop import capture_frame, run_live
from featurescope.core.live.sources import (
    FakeCamera, GeneratedSource, VideoFileSource, shapes_frame, write_shapes_video,
)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A 3-second clip of moving shapes, written by the test."""
    return write_shapes_video(tmp_path_factory.mktemp("clip") / "shapes.mp4", frames=75, fps=25)


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(16, 10)).eval()


def test_clip_reads_back_as_written(clip):
    with VideoReader(clip) as reader:
        assert reader.frame_count == 75 and reader.size == (160, 120)
        frames = []
        while (frame := reader.read()) is not None:
            frames.append(frame)
    assert len(frames) == 75
    # mp4v is lossy: close to what was written, and every frame differs from the last
    for index in (0, 37, 74):
        assert np.abs(frames[index].astype(int) - shapes_frame(index, 160, 120, 75)).mean() < 12
    assert all(np.abs(a.astype(int) - b).mean() > 0.5 for a, b in zip(frames, frames[1:]))


def test_seek_gives_that_frame(clip):
    source = VideoFileSource(clip)
    source.seek(50)
    assert source.position == 50
    frame = source.read()
    assert np.abs(frame.astype(int) - shapes_frame(50, 160, 120, 75)).mean() < 12
    source.close()


@pytest.mark.parametrize("content, fragment", [
    (None, "does not exist"), (b"", "is empty"), (b"this is not a video" * 100, "not a video"),
])
def test_unreadable_videos_are_one_sentence(tmp_path, content, fragment):
    path = tmp_path / "clip.mp4"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(VideoError, match=fragment) as info:
        VideoReader(path)
    assert str(info.value).count(".") >= 1 and "\n" not in str(info.value)


def test_truncated_video_says_so(clip, tmp_path):
    data = clip.read_bytes()
    cut = tmp_path / "cut.avi"
    write_shapes_video(cut, frames=75)
    whole = cut.read_bytes()
    cut.write_bytes(whole[: len(whole) // 3])
    with VideoReader(cut) as reader:
        count = 0
        while reader.read() is not None:
            count += 1
    assert 0 < count < 75
    assert reader.truncated and f"ended after {count} of the 75 frames" in reader.problem
    assert data  # the good clip is untouched


def test_writer_refuses_unknown_extension_existing_file_and_leaves_nothing_half_written(tmp_path):
    with pytest.raises(ExportError, match="not .txt"):
        VideoWriter(tmp_path / "out.txt", 25)
    existing = tmp_path / "out.mp4"
    existing.write_bytes(b"keep")
    with pytest.raises(ExportError, match="exists"):
        VideoWriter(existing, 25)
    with pytest.raises(RuntimeError):
        with VideoWriter(tmp_path / "half.mp4", 25) as writer:
            writer.write(shapes_frame(0))
            raise RuntimeError("interrupted")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]
    assert existing.read_bytes() == b"keep"


def test_no_camera_here_is_an_empty_list_and_opening_one_is_a_sentence():
    assert list_cameras() == [] or all(isinstance(i, int) for i in list_cameras())
    if not list_cameras():
        from featurescope.core.live.sources import CameraSource

        with pytest.raises(CameraError, match="Camera 7"):
            CameraSource(7)


def test_latest_frame_drops_instead_of_queueing():
    from featurescope.core.live.grabber import Frame

    slot = LatestFrame()
    for index in range(5):
        slot.put(Frame(np.zeros((2, 2, 3), np.uint8), index, time.perf_counter()))
    assert slot.take(0).index == 4 and slot.dropped == 4
    assert slot.take(0.01) is None


def test_slow_model_drops_frames_of_a_fast_camera(net):
    """The model is slower than the source: frames are dropped, never queued, and the
    frame shown is always a recent one."""
    source = FakeCamera(GeneratedSource(frames=60, size=(64, 48), fps=100.0))
    shown = []

    def slow(live):
        shown.append(live.frame.index)
        time.sleep(0.05)  # a model five times slower than the camera

    stats = run_live(net, source, "0", slow)
    assert stats.shown + stats.dropped == 60
    assert stats.dropped >= 20 and stats.shown < 40
    assert shown == sorted(shown) and shown[-1] >= 55
    # never more than one capture behind: each frame shown is newer than the last by more than one
    assert max(b - a for a, b in zip(shown, shown[1:])) >= 3


def test_grid_changes_with_the_frames_and_matches_a_plain_capture(clip, net):
    results = []
    stats = run_live(net, VideoFileSource(clip), "3", results.append, pace="demand")
    assert stats.shown == 75 and stats.dropped == 0 and not stats.problem
    first, middle = results[0].result["3"], results[37].result["3"]
    assert not torch.allclose(first, middle)
    # the same frame captured as a photo gives the same maps
    reference = capture(net, results[37].result.input, layers=["3"])["3"]
    assert torch.allclose(middle, reference)
    # early stop: the classifier did not run unless predictions were asked for
    assert results[0].result.logits is None
    assert capture_frame(net, results[0].frame, "3", logits=True).result.logits.shape == (10,)


def test_live_loop_cancels(clip, net):
    from featurescope.core.progress import CancelToken, Cancelled

    token = CancelToken()
    seen = []

    def on_frame(live):
        seen.append(live)
        if len(seen) == 3:
            token.cancel()

    with pytest.raises(Cancelled):
        run_live(net, VideoFileSource(clip), "0", on_frame, cancel=token)
    assert len(seen) == 3
    assert not [t for t in threading.enumerate() if t.name.startswith("grab ")]


def test_grabber_pause_and_seek(clip):
    grabber = FrameGrabber(VideoFileSource(clip), pace="demand", start_paused=True).start()
    try:
        assert grabber.slot.take(0.2) is None  # paused: nothing grabbed
        grabber.seek(40)
        frame = grabber.slot.take(2.0)
        assert frame.index == 40
        assert grabber.slot.take(0.2) is None  # still paused after the one frame
    finally:
        grabber.stop()


def test_stepping_after_a_pause_gives_each_next_frame_once(clip):
    """Paused at 49 with a frame read ahead in the slot (53): steps show 50, 51, 52 ..., not
    the read-ahead frame and then the seeks one step late (53, 50, 54, 51, 55)."""
    source = VideoFileSource(clip)
    grabber = FrameGrabber(source, pace="demand", start_paused=True).start()
    try:
        stale = grabber.frame_at(53)
        grabber.slot.put(stale)  # read ahead before the pause, never taken
        shown = [49]
        for _ in range(5):
            shown.append(grabber.frame_at(shown[-1] + 1).index)
        for _ in range(3):
            shown.append(grabber.frame_at(shown[-1] - 1).index)
        assert shown == [49, 50, 51, 52, 53, 54, 53, 52, 51]
        assert grabber.frame_at(500, timeout=1.0) is None  # past the end: no frame, no hang
    finally:
        grabber.stop()
