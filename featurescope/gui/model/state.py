"""The one observable app state: current model, image, capture, layer, display options.

A plain Python object with psygnal events, no Qt (napari's ``ViewerModel`` is the
model for this): the CLI, tests and benchmarks can drive it without a QApplication.
Docks and views never talk to each other; they read this object and ``.connect`` to
its events, and ``main_window.py`` wires the workers that fill it. Setters emit only
when the value really changes, so a view can call them freely without feedback loops.

Threads: events call their slots synchronously in the emitting thread, so every
setter must run on the GUI thread. It does: the job runner hands results back through
queued Qt signals and calls ``on_result`` in the GUI thread. Rather than re-emitting
through a Qt bridge (an extra queued hop on every layer step) the state checks the
thread it is used from and refuses another one, so a slip fails loudly in tests
instead of touching a widget from a worker.
"""
from __future__ import annotations

import threading
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Optional

from psygnal import Signal

from featurescope.core.render.options import DisplayOptions
from featurescope.gui.model.compare import CompareState
from featurescope.gui.model.gradcam import GradCamChoice

if TYPE_CHECKING:  # pragma: no cover
    from PIL.Image import Image

    from featurescope.core.capture.layers import LayerInfo
    from featurescope.core.capture.result import CaptureResult
    from featurescope.core.models.load import LoadedModel


