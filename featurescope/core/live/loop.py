"""The live loop: newest frame -> capture, only as deep as the shown layer -> the caller.

:func:`capture_frame` is one step (the GUI runs it as one worker job per frame, so the
GUI thread only draws); :func:`run_live` is the whole loop for headless use and the
benchmarks, with ``progress``, ``cancel`` and an ``on_frame`` callback; it reports the
frames shown and dropped, the rate and the frame-to-result latency.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
from PIL import Image

from featurescope.core.capture.capture import capture
from featurescope.core.capture.result import CaptureResult
from featurescope.core.live.grabber import Frame, FrameGrabber
from featurescope.core.progress import CancelToken, ProgressCallback, report


@dataclass
class LiveFrame:
    """A captured frame: the picture (PIL, what an opened photo would be), its capture
    and the frame it came from (index, grab time)."""

    image: Image.Image
    result: CaptureResult
    frame: Frame
    captured_at: float = 0.0

    @property
    def latency(self) -> float:
        """Seconds from the grab to the end of the capture."""
        return self.captured_at - self.frame.grabbed_at


def preparer(model) -> Callable:
    """``pixels -> (model, PIL image, input tensor)``: the preprocessing of one frame for
    ``model``, to run on the grabber thread (:class:`FrameGrabber`'s ``prepare``)."""
    from featurescope.core.capture.inputs import as_input

    def prepare(pixels):
        image = Image.fromarray(pixels)
        if getattr(model, "preprocess", None) is None:  # a bare network: the pixels in [0, 1]
            return model, image, torch.from_numpy(pixels).permute(2, 0, 1)[None].float().div_(255)
        return model, image, as_input(model, image)

    return prepare


def capture_frame(model, frame: Frame, layer: str, *, logits: bool = False,
                  cancel: Optional[CancelToken] = None) -> LiveFrame:
    """Capture ``layer`` of one frame; the forward stops right after it unless ``logits``
    (predictions wanted). Uses ``frame.prepared`` when it was made for ``model`` (see
    :func:`preparer`). The result lists every layer of the model (the others in
    ``.missing``), so a layer list built from it stays whole."""
    prepared = frame.prepared
    if prepared is None or prepared[0] is not model:
        prepared = preparer(model)(frame.pixels)
    _model, image, x = prepared
    result = capture(model, x, layers=[layer], cancel=cancel, stop_early=not logits)
    full = list(getattr(model, "layer_info", None) or [])
    if full and layer not in {info.name for info in full}:  # a block or an activation
        full = list(getattr(model, "every_layer_info", None) or full)
    if full and len(result.layers) < len(full):
        infos = [result.info.get(info.name, info) for info in full]
        result = CaptureResult(result._outputs, infos, result.logits, result.input,
                               categories=result.categories, model_name=result.model_name,
                               device=result.device, dense=result.dense)
    return LiveFrame(image, result, frame, time.perf_counter())


@dataclass
class LiveStats:
    """What a live run did: frames shown and dropped, wall time, latencies (s)."""

    shown: int = 0
    dropped: int = 0
    seconds: float = 0.0
    latencies: list = field(default_factory=list)
    problem: str = ""

    @property
    def fps(self) -> float:
        return self.shown / self.seconds if self.seconds > 0 else 0.0

    @property
    def median_latency(self) -> float:
        return statistics.median(self.latencies) if self.latencies else 0.0


def run_live(model, source, layer, on_frame: Optional[Callable[[LiveFrame], None]] = None, *,
             pace: str = "realtime", logits: bool = False, max_frames: Optional[int] = None,
             progress: Optional[ProgressCallback] = None,
             cancel: Optional[CancelToken] = None) -> LiveStats:
    """Show ``source`` live until it ends, ``max_frames`` were shown, or ``cancel``.

    ``layer``: a name, or a callable returning the layer to show now (the user steps
    layers while it runs). Frames are grabbed on their own thread; whenever a capture
    ends, the newest frame is taken and the ones that came meanwhile are dropped.
    ``on_frame(LiveFrame)`` is called in this thread after each capture.
    """
    grabber = FrameGrabber(source, pace=pace, prepare=preparer(model)).start()
    stats = LiveStats()
    total = max_frames or int(getattr(source, "frame_count", 0) or 0)
    start = time.perf_counter()
    try:
        for frame in grabber.frames(cancel) if max_frames != 0 else ():
            name = layer() if callable(layer) else layer
            live = capture_frame(model, frame, name, logits=logits, cancel=cancel)
            stats.latencies.append(live.latency)
            stats.shown += 1
            if on_frame is not None:
                on_frame(live)
            report(progress, stats.shown, total, f"frame {frame.index}")
            if max_frames is not None and stats.shown >= max_frames:
                break
    finally:
        stats.seconds = time.perf_counter() - start
        grabber.stop()
        stats.dropped = grabber.slot.dropped
        stats.problem = str(grabber.error) if grabber.error else getattr(source, "problem", "")
    return stats
