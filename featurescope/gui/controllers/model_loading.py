"""Loading models and capturing their layers on the worker thread.

A request never replaces what is shown until its answer is in; a stale answer (the
model or the image changed meanwhile) is dropped. Errors become one sentence in the
state's error report.
"""
from __future__ import annotations

import weakref
from pathlib import Path
from typing import Any, Callable, Optional

from PySide6.QtCore import QObject, QTimer

from featurescope.gui.caches import receptive_fields as field_cache
from featurescope.core.capture.memory import release_freed_memory
from featurescope.core.errors import ModelError
from featurescope.core.models.spec import parse_statistics
from featurescope.gui.model.model_choice import parse_size
from featurescope.core.models.registry import DEFAULT_MODEL
from featurescope.gui.model.settings import Settings, absolute
from featurescope.gui.model.state import AppState
from featurescope.gui.jobs.lanes import BACKGROUND
from featurescope.gui.jobs.workers import JobRunner


def capture_layers(state: AppState):
    """What the app captures: every module when the layer list shows them all, the
    activations too while "show after activation" is on, else the conv and pooling
    layers (None)."""
    if state.every_module:
        return "all"
    if state.display.after_activation:
        return "conv,pool,act"
    return None


def first_layer(result: Any) -> str:
    """The first convolution (what a newcomer should see first), else the first layer."""
    for name in result.layers:
        if getattr(result.info.get(name), "kind", "") == "Conv2d":
            return name
    return result.layers[0] if result.layers else ""


# Without a first capture (no image yet) a model's receptive fields are worked out after this.
FIELDS_WAIT_MS = 5000


