"""The main window: the composition of docks, tabs and menus, and the wiring between them.

Everything slow (loading a model, opening a photo, capturing, exporting) is a request to
the single worker thread (:mod:`controllers.model_loading`, :mod:`image_sources`, :mod:`export_actions`);
the answer is put into :class:`AppState`, and every dock and view follows the state's
signals. A failed request leaves the previous model and image in place and shows one
sentence in the window.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional, Union

from PySide6.QtCore import QSettings, Qt, QTimer
from PySide6.QtWidgets import QMainWindow, QVBoxLayout, QWidget

from featurescope.gui import dock_layout
from featurescope.gui.docks.display_panel import DisplayOptionsPanel
from featurescope.gui.docks.image_panel import ImagePanel
from featurescope.gui.docks.layer_info_panel import LayerInfoPanel
from featurescope.gui.docks.layer_panel import LayerPanel
from featurescope.gui.docks.model_panel import ModelPanel
from featurescope.gui.model.model_choice import catalogue_and_devices
from featurescope.gui.docks.predictions_panel import PredictionsPanel
from featurescope.gui.widgets.error_banner import ErrorBanner
from featurescope.gui.atlas_actions import AtlasActions
from featurescope.gui.export_actions import ExportActions
from featurescope.gui.image_sources import ImageSources
from featurescope.gui.widgets.mime_images import ImageDropTarget
from featurescope.gui.widgets.job_status import JobStatus
from featurescope.gui.layer_keys import LayerKeys
from featurescope.gui.menus import build_menus
from featurescope.gui.controllers.model_loading import ModelJobs, first_layer
from featurescope.gui.model.settings import Settings
from featurescope.gui.model.state import AppState
from featurescope.gui.views.arithmetic_panel import ArithmeticPanel
from featurescope.gui.views.backprop_control import BackpropControl
from featurescope.gui.views.overview_strip import OverviewStrip
from featurescope.gui.views.registry import VIEWS, view_index
from featurescope.gui.widgets.fit_button import add_fit_buttons, fit_pictures
from featurescope.gui.widgets.view_switcher import ViewSwitcher
from featurescope.gui.jobs.workers import JobRunner
from featurescope.gui.controllers.live_controller import LiveController

log = logging.getLogger(__name__)


def _field_text(value: Any) -> str:
    """A command-line value as the Model tab's text: 32 -> "32", (32, 48) -> "32x48",
    (0.5, 0.5, 0.5) -> "0.5,0.5,0.5"; text passes unchanged."""
    if isinstance(value, (tuple, list)):
        joiner = "x" if all(isinstance(v, int) for v in value) and len(value) == 2 else ","
        return joiner.join(str(v) for v in value)
    return str(value)

# where each view sits in the view bar (the order of gui/views/registry.py)
GRID_TAB, FILTERS_TAB, CHANNEL_TAB = view_index("grid"), view_index("filters"), view_index("channel")
GRADCAM_TAB, COMPARE_TAB, ABLATION_TAB = view_index("gradcam"), view_index("compare"), view_index("ablation")
EXAMPLES_TAB, PLAYGROUND_TAB, VISUALIZE_TAB = view_index("examples"), view_index("playground"), view_index("visualize")


class MainWindow(ImageDropTarget, QMainWindow):
    """``MainWindow(state=None, settings=None, start=True)``.

    ``settings`` is a :class:`Settings`, a QSettings, or an INI file path (tests). With
    ``start`` the remembered (or default) model and image start loading at once.
    """

    first_layer = staticmethod(first_layer)

    def __init__(self, state: Optional[AppState] = None,
                 settings: Union[Settings, QSettings, str, Path, None] = None,
                 start: bool = True) -> None:
        super().__init__()
        from featurescope.gui.app import app_icon, configure_qt, open_settings

        configure_qt()
        self.state = state if state is not None else AppState()
        self.settings = open_settings(settings)
        self.jobs = JobRunner(self)
        self._error_shown = ""
        self.setObjectName("featurescopeMainWindow")
        self.setWindowIcon(app_icon())
        self.setAcceptDrops(True)
        self.resize(1280, 800)

        self._build_views()
        self._build_docks()
        self.job_status = JobStatus(self.statusBar(), self.jobs)
        self.busy_label = self.job_status.busy_label
        self.progress_bar = self.job_status.progress_bar
        self.cancel_button = self.job_status.cancel_button
        self.model_jobs = ModelJobs(self.state, self.jobs, self.settings, self.show_status,
                                    self.clear_error, self)
        self.images = ImageSources(self, self.state, self.jobs, self.settings, self.show_status)
        self.exports = ExportActions(self, self.state, self.jobs, self.settings, self.show_status)
        self.atlas = AtlasActions(self, self.state, self.jobs, self.show_status, index_source=lambda: str(
            getattr(self.examples_view.index, "path", None) or ""))
        self.exports.selected_layers = self.layer_panel.selected_layers
        self.layer_panel.add_context_actions([self.exports.export_selected_action,
                                              self.exports.export_grid_action, self.exports.copy_action])
        menu = build_menus(self, self.images, self.exports, self.atlas, self.tabs, self.fit_current_view,
                           self._docks(), self.cancel_jobs)
        self.open_action, self.paste_action, self.quit_action = \
            menu.open_action, menu.paste_action, menu.quit_action
        self.fit_action, self.cancel_action, self.recent_menu = \
            menu.fit_action, menu.cancel_action, menu.recent_menu
        self.panels = dock_layout.PanelToggle(self, self._docks(), menu.panels_action)
        self.shortcuts_action = menu.shortcuts_action
        self.tabs.bar.add_action(menu.panels_action, "Side panels")
        self.tabs.bar.add_action(menu.shortcuts_action, "Keys  ?")
        self.layer_keys = LayerKeys(self, self.layer_panel.layer_names, lambda: self.state.layer,
                                    self.state.set_layer)
        for view in (*self.tabs.views(), self.arithmetic_panel):
            add_fit_buttons(view)
        self.live = LiveController(self, self.state, self.jobs, self._on_image_ready, self.show_status,
                                   self.show_error, want_logits=lambda: self.predictions_panel.isVisible()
                                   or self.tabs.currentIndex() == GRADCAM_TAB,
                                   worker_views=lambda: self.tabs.currentIndex() == GRADCAM_TAB)
        self._connect()
        self._restore()
        self._update_title()
        if start:
            self.start()

    # -- construction ---------------------------------------------------------------------
    def _build_views(self) -> None:
        """One view per line of gui/views/registry.py, kept as ``self.<name>_view``."""
        state = self.state
        self.tabs = ViewSwitcher()  # the view bar and the current view (a QTabWidget's API)
        for entry in VIEWS:
            view = entry.build(state, self.jobs)
            setattr(self, f"{entry.name}_view", view)
            self.tabs.addTab(view, entry.title, entry.group, entry.tip)
        self._pending_pin: Optional[tuple] = None  # an example opened from the Examples tab
        self._catalogue_asked = False  # start() asks the worker for the model catalogue
        self._catalogue_submitted = False
        # teaching (issue 13): the arithmetic under the channel view, the network at a glance
        # above the views
        self.arithmetic_panel = ArithmeticPanel(state, jobs=self.jobs)
        self.channel_view.add_detail_panel(self.arithmetic_panel)
        self.channel_view.position_pinned.connect(self.arithmetic_panel.explain)
        self.backprop_control = BackpropControl(state, self.channel_view, jobs=self.jobs)
        self.channel_view.controls.addWidget(self.backprop_control)
        self.backprop_control.method_changed.connect(self.examples_view.crops.set_backprop)
        self.overview_strip = OverviewStrip(state, jobs=self.jobs)
        self.tabs.add_above(self.overview_strip)
        self.banner = ErrorBanner()
        central = QWidget()
        box = QVBoxLayout(central)
        box.setContentsMargins(0, 0, 0, 0)
        box.setSpacing(0)
        box.addWidget(self.banner)
        box.addWidget(self.tabs, 1)
        self.setCentralWidget(central)

    def _build_docks(self) -> None:
        state = self.state
        self.model_panel = ModelPanel(state)
        self.image_panel = ImagePanel(state)
        self.layer_panel = LayerPanel(state)
        self.layer_info_panel = LayerInfoPanel(state, jobs=self.jobs)
        self.predictions_panel = PredictionsPanel(state)
        self.display_panel = DisplayOptionsPanel(state)
        left, add = Qt.LeftDockWidgetArea, dock_layout.add_dock
        self.layers_dock = add(self, "Layers", "layersDock", self.layer_panel, left)
        self.info_dock = add(self, "Layer info", "layerInfoDock", self.layer_info_panel, left)
        self.image_dock = add(self, "Image", "imageDock", self.image_panel, left)
        self.predictions_dock = add(self, "Predictions", "predictionsDock", self.predictions_panel, left)
        self.display_dock = add(self, "Display", "displayDock", self.display_panel, left)
        self.model_dock = add(self, "Model", "modelDock", self.model_panel, left)
        # one column left of the canvas: the layers (their info as a tab behind them) on
        # top, the image, predictions, display options and the model as tabs below
        dock_layout.arrange_default(self, [self.layers_dock, self.info_dock],
                                    [self.image_dock, self.predictions_dock, self.display_dock,
                                     self.model_dock])

    def _docks(self) -> tuple:
        return (self.layers_dock, self.model_dock, self.image_dock, self.info_dock,
                self.predictions_dock, self.display_dock)

    def _connect(self) -> None:
        state = self.state
        state.error_reported.connect(self.show_error)
        state.model_changed.connect(self._on_model_changed)
        state.image_changed.connect(lambda *_: self._update_title())
        state.result_changed.connect(lambda *_: self._update_title())  # a live frame: one event
        state.display_changed.connect(self.settings.set_display_options)
        self.jobs.busy_changed.connect(state.set_busy)
        self.cancel_button.clicked.connect(self.cancel_jobs)
        self.model_panel.load_requested.connect(self.request_model)
        self.model_panel.memory_budget_changed.connect(self.set_memory_budget)
        self.image_panel.image_requested.connect(self.request_image)
        self.image_panel.open_requested.connect(self.open_image_dialog)
        self.images.image_ready.connect(self._on_image_ready)
        self.images.recent_files_changed.connect(self.image_panel.set_recent_files)
        self.grid_view.channel_activated.connect(lambda _c: self.tabs.setCurrentIndex(CHANNEL_TAB))
        self.why_view.channel_activated.connect(lambda _c: self.tabs.setCurrentIndex(CHANNEL_TAB))
        self.tabs.currentChanged.connect(self.settings.set_current_tab)
        self.examples_view.example_opened.connect(self.open_example)
        self.grid_view.channel_hovered.connect(self.examples_view.preview_channel)
        state.result_changed.connect(self._pin_example)

    def _restore(self) -> None:
        settings = self.settings
        options = settings.display_options()
        self.state.set_display(**{k: getattr(options, k) for k in options.__dataclass_fields__})
        geometry, dock_state = settings.window_geometry(), settings.window_state()
        if geometry is not None:
            self.restoreGeometry(geometry)
        if dock_state is not None:
            self.restoreState(dock_state, dock_layout.LAYOUT_VERSION)
            self.panels.sync()
        self.tabs.setCurrentIndex(max(0, min(self.tabs.count() - 1, settings.current_tab())))
        self.image_panel.set_recent_files(settings.recent_files())
        self.model_panel.set_memory_budget(settings.memory_budget())
        self.model_panel.set_trusted_files(settings.trusted_weights())

    def hide_stray_tab_bars(self) -> None:
        dock_layout.hide_stray_tab_bars(self)

    def showEvent(self, event: Any) -> None:  # noqa: N802 (Qt)
        super().showEvent(event)
        dock_layout.schedule_tab_bar_check(self)

    # -- start and requests (the work is in controllers/model_loading and image_sources) ------------------
    def start(self, image: Optional[str] = None, model: Optional[str] = None,
              weights: Optional[str] = None, device: Optional[str] = None,
              input_size: Optional[str] = None, mean: Optional[str] = None,
              std: Optional[str] = None) -> None:
        """Load the remembered model (or ``model``) and image (or ``image``, else the cat).

        ``input_size`` ("224", "32x32"), ``mean`` and ``std`` ("0.5,0.5,0.5") go with
        ``model``; a ``model`` given without them drops the remembered ones. A model that
        fails to load is replaced by the embedded efficientnet_lite0, with its sentence
        shown. Nothing here imports torch: the worker does, so the window paints first.
        """
        from featurescope.core.resources import default_sample

        spec = self.settings.model_spec()
        if model:
            spec.update(name=model, weights="default", input_size="", mean="", std="")
        for key, value in (("weights", weights), ("device", device), ("input_size", input_size),
                           ("mean", mean), ("std", std)):
            if value:
                spec[key] = _field_text(value)
        self.model_panel.set_spec(spec)
        self.model_jobs.request_model(spec, fallback=True)
        if image is None:
            recent = [p for p in self.settings.recent_files() if Path(p).is_file()]
            image = recent[0] if recent else str(default_sample())
        self.request_image(str(image))
        # The catalogue imports torchvision (~1.5 s): the worker does it after the first
        # capture (or after 10 s without one), so the first grid does not wait for it.
        self._catalogue_asked = True  # and not the GUI thread on the first model either
        self.state.result_changed.connect(self._ask_catalogue)
        QTimer.singleShot(10000, self._ask_catalogue)
        self.layer_panel.focus_list()

    def _ask_catalogue(self, *_: Any) -> None:
        self.state.result_changed.disconnect(self._ask_catalogue)
        if self.model_panel.filled or self._catalogue_submitted:
            return
        self._catalogue_submitted = True
        self.jobs.submit("catalogue", lambda progress, cancel: catalogue_and_devices(),
                         on_result=lambda choices: self.model_panel.filled or self.model_panel.fill_choices(*choices),
                         on_error=lambda message, _error: log.info("no catalogue: %s", message))

    def request_model(self, spec: dict) -> None:
        self.model_jobs.request_model(spec)
        self.model_panel.set_trusted_files(self.settings.trusted_weights())

    def request_capture(self) -> None:
        self.model_jobs.request_capture()

    def fetch_missing_layer(self, *_: Any) -> None:
        self.model_jobs.fetch_missing_layer()

    def set_memory_budget(self, budget: int) -> None:
        self.model_jobs.set_memory_budget(budget)

    def request_image(self, path: str) -> None:
        self.images.request_image(path)

    def request_image_bytes(self, data: bytes, name: str = "clipboard") -> None:
        self.images.request_image_bytes(data, name)

    def open_image_dialog(self) -> None:
        self.images.open_image_dialog()

    def accept_mime(self, mime: Any) -> bool:
        return self.images.accept_mime(mime)

    def paste(self) -> None:
        self.images.paste()

    def open_example(self, path: str, layer: str, channel: int, y: int, x: int) -> None:
        """Open an image from the Examples tab with its layer and channel selected and the
        position pinned in the Channel tab (once its capture is in)."""
        self._pending_pin = (str(path), layer, int(channel), int(y), int(x))
        model = self.state.model
        if model is not None and layer in model.layers:
            self.state.set_layer(layer)
            self.state.set_channel(int(channel))
        self.tabs.setCurrentIndex(CHANNEL_TAB)
        self.request_image(str(path))

    def _pin_example(self, result: Any) -> None:
        pending = self._pending_pin
        if pending is None or result is None or not self.state.image_source or \
                Path(self.state.image_source) != Path(pending[0]):
            return
        self._pending_pin = None
        _path, layer, channel, y, x = pending
        if self.state.layer == layer:
            self.state.set_channel(channel)
            self.channel_view.show_position(y, x)

    def fit_current_view(self) -> None:
        """Show the current view's pictures whole (F): its own ``fit()`` where it has one."""
        view = self.tabs.currentWidget()
        if hasattr(view, "fit"):
            view.fit()
        elif view is not None:
            fit_pictures(view)

    def cancel_jobs(self) -> None:
        if not self.jobs.is_idle():
            self.jobs.cancel()
            self.show_status("Cancelling...")

    def _on_image_ready(self, image: Any, source: str, origin: Any = None) -> None:
        self.clear_error()
        self.state.set_image(image, source, origin)
        self.request_capture()

    # -- drops (ImageDropTarget does the Qt events) ------------------------------------
    def drop_refused(self) -> None:
        self.show_error("Drop an image file (PNG, JPEG, ...) to look at it.")

    # -- messages and title ----------------------------------------------------------------
    def show_error(self, message: str) -> None:
        """Show one sentence in the window; nothing modal, the app stays usable."""
        log.info("error shown: %s", message)
        self._error_shown = message
        self.banner.show_message(message)
        self.statusBar().showMessage(message, 15000)

    def clear_error(self) -> None:
        """Take the last error away (banner and status bar) once something new has worked.

        A start-up model that failed (Lite0 stands in for it) stays said: an image or a
        capture that works says nothing about it; a model the user asks for that loads does.
        """
        if self._error_shown and self._error_shown == self.model_jobs.model_error:
            return
        if self._error_shown and self.statusBar().currentMessage() == self._error_shown:
            self.statusBar().clearMessage()
        self._error_shown = ""
        self.banner.hide()

    def show_status(self, message: str) -> None:
        self.statusBar().showMessage(message, 8000)

    def _on_model_changed(self, model: Any) -> None:
        self.clear_error()
        self._update_title()
        if model is not None and not self.model_panel.filled and not self._catalogue_asked:
            # a window made with start=False: torch is imported by now; the catalogue's
            # torchvision import (~1.5 s) is paid here only when no worker job does it
            self.model_panel.fill_choices()

    def _update_title(self) -> None:
        parts = ["featurescope"]
        model = self.state.model
        if model is not None:
            untrained = not model.trained and "untrained" not in model.display_name
            parts.append(f"{model.display_name} (untrained)" if untrained else model.display_name)
        source = self.state.image_source
        if source:
            parts.append(Path(source).name if source != "clipboard" else "clipboard image")
        self.setWindowTitle(" - ".join(parts))

    # -- closing -----------------------------------------------------------------------------
    def save_settings(self) -> None:
        self.settings.set_window(self.saveGeometry(), self.saveState(dock_layout.LAYOUT_VERSION))
        self.settings.set_display_options(self.state.display)
        self.settings.sync()

    def closeEvent(self, event: Any) -> None:  # noqa: N802 (Qt)
        self.save_settings()
        self.live.stop()
        self.jobs.shutdown()
        super().closeEvent(event)