class AppState:
    """Holds what the user is looking at. Only the thread that made it may change it."""

    model_changed = Signal(object)  # LoadedModel or None
    image_changed = Signal(object, str)  # PIL.Image, source (path or "clipboard")
    result_changed = Signal(object)  # CaptureResult for (model, image), or None
    layer_changed = Signal(str)  # layer name
    channel_changed = Signal(int)  # true channel index, -1 for none
    display_changed = Signal(object)  # DisplayOptions
    busy_changed = Signal(bool, str)  # busy, what is running
    error_reported = Signal(str)  # one sentence for the user
    every_module_changed = Signal(bool)  # the layer list shows every module, not conv/pool only
    index_changed = Signal(object)  # the dataset index open (Examples), or None
    fields_ready = Signal(object)  # the model whose receptive fields the worker has worked out
    score_threshold_changed = Signal(float)  # a detector's boxes are shown from this score on

    def __init__(self) -> None:
        self.model: Optional[LoadedModel] = None
        self.image: Optional[Image] = None
        self.image_source: str = ""
        #: what exports record as the image's origin: its file path, a FrameOf (a video
        #: file's frame), or "" (pasted, a camera frame)
        self.image_origin: Any = ""
        self.result: Optional[CaptureResult] = None
        self.layer: str = ""
        self.channel: int = -1
        self.display: DisplayOptions = DisplayOptions()
        self.busy: bool = False
        # False: captures and the layer list hold the conv and pooling layers; True: every
        # module with a feature map (activations, batch norms, blocks, stages)
        self.every_module: bool = False
        self.busy_label: str = ""
        # the dataset index the Examples view has open: its examples and, for a folder of
        # sub-folders, each unit's label (shown in the channel headers too)
        self.index = None
        self.live_frame = False  # the image is a frame of a playing video (set_frame)
        self.compare = CompareState()  # the Compare view's image B and comparison
        self.gradcam = GradCamChoice()  # the Grad-CAM class and opacity
        # a detector's boxes (predictions, the photo) from this score on
        self.score_threshold: float = 0.5
        self._thread = threading.get_ident()

    def _check_thread(self) -> None:
        if threading.get_ident() != self._thread:
            raise RuntimeError("AppState was changed from a worker thread; hand the result "
                               "to the GUI thread first (JobRunner's on_result does).")

    def set_model(self, model: Optional[LoadedModel]) -> None:
        """Show ``model``; the capture of the previous one is dropped with it."""
        self._check_thread()
        if model is not self.model:
            self.model = model
            self.result = None
            self.model_changed.emit(model)

    def set_image(self, image: Optional[Image], source: str, origin: Any = None) -> None:
        """Show ``image``; ``source`` names it, ``origin`` (default: ``source``) is the
        file (or FrameOf) exports hash."""
        self._check_thread()
        self.image, self.image_source = image, source
        self.image_origin = source if origin is None else origin
        self.live_frame = False
        self.result = None
        self.image_changed.emit(image, source)

    def set_frame(self, image: Image, source: str, result: CaptureResult) -> None:
        """Show a live frame and its capture as ONE event (``result_changed``): each
        listener draws once per frame, and none sees the frame without its capture
        (predictions would blink empty). Listeners read ``image``/``image_source``."""
        self._check_thread()
        self.image, self.image_source, self.image_origin = image, source, ""
        self.live_frame = True  # the predictions keep their rows steady from frame to frame
        self.set_result(result)

    def set_score_threshold(self, threshold: float) -> None:
        """Show a detector's boxes from ``threshold`` (0-1) on."""
        self._check_thread()
        threshold = min(1.0, max(0.0, float(threshold)))
        if threshold != self.score_threshold:
            self.score_threshold = threshold
            self.score_threshold_changed.emit(threshold)

    def set_result(self, result: Optional[CaptureResult]) -> None:
        """Show a capture; selects its first layer when the selected one is not in it."""
        self._check_thread()
        self.result = result
        self.result_changed.emit(result)
        if result is not None and self.layer not in result.layers and result.layers:
            self.set_layer(result.layers[0])

    def set_layer(self, name: str) -> None:
        self._check_thread()
        if name != self.layer:
            self.layer = name
            self.channel = -1
            self.layer_changed.emit(name)

    def set_channel(self, channel: int) -> None:
        self._check_thread()
        if channel != self.channel:
            self.channel = channel
            self.channel_changed.emit(channel)

    def set_display(self, **changes: Any) -> None:
        """Change some fields of the display options (DisplayOptions field names)."""
        self._check_thread()
        display = replace(self.display, **changes)
        if display != self.display:
            self.display = display
            self.display_changed.emit(display)

    def set_every_module(self, every: bool) -> None:
        """List (and capture) every module with a feature map, or only conv and pooling."""
        self._check_thread()
        if bool(every) != self.every_module:
            self.every_module = bool(every)
            self.every_module_changed.emit(self.every_module)

    def set_index(self, index) -> None:
        """The dataset index (core.index.Index) whose examples and labels are shown, or None."""
        self._check_thread()
        if index is not self.index:
            self.index = index
            self.index_changed.emit(index)

    def unit_label(self, layer: str, channel: int):
        """The open index's :class:`~featurescope.core.atlas.labels.UnitLabel` of one unit,
        or None (no index, no sub-folders, a layer it does not hold)."""
        index = self.index
        if index is None or not index.groups or layer not in index.layers:
            return None
        from featurescope.core.atlas.labels import unit_labels

        labels = unit_labels(index, layer)
        return labels[channel] if 0 <= channel < len(labels) else None

    def listed(self, infos) -> list:
        """The LayerInfos of ``infos`` the layer list shows: all with "Every module", else
        the conv and pooling layers (a capture holds activations too while "show after
        activation" is on)."""
        if self.every_module:
            return list(infos)
        from featurescope.core.capture.layers import CAPTURED_TYPES  # torch: loaded by now

        return [info for info in infos if info.kind in CAPTURED_TYPES]

    def listed_layers(self) -> list[str]:
        """The names of the current capture's layers that the layer list shows."""
        result = self.result
        if result is None:
            return []
        return [info.name for info in self.listed([result.info[n] for n in result.layers])]

    def set_busy(self, busy: bool, label: str = "") -> None:
        """What the workers are doing (the job runner's busy_changed is wired here)."""
        self._check_thread()
        if (bool(busy), str(label)) != (self.busy, self.busy_label):
            self.busy, self.busy_label = bool(busy), str(label)
            self.busy_changed.emit(self.busy, self.busy_label)

    def layer_info(self) -> Optional[LayerInfo]:
        """The LayerInfo of the selected layer, from the capture or else the model; or None."""
        if not self.layer:
            return None
        if self.result is not None and self.layer in getattr(self.result, "info", {}):
            return self.result.info[self.layer]
        find = getattr(self.model, "find_layer_info", None)
        if find is not None:
            return find(self.layer)
        for info in getattr(self.model, "layer_info", None) or ():
            if info.name == self.layer:
                return info
        return None

    def report_error(self, message: str) -> None:
        self._check_thread()
        self.error_reported.emit(message)
