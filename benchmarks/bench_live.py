"""Figure 9: live feature maps from a video file, and featurescope video.

9a  live loop rate on a clip (decode on the grabber thread, capture stopped at the last
    conv layer, logits included as the app's predictions need them) / the plain forward
    rate on the same frames (preprocessed beforehand, an uncaptured copy of the network).
9b  the same at the first conv layer (early stop): faster than a full forward.
9c  frame-to-result latency with a fake camera at the clip's rate, in frame intervals
    of the live rate shown.
9d  the longest GUI-thread stall while the real window plays the clip live (a 5 ms
    timer's largest gap), and the live rate there.
9e  featurescope video's render rate (decode, capture, grid, side-by-side, encode) / the
    plain forward rate.
All wall clock (the grabber is another thread), torch single-threaded.
"""
from __future__ import annotations

import copy
import os
import tempfile
import time
from pathlib import Path

import torch

from common import Figure

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def _forward_rate(model, clip, frames: int) -> float:
    from PIL import Image

    from featurescope.core.capture.inputs import as_input
    from featurescope.core.io.videos import VideoReader

    plain = copy.deepcopy(model.module).eval()
    inputs = []
    with VideoReader(clip) as reader:
        while len(inputs) < frames and (pixels := reader.read()) is not None:
            inputs.append(as_input(model, Image.fromarray(pixels)))
    with torch.inference_mode():
        plain(inputs[0])
        start = time.perf_counter()
        for x in inputs:
            plain(x)
        return len(inputs) / (time.perf_counter() - start)


def live_figures(models, size: int, frames: int, gui_frames: int) -> list[Figure]:
    from featurescope.core.live.loop import run_live
    from featurescope.core.live.render import render_video
    from featurescope.core.live.sources import FakeCamera, VideoFileSource, write_shapes_video
    from featurescope.core.models.load import load_model

    figures = []
    with tempfile.TemporaryDirectory(prefix="featurescope-live-") as folder:
        clip = write_shapes_video(Path(folder, "clip.mp4"), frames=frames, size=(320, 240), fps=25)
        for name in models:
            model = load_model(name, weights="none", device="cpu", input_size=size)
            convs = [i.name for i in model.layer_info if i.kind == "Conv2d"]
            run_live(model, VideoFileSource(clip), convs[-1], pace="demand", max_frames=3)  # warm up
            forward = _forward_rate(model, clip, frames)
            last = run_live(model, VideoFileSource(clip), convs[-1], pace="demand", logits=True)
            ratio = last.fps / forward
            figures.append(Figure("9a", f"live rate {name} @{size}, last conv",
                                  f"{last.fps:.1f} frames/s ({last.shown} frames)",
                                  f"forward {forward:.1f} frames/s", ratio, f"{ratio:.3f}x",
                                  ">= 0.9", ratio >= 0.9))
            early = run_live(model, VideoFileSource(clip), convs[0], pace="demand")
            ratio = early.fps / forward
            figures.append(Figure("9b", f"live rate {name} @{size}, first conv (early stop)",
                                  f"{early.fps:.1f} frames/s", f"forward {forward:.1f} frames/s",
                                  ratio, f"{ratio:.2f}x", "> 1", ratio > 1))
            camera = run_live(model, FakeCamera(VideoFileSource(clip), fps=25), convs[-1], logits=True)
            interval = 1.0 / camera.fps if camera.fps else float("inf")
            ratio = camera.median_latency / interval
            figures.append(Figure("9c", f"latency {name} @{size}, camera at 25 fps",
                                  f"median {camera.median_latency * 1e3:.0f} ms at {camera.fps:.1f} fps "
                                  f"({camera.dropped} dropped)", f"frame interval {interval * 1e3:.0f} ms",
                                  ratio, f"{ratio:.2f} intervals", "<= 1.5", ratio <= 1.5))
            start = time.perf_counter()
            summary = render_video(model, clip, Path(folder, f"{name}.mp4"), convs[-1], force=True)
            rate = summary.frames / (time.perf_counter() - start)
            ratio = rate / forward
            figures.append(Figure("9e", f"featurescope video {name} @{size}, last conv grid",
                                  f"{rate:.1f} frames/s", f"forward {forward:.1f} frames/s",
                                  ratio, f"{ratio:.3f}x", ">= 0.8", ratio >= 0.8))
        figures.append(_gui_stall(models[0], size, clip, gui_frames, folder))
    return figures


def _gui_stall(name: str, size: int, clip, frames: int, folder: str) -> Figure:
    from PySide6.QtCore import QTimer

    from featurescope.core.live.sources import FakeCamera, VideoFileSource
    from featurescope.gui.app import application
    from featurescope.gui.main_window import MainWindow

    app = application()
    window = MainWindow(settings=str(Path(folder, "settings.ini")), start=False)
    window.show()
    window.start(model=name, weights="none", input_size=str(size))
    deadline = time.monotonic() + 600
    while not (window.jobs.is_idle() and window.state.result is not None):
        app.processEvents()
        time.sleep(0.005)
        if time.monotonic() > deadline:
            raise TimeoutError("the window did not load its model")
    ticks = []
    timer = QTimer()
    timer.setInterval(5)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()) if shown else None)
    shown = []
    window.live.frame_shown.connect(shown.append)
    window.live.start(FakeCamera(VideoFileSource(clip), loop=True, fps=25))
    timer.start()
    while len(shown) < 2 and time.monotonic() < deadline:
        app.processEvents()
        time.sleep(0.001)
    start, first = time.perf_counter(), len(shown)
    while len(shown) < first + frames and time.monotonic() < deadline:
        app.processEvents()
        time.sleep(0.001)
    seconds = time.perf_counter() - start
    timer.stop()
    live_fps = (len(shown) - first) / seconds
    window.live.stop()
    window.close()
    app.processEvents()
    gaps = sorted(b - a for a, b in zip(ticks, ticks[1:]))
    stall = gaps[-1] if gaps else float("inf")
    p99 = gaps[int(len(gaps) * 0.99)] if gaps else float("inf")
    return Figure("9d", f"GUI thread while live ({name} @{size}, camera at 25 fps)",
                  f"longest stall {stall * 1e3:.0f} ms (p99 {p99 * 1e3:.0f} ms), {live_fps:.1f} frames/s shown",
                  "-", stall * 1e3 / 50, f"{stall * 1e3:.0f} ms", "<= 50 ms", stall <= 0.05,
                  notes=[f"longest live-frame handler on the GUI thread {window.live.longest_handler * 1e3:.1f} ms"])
