"""``featurescope video`` and ``gui --video``'s parser, in process, on a clip the test writes."""
from __future__ import annotations

import pytest

from featurescope.cli.main import build_parser, main
from featurescope.core.io.videos import VideoReader
from featurescope.core.live.sources import write_shapes_video


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return write_shapes_video(tmp_path_factory.mktemp("clip") / "shapes.mp4", frames=12, fps=12)


def _video(args, capsys):
    status = main(["video", *args, "--model", "resnet18", "--weights", "none", "--input-size", "64"])
    return status, capsys.readouterr()


def test_grid_video_has_every_frame_side_by_side(clip, tmp_path, capsys):
    out = tmp_path / "out.mp4"
    status, captured = _video([str(clip), "--layer", "layer1.0.conv1", "-o", str(out)], capsys)
    assert status == 0, captured.err
    with VideoReader(out) as reader:
        assert reader.frame_count == 12 and abs(reader.fps - 12) < 0.1
        width, height = reader.size
        frame = reader.read()
    assert height == 360 and width > 2 * 360  # the frame (4:3) beside the grid
    left = frame[:, :470].astype(int)
    assert left.std() > 10  # the clip, not a blank
    assert "12 frames" in captured.out


def test_channel_and_gradcam_views_and_max_frames(clip, tmp_path, capsys):
    for view in ("channel:3", "gradcam"):
        out = tmp_path / f"{view.replace(':', '_')}.avi"
        status, captured = _video([str(clip), "--layer", "layer4.1.conv2", "--view", view,
                                   "--max-frames", "3", "--fps", "5", "-o", str(out)], capsys)
        assert status == 0, captured.err
        with VideoReader(out) as reader:
            assert reader.frame_count == 3 and abs(reader.fps - 5) < 0.1


@pytest.mark.parametrize("extra, fragment", [
    (["--view", "channel:999"], "channel 999 does not exist"),
    (["--view", "sideways"], "is not one of grid"),
    (["--layer", "nope"], "nope"),
])
def test_user_errors_are_one_line_and_leave_no_file(clip, tmp_path, capsys, extra, fragment):
    out = tmp_path / "out.mp4"
    args = [str(clip), "--layer", "layer1.0.conv1", "-o", str(out)]
    if extra[0] == "--layer":
        args[2] = extra[1]
    else:
        args += extra
    status, captured = _video(args, capsys)
    assert status == 2
    assert fragment in captured.err and captured.err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_unreadable_input_existing_output_and_bad_codec(clip, tmp_path, capsys):
    bad = tmp_path / "bad.mp4"
    bad.write_text("not a video")
    status, captured = _video([str(bad), "--layer", "layer1.0.conv1", "-o", str(tmp_path / "o.mp4")], capsys)
    assert status == 2 and "not a video OpenCV can read" in captured.err
    existing = tmp_path / "exists.mp4"
    existing.write_bytes(b"x")
    status, captured = _video([str(clip), "--layer", "layer1.0.conv1", "-o", str(existing)], capsys)
    assert status == 2 and "--force" in captured.err and existing.read_bytes() == b"x"
    status, captured = _video([str(clip), "--layer", "layer1.0.conv1", "-o", str(tmp_path / "o.gif")], capsys)
    assert status == 2 and "not .gif" in captured.err


def test_truncated_clip_renders_what_it_has_and_says_so(tmp_path, capsys):
    cut = write_shapes_video(tmp_path / "cut.avi", frames=40, fps=10)
    data = cut.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    out = tmp_path / "out.avi"
    status, captured = _video([str(cut), "--layer", "layer1.0.conv1", "-o", str(out)], capsys)
    assert status == 0
    assert "warning" in captured.err and "of the 40 frames" in captured.err
    with VideoReader(out) as reader:
        assert 0 < reader.frame_count < 40


def test_gui_takes_a_video():
    args = build_parser().parse_args(["gui", "--video", "clip.mp4"])
    assert args.video == "clip.mp4"


@pytest.mark.parametrize("fps", ["-5", "0", "0.1", "100000", "nan"])
def test_a_frame_rate_outside_what_the_codecs_hold_is_refused_before_anything_runs(clip, tmp_path, capsys, fps):
    out = tmp_path / "out.avi"
    status, captured = _video([str(clip), "--layer", "layer1.0.conv1", "--fps", fps, "-o", str(out)], capsys)
    assert status == 2
    assert "--fps" in captured.err and "frames per second" in captured.err
    assert list(tmp_path.iterdir()) == []


def test_the_writer_refuses_a_rate_instead_of_writing_25_fps(tmp_path):
    from featurescope.core.errors import ExportError
    from featurescope.core.io.videos import VideoWriter

    for fps in (-5, 0, 1e6):
        with pytest.raises(ExportError, match="frames per second"):
            VideoWriter(tmp_path / "out.mp4", fps)
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_says_the_video_was_not_written(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    # long enough that a quiet machine is still writing it when Ctrl-C comes (400 frames
    # were done before the first poll saw the partial file on a fast CI machine)
    clip = write_shapes_video(tmp_path / "long.mp4", frames=3000, size=(64, 48), fps=25)
    out = tmp_path / "out.mp4"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    process = subprocess.Popen([sys.executable, "-m", "featurescope", "video", str(clip), "--layer", "layer4.1.conv2",
                                "-m", "resnet18", "-w", "none", "--input-size", "64", "-d", "cpu", "-o", str(out)],
                               env=env, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                               # a suite started in the background (`cmd &`) hands its
                               # children SIGINT ignored: give the command Ctrl-C back
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 120
        while not list(tmp_path.glob(".out.partial*")) and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.05)  # polling for the first frame written, not waiting for time to pass
        assert process.poll() is None, "the video was complete before Ctrl-C could be sent"
        process.send_signal(signal.SIGINT)
        _out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130
    assert "stopped" in err and "was not written" in err and "Traceback" not in err
    assert not out.exists() and not list(tmp_path.glob(".out.partial*"))
