"""The Channel view's backprop view: guided backpropagation or the deconvnet of the shown
channel (or of its pinned map position), the Deep Visualization Toolbox's backprop view.

A selector (off / guided / deconvnet) under the maps. When on, the input-space pattern
that drives the unit, ``fs.guided_backprop(...).picture``, takes the photo's place on
the right (the receptive-field outlines stay on it; the map overlay steps aside). The
work runs on the worker as a labelled "guided" request (a new one replaces the old);
answers are kept per capture, layer, channel, position and method. A model without
gradients or a layer without channels: the engine's sentence beside the selector. The
Examples tab's crops follow the selector too (``method_changed``).
"""
from __future__ import annotations

import weakref
from collections import OrderedDict
from typing import Any, Callable, Optional

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QWidget

from featurescope.gui.jobs.workers import submit_or_run

METHODS = {"off": "off", "guided": "guided backprop", "deconvnet": "deconvnet"}
CACHE_SIZE = 16


class BackpropControl(QWidget):
    """``BackpropControl(state, channel_view, jobs)``: the selector and its sentence; it
    follows the channel view's redraws and pins."""

    method_changed = Signal(str)  # the Examples tab's crops show their patterns by it too

    def __init__(self, state, view, jobs: Any = None, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.state, self.view, self.jobs = state, view, jobs
        self.method = "off"
        self.shown_key: Optional[tuple] = None  # the pattern on screen
        self._wanted: Optional[tuple] = None
        self._cache: OrderedDict[tuple, Any] = OrderedDict()  # key -> GuidedBackprop
        # the capture the cache belongs to, held weakly: a hidden view must not keep a
        # model the user has left alive through its last capture
        self._cache_result: Callable[[], Any] = lambda: None

        self.combo = QComboBox(self)
        self.combo.setObjectName("backpropMethod")
        for method, words in METHODS.items():
            self.combo.addItem(words, method)
        self.combo.setToolTip("The input-space pattern that drives the channel (or its pinned position): "
                              "guided backpropagation or the deconvnet, in place of the photo")
        self.note = QLabel(self)
        self.note.setWordWrap(True)
        box = QHBoxLayout(self)
        box.setContentsMargins(0, 0, 0, 0)
        box.addWidget(QLabel("backprop view", self))
        box.addWidget(self.combo)
        box.addWidget(self.note, 1)

        self.combo.activated.connect(lambda i: self.set_method(self.combo.itemData(i)))
        view.redrawn.connect(self.update_pattern)
        view.position_pinned.connect(lambda *_: self.update_pattern())

    def set_method(self, method: str) -> None:
        """"off", "guided" or "deconvnet"."""
        self.method = method if method in METHODS else "off"
        self.combo.setCurrentIndex(max(0, self.combo.findData(self.method)))
        self.method_changed.emit(self.method)
        self.update_pattern()

    def key(self) -> Optional[tuple]:
        """(capture, layer, channel, position or None, method) of the pattern to show."""
        result, layer, channel = self.state.result, self.state.layer, self.view.current_channel
        if self.method == "off" or result is None or not layer or channel < 0:
            return None
        return id(result), layer, channel, self.view.pinned, self.method

    @property
    def pattern(self) -> Any:
        """The GuidedBackprop on screen, or None."""
        return self._cache.get(self.shown_key) if self.shown_key is not None else None

    def update_pattern(self) -> None:
        if not self.view.isVisible():
            return  # the view's next redraw (when shown) asks again
        if self.state.result is not self._cache_result():  # the previous capture's patterns go
            self._cache.clear()
            result = self.state.result
            self._cache_result = weakref.ref(result) if result is not None else (lambda: None)
        key = self.key()
        if key is None:
            self._show(None, "")
            return
        if key in self._cache:
            self._cache.move_to_end(key)
            self._show(key, "")
            return
        if key == self._wanted:
            return  # on its way
        self._wanted = key
        self._show(None, f"Computing the {METHODS[key[-1]]} pattern...")
        self._submit(key)

    def _submit(self, key: tuple) -> None:
        model, image = self.state.model, self.state.result.input
        _, layer, channel, position, method = key

        def work(progress=None, cancel=None):
            from featurescope.core.analysis.guided import guided_backprop

            return guided_backprop(model, image, layer, channel, position=position, method=method)

        def done(pattern: Any) -> None:
            if self._cache_result() is not self.state.result or key[0] != id(self.state.result):
                return  # a newer capture arrived meanwhile
            self._cache[key] = pattern
            while len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
            if key == self._wanted:
                self._wanted = None
                if key == self.key():
                    self._show(key, "")

        def failed(message: str, _error: Any = None) -> None:
            if key == self._wanted:
                self._wanted = None
                self._show(None, message)

        where = f" at {position}" if position is not None else ""
        submit_or_run(self.jobs, "guided", work, label=f"Backprop view of {layer} channel {channel}{where}",
                      on_result=done, on_error=failed)

    def _show(self, key: Optional[tuple], message: str) -> None:
        self.shown_key = key
        self.note.setText(message)
        pattern = self.pattern
        if pattern is None:
            self.view.show_pattern(None)
            return
        where = (f" at y {pattern.position[0]}, x {pattern.position[1]}" if pattern.position is not None
                 else "")
        self.view.show_pattern(pattern.picture, f"{METHODS[pattern.method]} of channel {pattern.channel}{where}")