class ModelJobs(QObject):
    """Model loading, whole-image capture and re-capture of layers the budget left out."""

    def __init__(self, state: AppState, jobs: JobRunner, settings: Settings,
                 show_status: Callable[[str], None], clear_error: Callable[[], None],
                 parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self.state, self.jobs, self.settings = state, jobs, settings
        self.show_status, self.clear_error = show_status, clear_error
        self.model_spec: dict = {}
        # The sentence of the start-up model that failed and was replaced by Lite0: it
        # stays in the window (an image or a capture that works does not take it away)
        # until a model the user asks for loads; see MainWindow.clear_error.
        self.model_error = ""
        self._fetching: Optional[tuple] = None  # (id(result), layer) being fetched
        self._trimmed_for = 0  # id() of the model after whose first capture memory was trimmed
        self._fields_asked: "weakref.WeakSet[Any]" = weakref.WeakSet()  # models whose fields are asked for
        state.layer_changed.connect(self.fetch_missing_layer)
        self._captured_layers = capture_layers(state)
        state.every_module_changed.connect(self._on_layer_scope)
        state.display_changed.connect(self._on_layer_scope)

    def _on_layer_scope(self, *_: Any) -> None:
        """Capture again when what is captured changes (every module, after activation)."""
        wanted = capture_layers(self.state)
        if wanted != self._captured_layers:
            self._captured_layers = wanted
            self.request_capture()

    def _failed(self, message: str, _error: Optional[BaseException]) -> None:
        self.state.report_error(message)

    def request_model(self, spec: dict, fallback: bool = False) -> None:
        """Load a model in the background; the current one stays until it is in.

        With ``fallback`` (start-up), a model that fails to load is replaced by the
        embedded efficientnet_lite0, so the window never waits for a model that cannot
        come; the failure's sentence stays shown. ``spec["trust_pickle"]``, when present,
        is the user's choice for a weights file and is remembered for that file.
        """
        try:
            kwargs = {"input_size": parse_size(str(spec.get("input_size") or "")),
                      "mean": parse_statistics(str(spec.get("mean") or ""), what="Mean"),
                      "std": parse_statistics(str(spec.get("std") or ""), what="Std")}
        except (ValueError, ModelError) as error:
            self._model_failed(str(error), spec, fallback)
            return
        kwargs = {k: v for k, v in kwargs.items() if v is not None}
        name, weights, device = spec["name"], spec.get("weights") or "default", spec.get("device") or "auto"
        spec = dict(spec, weights=weights, device=device)
        is_file = weights not in ("default", "none")
        if is_file and "trust_pickle" in spec:
            self.settings.set_weights_trusted(weights, bool(spec["trust_pickle"]))
        trust = is_file and absolute(weights) in self.settings.trusted_weights()

        def work(progress, cancel):
            # imported here: the window shows before torch is imported (start-up time)
            from featurescope.core.models.load import load_model

            model = load_model(name, weights=weights, device=device, progress=progress,
                               cancel=cancel, trust_pickle=trust, **kwargs)
            # layer_info is computed lazily by a forward pass on zeros: do it here, not
            # in the layer list on the GUI thread (0.8 s for vgg16)
            model.layer_info
            return model

        def loaded(model: Any) -> None:
            self.model_spec = spec
            self.model_error = ""
            self.settings.set_model_spec(name, weights, device, str(spec.get("input_size") or ""),
                                         str(spec.get("mean") or ""), str(spec.get("std") or ""))
            field_cache.mark_pending(model)  # nobody traces them on the GUI thread meanwhile
            self.state.set_model(model)
            self.request_capture()
            self._prepare_fields_later(model)

        label = f"Loading {Path(name).name if '.py' in name else name}"
        self.jobs.submit("model", work, label=label, on_result=loaded,
                         on_error=lambda message, _error: self._model_failed(message, spec, fallback),
                         on_cancelled=lambda: self.show_status("Model loading cancelled; the previous model stays."),
                         also_cancel=("capture", "grids", "stats", "fetch"))

    def _model_failed(self, message: str, spec: dict, fallback: bool) -> None:
        if "trust_pickle=True" in message:
            message += ' In the Model tab, tick "Trust this file" beside the weights file to load it.'
        asked_default = spec.get("name") == DEFAULT_MODEL and spec.get("weights", "default") == "default"
        replace = fallback and self.state.model is None and not asked_default
        if replace:  # the user never saw their model: its sentence stays while Lite0 stands in
            self.model_error = message
        self.state.report_error(message)
        if replace:
            self.load_fallback(str(spec.get("name") or "the model"))

    def load_fallback(self, failed_name: str) -> None:
        """Load the embedded efficientnet_lite0 (no download, no file) after ``failed_name``
        failed at start-up; the settings keep asking for the model that failed."""
        shown = Path(failed_name.partition(":")[0]).name if ".py" in failed_name else failed_name

        def work(progress, cancel):
            from featurescope.core.models.load import load_model

            model = load_model(DEFAULT_MODEL, weights="default", device="cpu")
            model.layer_info
            return model

        def loaded(model: Any) -> None:
            self.model_spec = {"name": DEFAULT_MODEL, "weights": "default", "device": "cpu"}
            field_cache.mark_pending(model)
            self.state.set_model(model)
            self.show_status(f"{shown} did not load; showing {DEFAULT_MODEL} (embedded) instead.")
            self.request_capture()
            self._prepare_fields_later(model)

        self.jobs.submit("model", work, label=f"Loading {DEFAULT_MODEL} instead of {shown}",
                         on_result=loaded, on_error=self._failed,
                         also_cancel=("capture", "grids", "stats", "fetch"))

    def request_capture(self) -> None:
        """Capture every layer of the current image with the current model (background).

        Within the memory budget setting: beyond it the capture stores float16, or only
        some layers (the selected one first); the others are fetched when selected.
        """
        from featurescope.core.capture.capture import capture

        model, image = self.state.model, self.state.image
        if model is None or image is None:
            return
        budget, focus = self.settings.memory_budget(), self.state.layer or None
        layers = self._captured_layers = capture_layers(self.state)

        def work(progress, cancel):
            return capture(model, image, layers=layers, progress=progress, cancel=cancel,
                           memory_budget=budget, focus=focus)

        def captured(result: Any) -> None:
            if model is not self.state.model or image is not self.state.image:
                return  # stale: the model or image changed meanwhile
            self.clear_error()
            if self.state.layer not in result.layers:
                self.state.set_layer(first_layer(result))
            first_of_model = self._trimmed_for != id(model)
            self.state.set_result(result)
            if getattr(result, "notice", ""):
                self.show_status(result.notice)
            self.fetch_missing_layer()
            if first_of_model:
                # the previous model and its captures are gone now: hand their memory back
                self._trimmed_for = id(model)
                self.jobs.submit("trim", lambda progress, cancel: release_freed_memory(),
                                 lane=BACKGROUND)
                self._prepare_fields(model)

        self._fetching = None
        self.jobs.submit("capture", work, label=f"Capturing {model.name}",
                         on_result=captured, on_error=self._failed,
                         also_cancel=("grids", "stats", "fetch"))

    def _prepare_fields_later(self, model: Any) -> None:
        """The model's first capture asks for its fields; without one (no image) they
        are worked out after FIELDS_WAIT_MS all the same."""
        ref = weakref.ref(model)
        QTimer.singleShot(FIELDS_WAIT_MS, self, lambda: ref() is not None and self._prepare_fields(ref()))

    def _prepare_fields(self, model: Any) -> None:
        """Receptive fields on the worker, after the model's first capture (the first
        trace in a process costs ~1.5 s: the first grid does not wait for it). The views
        read them once they are in (``AppState.fields_ready``)."""
        if field_cache.ready(model) or model in self._fields_asked:
            return
        self._fields_asked.add(model)
        field_cache.mark_pending(model)
        self.jobs.submit("fields", lambda progress, cancel: field_cache.prepare(model),
                         label=f"Receptive fields of {model.name}", lane=BACKGROUND,
                         on_result=lambda _fields: self.state.fields_ready.emit(model),
                         on_cancelled=lambda: field_cache.forget_pending(model),
                         on_error=lambda *_: field_cache.forget_pending(model))

    def fetch_missing_layer(self, *_: Any) -> None:
        """Capture the selected layer again when the memory budget left it out (worker).

        The answer replaces the state's result only if the model, the image and the
        result are still the ones it was asked for.
        """
        from featurescope.core.capture.capture import capture_missing

        state = self.state
        model, image, result, layer = state.model, state.image, state.result, state.layer
        if model is None or result is None or layer not in getattr(result, "missing", ()):
            return
        if self._fetching == (id(result), layer):
            return  # already on its way
        self._fetching = (id(result), layer)

        def work(progress, cancel):
            return capture_missing(model, result, [layer], progress=progress, cancel=cancel)

        def fetched(new_result: Any) -> None:
            self._fetching = None
            if model is state.model and image is state.image and result is state.result:
                state.set_result(new_result)

        def forget(*_: Any) -> None:
            self._fetching = None

        def failed(message: str, error: Optional[BaseException]) -> None:
            forget()
            self._failed(message, error)

        self.jobs.submit("fetch", work, label=f"Capturing {layer} (left out by the memory budget)",
                         on_result=fetched, on_error=failed, on_cancelled=forget,
                         also_cancel=("grids", "stats"))

    def set_memory_budget(self, budget: int) -> None:
        """Remember a new budget (bytes) and capture again under it."""
        if int(budget) == self.settings.memory_budget():
            return
        self.settings.set_memory_budget(int(budget))
        self.request_capture()
