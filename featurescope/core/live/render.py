"""``featurescope video``: each frame of a clip beside a view of one layer, into a video.

Views: ``grid`` (the layer's feature-map mosaic, as the app draws it), ``channel:C``
(one map, large), ``gradcam`` (Grad-CAM of the top class over the part of the frame the network saw, its
centre crop, with the rest dimmed; read at the
layer ``core.analysis.gradcam.grad_cam_layer`` picks: a convolution itself, the nearest
convolution before any other layer). Every frame is used (no dropping: this is not live), the forward
stops at the layer except for Grad-CAM, and the file appears only when complete.
"""
from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image

from featurescope.core.errors import ModelError
from featurescope.core.progress import CancelToken, ProgressCallback, report
from featurescope.core.render.options import DisplayOptions, render_grid


def parse_view(text: str) -> tuple[str, Optional[int]]:
    """"grid" | "channel:C" | "gradcam" -> (kind, channel); ModelError otherwise."""
    text = (text or "grid").strip().lower()
    if text in ("grid", "gradcam"):
        return text, None
    if text.startswith("channel:") and text[8:].isdigit():
        return "channel", int(text[8:])
    raise ModelError(f"--view {text!r} is not one of grid, channel:C (a channel number) or gradcam.")


def _fit_height(rgb: np.ndarray, height: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    if h == height:
        return rgb
    width = max(1, round(w * height / h))
    resample = Image.NEAREST if h < height else Image.BILINEAR  # feature maps stay crisp
    return np.asarray(Image.fromarray(rgb).resize((width, height), resample))


def view_picture(model, image: Image.Image, layer: str, kind: str, channel: Optional[int],
                 options: DisplayOptions, cancel: Optional[CancelToken] = None,
                 prepared=None) -> np.ndarray:
    """The chosen view of one picture as (H, W, 3) uint8 RGB; ``prepared``: the picture
    already preprocessed for ``model`` (a (1, C, H, W) tensor), else ``image`` is."""
    from featurescope.core.capture.capture import capture

    if kind == "gradcam":
        from featurescope.core.analysis.gradcam import compute_grad_cam

        cam = compute_grad_cam(model, image if prepared is None else prepared, layer)
        frame = np.asarray(image.convert("RGB"))
        return cam_over_frame(frame, cam.map, crop_box(model, *frame.shape[:2]))
    result = capture(model, image if prepared is None else prepared, layers=[layer], cancel=cancel)
    maps = result[layer]
    if kind == "channel":
        if channel is None or not 0 <= channel < maps.shape[0]:
            raise ModelError(f"{layer} has {maps.shape[0]} channels; channel {channel} does not exist.")
        maps = maps[channel:channel + 1]
    picture, _layout = render_grid(maps, options, upscale=1)
    return picture


def crop_box(model, height: int, width: int) -> tuple[float, float, float, float]:
    """Where the network's input lies in a ``height`` x ``width`` frame: (top, left,
    bottom, right) of the centre crop its preprocessing takes (a bare network: the frame)."""
    from featurescope.core.index.geometry import preprocessing_of

    try:
        return preprocessing_of(model).crop_in_original(height, width)
    except ModelError:  # no resize-and-crop: the frame's pixels go in as they are
        return (0.0, 0.0, float(height), float(width))


def cam_over_frame(frame: np.ndarray, cam: np.ndarray, box, dim: float = 0.4) -> np.ndarray:
    """The map ``cam`` (of the network's input) blended over the part of ``frame`` the
    network saw (``box`` from :func:`crop_box`); the rest of the frame, which the network
    never saw, is dimmed and has no map over it. (H, W, 3) uint8, the frame's size."""
    from featurescope.core.analysis.gradcam import overlay

    height, width = frame.shape[:2]
    top, left, bottom, right = (int(round(v)) for v in box)
    size = (max(1, right - left), max(1, bottom - top))
    stretched = np.asarray(Image.fromarray(np.asarray(cam, np.float32)).resize(size, Image.BILINEAR))
    picture = (frame.astype(np.float32) * dim + 0.5).astype(np.uint8)
    y0, x0, y1, x1 = max(top, 0), max(left, 0), min(bottom, height), min(right, width)
    if y1 > y0 and x1 > x0:
        seen = stretched[y0 - top:y1 - top, x0 - left:x1 - left]
        picture[y0:y1, x0:x1] = overlay(frame[y0:y1, x0:x1], np.clip(seen, 0, 1))
    return picture


class _Encoder:
    """Side-by-side composition and encoding on a thread of their own (OpenCV's encoder
    releases the GIL), two frames behind the capture at most; its error is raised by
    the next ``put`` or by ``close``."""

    def __init__(self, writer, height: int):
        self.writer, self.height = writer, height
        self.queue: queue.Queue = queue.Queue(maxsize=2)
        self.error: Optional[BaseException] = None
        self.thread = threading.Thread(target=self._run, name="encode", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while (item := self.queue.get()) is not None:
            if self.error is not None:
                continue  # drain after a failure
            try:
                pixels, picture = item
                left, right = _fit_height(pixels, self.height), _fit_height(picture, self.height)
                gap = np.full((self.height, 8, 3), 255, np.uint8)
                self.writer.write(np.concatenate([left, gap, right], axis=1))
            except BaseException as error:  # handed to the caller's thread
                self.error = error

    def put(self, pixels: np.ndarray, picture: np.ndarray) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put((pixels, picture))

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join()
        if self.error is not None:
            raise self.error


@dataclass
class VideoSummary:
    path: Path
    frames: int
    problem: str = ""


def render_video(model, source_path, out, layer: str, view: str = "grid", *, fps: Optional[float] = None,
                 max_frames: Optional[int] = None, options: Optional[DisplayOptions] = None,
                 height: int = 360, force: bool = False,
                 progress: Optional[ProgressCallback] = None,
                 cancel: Optional[CancelToken] = None) -> VideoSummary:
    """Write ``out``: each frame of ``source_path`` (left) beside ``view`` of ``layer``
    (right), both ``height`` pixels high. ``fps`` defaults to the clip's. Raises
    VideoError (unreadable clip), ExportError (cannot write) or ModelError (layer, view);
    a clip that ends early is rendered up to there and said in ``problem``.
    """
    from featurescope.core.io.videos import VideoWriter
    from featurescope.core.live.grabber import FrameGrabber
    from featurescope.core.live.loop import preparer
    from featurescope.core.live.sources import VideoFileSource

    kind, channel = parse_view(view)
    if kind == "gradcam":
        from featurescope.core.analysis.gradcam import grad_cam_layer, layer_infos_for

        layer, _note = grad_cam_layer(layer_infos_for(model, layer), layer, model.name)
    options = options or DisplayOptions()
    source = VideoFileSource(source_path)
    # decoding and preprocessing run one frame ahead on the grabber thread; "demand"
    # pacing never drops a frame (the next is read only once the last was taken)
    grabber = FrameGrabber(source, pace="demand", prepare=preparer(model)).start()
    try:
        total = source.frame_count
        if max_frames:
            total = min(total, max_frames) if total else max_frames
        writer = VideoWriter(out, source.fps if fps is None else fps, force=force)
        with writer:
            encoder = _Encoder(writer, height)
            done = 0
            try:
                for frame in grabber.frames(cancel) if max_frames != 0 else ():
                    _model, image, x = frame.prepared
                    picture = view_picture(model, image, layer, kind, channel, options, cancel, prepared=x)
                    encoder.put(frame.pixels, picture)
                    done += 1
                    report(progress, done, total, f"frame {done}")
                    if max_frames is not None and done >= max_frames:
                        break
            finally:
                encoder.close()
            if grabber.error is not None:
                from featurescope.core.errors import FeaturescopeError, VideoError

                if isinstance(grabber.error, FeaturescopeError):
                    raise grabber.error
                raise VideoError(f"{source.name} could not be read past frame {done}: {grabber.error}.")
            path = writer.finish()
        return VideoSummary(path, done, source.problem)
    finally:
        grabber.stop()
