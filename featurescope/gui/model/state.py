"""The one observable app state: current model, image, capture, layer, display options.

Docks and views never talk to each other; they read this object and listen to its
signals, and ``main_window.py`` wires the workers that fill it. Setters emit only when
the value really changes, so a view can call them freely without feedback loops.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Optional

from PySide6.QtCore import QObject, Signal

from featurescope.core.render.options import DisplayOptions


class AppState(QObject):
    """Holds what the user is looking at. Only the GUI thread touches it."""

    model_changed = Signal(object)  # LoadedModel
    image_changed = Signal(object, str)  # PIL.Image, source (path or "clipboard")
    result_changed = Signal(object)  # CaptureResult for (model, image)
    layer_changed = Signal(str)  # layer name
    channel_changed = Signal(int)  # true channel index, -1 for none
    display_changed = Signal(object)  # DisplayOptions
    busy_changed = Signal(bool, str)  # busy, what is running
    error_reported = Signal(str)  # one sentence for the user

    def __init__(self, parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self.model: Any = None
        self.image: Any = None
        self.image_source: str = ""
        self.result: Any = None
        self.layer: str = ""
        self.channel: int = -1
        self.display = DisplayOptions()

    def set_model(self, model: Any) -> None:
        if model is not self.model:
            self.model = model
            self.result = None
            self.model_changed.emit(model)

    def set_image(self, image: Any, source: str) -> None:
        self.image, self.image_source = image, source
        self.result = None
        self.image_changed.emit(image, source)

    def set_result(self, result: Any) -> None:
        self.result = result
        self.result_changed.emit(result)
        if result is not None and self.layer not in result.layers and result.layers:
            self.set_layer(result.layers[0])

    def set_layer(self, name: str) -> None:
        if name != self.layer:
            self.layer = name
            self.channel = -1
            self.layer_changed.emit(name)

    def set_channel(self, channel: int) -> None:
        if channel != self.channel:
            self.channel = channel
            self.channel_changed.emit(channel)

    def set_display(self, **changes: Any) -> None:
        display = replace(self.display, **changes)
        if display != self.display:
            self.display = display
            self.display_changed.emit(display)

    def layer_info(self) -> Any:
        """The LayerInfo of the selected layer, from the capture or else the model; or None."""
        if not self.layer:
            return None
        if self.result is not None and self.layer in getattr(self.result, "info", {}):
            return self.result.info[self.layer]
        for info in getattr(self.model, "layer_info", None) or ():
            if info.name == self.layer:
                return info
        return None

    def report_error(self, message: str) -> None:
        self.error_reported.emit(message)
