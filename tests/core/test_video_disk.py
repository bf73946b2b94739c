"""A video that does not reach the disk whole: one sentence, no file, and the codec is
not blamed for a full disk. OpenCV reports no write error, so these are simulated the
two ways a user meets them: a file-size limit (``ulimit -f``) that cuts the file off,
and a disk with no space left."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from featurescope.core.errors import ExportError
from featurescope.core.io import videos
from featurescope.core.io.videos import VideoWriter
from featurescope.core.live.sources import shapes_frame

ROOT = Path(__file__).resolve().parents[2]

_CUT_OFF = """
import resource, signal, sys
import numpy as np
from featurescope.core.io.videos import VideoWriter
from featurescope.core.errors import ExportError
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG)
resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))
try:
    with VideoWriter(sys.argv[1], 25) as writer:
        noise = np.random.default_rng(0)  # noise does not compress: the limit is reached
        for i in range(30):
            writer.write(noise.integers(0, 256, (120, 160, 3), dtype=np.uint8))
        writer.finish()
except ExportError as error:
    print(error)
    sys.exit(2)
"""


@pytest.mark.skipif(not hasattr(os, "fork") or sys.platform == "darwin",
                    reason="RLIMIT_FSIZE as a stand-in for a full disk: Linux")
@pytest.mark.parametrize("suffix", [".mp4", ".avi"])
def test_a_video_cut_off_by_the_disk_is_refused_and_removed(tmp_path, suffix):
    target = tmp_path / f"out{suffix}"
    done = subprocess.run([sys.executable, "-c", _CUT_OFF, str(target)], capture_output=True,
                          text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=120)
    assert done.returncode == 2, done.stderr
    message = done.stdout.strip()
    assert message.count("\n") == 0 and "cut off" in message and "codec" not in message
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("suffix", [".mp4", ".avi"])
@pytest.mark.parametrize("full_after", [0, 20])
def test_a_full_disk_is_named_as_such(tmp_path, monkeypatch, suffix, full_after):
    real = videos.shutil.disk_usage
    writes = {"frames": 0}

    def usage(path):
        found = real(path)
        free = 0 if writes["frames"] >= full_after else found.free
        return type(found)(found.total, found.total - free, free)

    monkeypatch.setattr(videos.shutil, "disk_usage", usage)
    target = tmp_path / f"out{suffix}"
    with pytest.raises(ExportError, match="disk holding .* is full") as refused:
        with VideoWriter(target, 25) as writer:
            for i in range(40):
                writer.write(shapes_frame(i, 64, 48))
                writes["frames"] += 1
            writer.finish()
    assert "codec" not in str(refused.value)
    assert list(tmp_path.iterdir()) == []


def test_a_whole_video_still_reads_back_every_frame(tmp_path):
    with VideoWriter(tmp_path / "ok.avi", 25) as writer:
        for i in range(5):
            writer.write(shapes_frame(i, 64, 48))
        path = writer.finish()
    assert writer._frames_on_disk() == -1  # the partial is gone: renamed into place
    with videos.VideoReader(path) as reader:
        frames = 0
        while reader.read() is not None:
            frames += 1
    assert frames == 5
