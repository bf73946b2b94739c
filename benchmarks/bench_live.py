"""Figure 9: live feature maps from a video file, and featurescope video.

Rates are paired: each round measures the plain forward rate and ours back to back, and
the figure is the median of the per-round ratios.

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


def _inputs(model, clip, frames: int) -> list:
    from PIL import Image

    from featurescope.core.capture.inputs import as_input
    from featurescope.core.io.videos import VideoReader

    inputs = []
    with VideoReader(clip) as reader:
        while len(inputs) < frames and (pixels := reader.read()) is not None:
            inputs.append(as_input(model, Image.fromarray(pixels)))
    return inputs


def _forward_rate(plain, inputs) -> float:
    """Frames per second of the uncaptured network on preprocessed frames."""
    with torch.inference_mode():
        start = time.perf_counter()
        for x in inputs:
            plain(x)
        return len(inputs) / (time.perf_counter() - start)


def _cpu_note(model, plain, clip, layer: str, rounds: int) -> str:
    """CPU time per frame (this thread's, so other processes cannot inflate it): the
    forward, the live step on the worker, and decode + preprocess on the grabber."""
    from common import interleaved, median_ms

    from featurescope.core.io.videos import VideoReader
    from featurescope.core.live.grabber import Frame
    from featurescope.core.live.loop import capture_frame, preparer

    with VideoReader(clip) as reader:
        pixels = reader.read()
    prepare = preparer(model)
    x = prepare(pixels)[2]
    frame = Frame(pixels, 0, 0.0, 25.0, prepare(pixels))

    def forward():
        with torch.inference_mode():
            return plain(x)

    def grab():
        with VideoReader(clip) as again:
            return prepare(again.read())

    times = interleaved({"forward": forward, "live": lambda: capture_frame(model, frame, layer, logits=True),
                         "grab": grab}, max(3, rounds * 2), warmup=1)
    ratio = median_ms(times["live"]) / median_ms(times["forward"])
    return (f"CPU per frame: forward {median_ms(times['forward']):.1f} ms, live step on the worker "
            f"{median_ms(times['live']):.1f} ms ({ratio:.3f}x), open + decode + preprocess on the grabber "
            f"thread {median_ms(times['grab']):.1f} ms (an upper bound: it reopens the file)")


def _paired(rounds: int, forward, ours) -> tuple[float, float, float]:
    """Median over rounds of ours() / forward() rates measured back to back (a busy
    machine slows both alike); also the median rates."""
    pairs = []
    for _ in range(rounds):
        base = forward()
        pairs.append((ours() / base, base))
    ratios = sorted(p[0] for p in pairs)
    bases = sorted(p[1] for p in pairs)
    mid = len(pairs) // 2
    return ratios[mid], bases[mid] * ratios[mid], bases[mid]


def live_figures(models, size: int, frames: int, gui_frames: int, rounds: int = 5) -> list[Figure]:
    from featurescope.core.live.loop import run_live
    from featurescope.core.live.render import render_video
    from featurescope.core.live.sources import FakeCamera, VideoFileSource, write_shapes_video
    from featurescope.core.models.load import load_model

    figures = []
    with tempfile.TemporaryDirectory(prefix="featurescope-live-") as folder:
        clip = write_shapes_video(Path(folder, "clip.mp4"), frames=frames, size=(320, 240), fps=25)
        for name in models:
            model = load_model(name, weights="none", device="cpu", input_size=size)
            plain = copy.deepcopy(model.module).eval()
            inputs = _inputs(model, clip, frames)
            convs = [i.name for i in model.layer_info if i.kind == "Conv2d"]
            run_live(model, VideoFileSource(clip), convs[-1], pace="demand", max_frames=3)  # warm up
            forward = lambda: _forward_rate(plain, inputs)  # noqa: E731

            def live(layer, logits):
                return lambda: run_live(model, VideoFileSource(clip), layer, pace="demand", logits=logits).fps

            ratio, ours, base = _paired(rounds, forward, live(convs[-1], True))
            figures.append(Figure("12a", f"live rate {name} @{size}, last conv",
                                  f"{ours:.1f} frames/s", f"forward {base:.1f} frames/s", ratio,
                                  f"{ratio:.3f}x", ">= 0.9", ratio >= 0.9,
                                  notes=[_cpu_note(model, plain, clip, convs[-1], rounds)]))
            ratio, ours, base = _paired(rounds, forward, live(convs[0], False))
            figures.append(Figure("12b", f"live rate {name} @{size}, first conv (early stop)",
                                  f"{ours:.1f} frames/s", f"forward {base:.1f} frames/s",
                                  ratio, f"{ratio:.2f}x", "> 1", ratio > 1))
            camera = run_live(model, FakeCamera(VideoFileSource(clip), fps=25), convs[-1], logits=True)
            interval = 1.0 / camera.fps if camera.fps else float("inf")
            ratio = camera.median_latency / interval
            figures.append(Figure("12c", f"latency {name} @{size}, camera at 25 fps",
                                  f"median {camera.median_latency * 1e3:.0f} ms at {camera.fps:.1f} fps "
                                  f"({camera.dropped} dropped)", f"frame interval {interval * 1e3:.0f} ms",
                                  ratio, f"{ratio:.2f} intervals", "<= 1.5", ratio <= 1.5))

            def render():
                start = time.perf_counter()
                summary = render_video(model, clip, Path(folder, f"{name}.mp4"), convs[-1], force=True)
                return summary.frames / (time.perf_counter() - start)

            ratio, ours, base = _paired(rounds, forward, render)
            figures.append(Figure("12e", f"featurescope video {name} @{size}, last conv grid",
                                  f"{ours:.1f} frames/s", f"forward {base:.1f} frames/s",
                                  ratio, f"{ratio:.3f}x", ">= 0.8", ratio >= 0.8))
        figures.append(_gui_stall(models[0], size, clip, gui_frames, folder))
        figures.append(window_rate(models[0], size, clip, gui_frames, folder, rounds))
    return figures


def _loaded_window(name: str, size: int, settings: Path):
    """The application and a 1280x800 MainWindow that has loaded ``name`` (random weights)
    and captured its first image."""
    from featurescope.gui.app import application
    from featurescope.gui.main_window import MainWindow

    app = application()
    window = MainWindow(settings=str(settings), start=False)
    window.resize(1280, 800)
    window.show()
    window.start(model=name, weights="none", input_size=str(size))
    deadline = time.monotonic() + 600
    while not (window.jobs.is_idle() and window.state.result is not None):
        app.processEvents()
        time.sleep(0.005)
        if time.monotonic() > deadline:
            raise TimeoutError("the window did not load its model")
    return app, window


def _run_events_until(done, signal) -> None:
    """Run Qt's event loop until ``done()``, checked after each ``signal`` and every 50 ms.
    A QEventLoop sleeps between events as the app's own loop does; polling processEvents()
    in a Python loop would keep one of the two cores busy and slow the worker it measures."""
    from PySide6.QtCore import QEventLoop, QTimer

    if done():
        return
    loop = QEventLoop()

    def check(*_args) -> None:
        if done():
            loop.quit()

    signal.connect(check)
    timer = QTimer()
    timer.setInterval(50)
    timer.timeout.connect(check)
    timer.start()
    loop.exec()
    timer.stop()
    signal.disconnect(check)


def window_rate(name: str, size: int, clip, frames: int, folder: str, rounds: int = 3) -> Figure:
    """12f: frames per second the real window shows while it plays ``clip`` as fast as the
    network runs (grid tab and predictions on screen: every frame runs to the logits) over
    the plain forward rate, paired round by round in one run."""
    from featurescope.core.live.sources import VideoFileSource

    app, window = _loaded_window(name, size, Path(folder, "rate.ini"))
    deadline = time.monotonic() + 600
    window.predictions_dock.show()
    window.predictions_dock.raise_()
    model = window.state.model
    plain = copy.deepcopy(model.module).eval()
    inputs = _inputs(model, clip, frames)
    shown = []
    window.live.frame_shown.connect(shown.append)

    def in_window() -> float:
        shown.clear()
        window.live.start(VideoFileSource(clip), pace="demand")
        _run_events_until(lambda: len(shown) >= 2 or time.monotonic() > deadline, window.live.frame_shown)
        start, first = time.perf_counter(), len(shown)
        _run_events_until(lambda: len(shown) >= first + frames - 4 or window.live.grabber is None
                          or window.live.paused or time.monotonic() > deadline, window.live.frame_shown)
        seconds = time.perf_counter() - start
        count = len(shown) - first
        window.live.stop()
        return count / seconds if seconds > 0 else 0.0

    in_window()  # warm up
    ratio, ours, base = _paired(rounds, lambda: _forward_rate(plain, inputs), in_window)
    logits = window.state.result is not None and window.state.result.logits is not None
    window.close()
    app.processEvents()
    return Figure("12f", f"live in the window, grid + predictions ({name} @{size})",
                  f"{ours:.1f} frames/s shown", f"forward {base:.1f} frames/s", ratio,
                  f"{ratio:.3f}x", ">= 0.9 (quiet machine)", ratio >= 0.9,
                  notes=[f"frames ran to the logits: {logits}; load average "
                         f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"])


def _gui_stall(name: str, size: int, clip, frames: int, folder: str) -> Figure:
    from PySide6.QtCore import QTimer

    from featurescope.core.live.sources import FakeCamera, VideoFileSource

    app, window = _loaded_window(name, size, Path(folder, "settings.ini"))
    deadline = time.monotonic() + 600
    ticks = []
    timer = QTimer()
    timer.setInterval(5)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()) if shown else None)
    shown = []
    window.live.frame_shown.connect(shown.append)
    window.live.start(FakeCamera(VideoFileSource(clip), loop=True, fps=25))
    timer.start()
    _run_events_until(lambda: len(shown) >= 2 or time.monotonic() > deadline, window.live.frame_shown)
    start, first = time.perf_counter(), len(shown)
    _run_events_until(lambda: len(shown) >= first + frames or time.monotonic() > deadline, window.live.frame_shown)
    seconds = time.perf_counter() - start
    timer.stop()
    live_fps = (len(shown) - first) / seconds
    window.live.stop()
    window.close()
    app.processEvents()
    gaps = sorted(b - a for a, b in zip(ticks, ticks[1:]))
    stall = gaps[-1] if gaps else float("inf")
    p99 = gaps[int(len(gaps) * 0.99)] if gaps else float("inf")
    return Figure("12d", f"GUI thread while live ({name} @{size}, camera at 25 fps)",
                  f"longest stall {stall * 1e3:.0f} ms (p99 {p99 * 1e3:.0f} ms), {live_fps:.1f} frames/s shown",
                  "-", stall * 1e3 / 50, f"{stall * 1e3:.0f} ms", "<= 50 ms", stall <= 0.05,
                  notes=[f"longest live-frame handler on the GUI thread {window.live.longest_handler * 1e3:.1f} ms"])
