"""The main window: docks, tabs, menus, and the wiring between the state and the workers.

Everything slow (loading a model, opening a photo, capturing, exporting) is a request to
the single worker thread; the answer is put into :class:`AppState`, and every dock and
view follows the state's signals. A failed request leaves the previous model and image
in place and shows one sentence in the window.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional, Union

from PySide6.QtCore import QBuffer, QIODevice, QSettings, Qt, QTimer, QUrl
from PySide6.QtGui import QAction, QGuiApplication, QKeySequence
from PySide6.QtWidgets import (
    QDockWidget, QFileDialog, QHBoxLayout, QLabel, QMainWindow, QProgressBar, QPushButton,
    QTabBar, QTabWidget, QToolButton, QVBoxLayout, QWidget,
)

from featurescope.gui.docks.image_panel import ImagePanel
from featurescope.gui.docks.layer_panel import LayerPanel
from featurescope.gui.docks.model_panel import ModelPanel, parse_size, parse_triple
from featurescope.gui import receptive_cache
from featurescope.gui.export_actions import ExportActions
from featurescope.gui.settings import Settings
from featurescope.gui.state import AppState
from featurescope.gui.views.compare_view import CompareView
from featurescope.gui.views.gradcam_view import GradCamView
from featurescope.gui.views.grid_view import FeatureGridView
from featurescope.gui.workers import JobRunner

log = logging.getLogger(__name__)

IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.bmp *.gif *.tif *.tiff *.webp);;All files (*)"
GRID_TAB, FILTERS_TAB, CHANNEL_TAB, GRADCAM_TAB, COMPARE_TAB = 0, 1, 2, 3, 4


def _placeholder(text: str):
    def make(state: AppState, parent: Optional[QWidget] = None) -> QWidget:
        label = QLabel(text, parent)
        label.setAlignment(Qt.AlignCenter)
        return label
    return make


# gui-views' widgets; a placeholder only while one is not in the tree yet.
try:
    from featurescope.gui.views.channel_view import ChannelView
except ImportError:  # pragma: no cover - temporary
    ChannelView = _placeholder("Channel view: coming soon")
try:
    from featurescope.gui.views.filters_view import FiltersView
except ImportError:  # pragma: no cover - temporary
    FiltersView = _placeholder("Filters view: coming soon")
try:
    from featurescope.gui.docks.layer_info_panel import LayerInfoPanel
except ImportError:  # pragma: no cover - temporary
    LayerInfoPanel = _placeholder("Layer info: coming soon")
try:
    from featurescope.gui.docks.predictions_panel import PredictionsPanel
except ImportError:  # pragma: no cover - temporary
    PredictionsPanel = _placeholder("Predictions: coming soon")
try:
    from featurescope.gui.docks.display_panel import DisplayOptionsPanel
except ImportError:  # pragma: no cover - temporary
    DisplayOptionsPanel = _placeholder("Display options: coming soon")


class ErrorBanner(QWidget):
    """A non-modal strip above the views with the last error sentence and a close button."""

    def __init__(self, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.setObjectName("errorBanner")
        self.setAttribute(Qt.WA_StyledBackground, True)
        self.setStyleSheet("#errorBanner { background: #fdecea; border: 1px solid #e0a39b; }"
                           "QLabel { color: #611a15; }")
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        close = QToolButton()
        close.setText("x")
        close.setAutoRaise(True)
        close.setToolTip("Dismiss")
        close.clicked.connect(self.hide)
        row = QHBoxLayout(self)
        row.setContentsMargins(8, 4, 4, 4)
        row.addWidget(self.label, 1)
        row.addWidget(close)
        self.hide()

    def show_message(self, message: str) -> None:
        self.label.setText(message)
        self.show()

    def text(self) -> str:
        return self.label.text()


class MainWindow(QMainWindow):
    """``MainWindow(state=None, settings=None, start=True)``.

    ``settings`` is a :class:`Settings`, a QSettings, or an INI file path (tests). With
    ``start`` the remembered (or default) model and image start loading at once.
    """

    def __init__(self, state: Optional[AppState] = None,
                 settings: Union[Settings, QSettings, str, Path, None] = None,
                 start: bool = True) -> None:
        super().__init__()
        from featurescope.gui.app import app_icon, configure_qt

        configure_qt()
        self.state = state if state is not None else AppState(self)
        self.settings = settings if isinstance(settings, Settings) else Settings(settings)
        self.jobs = JobRunner(self)
        self._pending_image_source = ""
        self._model_spec: dict = {}
        self._fetching: Optional[tuple] = None  # (id(result), layer) being fetched
        self._error_shown = ""
        self._closing = False
        self.setObjectName("featurescopeMainWindow")
        self.setWindowIcon(app_icon())
        self.setAcceptDrops(True)
        self.resize(1280, 800)

        self._build_views()
        self._build_docks()
        self._build_status_bar()
        self.exports = ExportActions(self, self.state, self.jobs, self.settings, self.show_status)
        self.exports.selected_layers = self.layer_panel.selected_layers
        self.layer_panel.add_context_actions([self.exports.export_selected_action,
                                              self.exports.export_grid_action, self.exports.copy_action])
        self._build_menus()
        self._connect()
        self._restore()
        self._update_title()
        if start:
            self.start()

    # -- construction ---------------------------------------------------------------------
    def _build_views(self) -> None:
        state = self.state
        self.grid_view = FeatureGridView(state, jobs=self.jobs)
        self.filters_view = FiltersView(state)
        self.channel_view = ChannelView(state)
        self.tabs = QTabWidget()
        self.tabs.setObjectName("viewTabs")
        self.tabs.addTab(self.grid_view, "Feature maps")
        self.tabs.addTab(self.filters_view, "Filters")
        self.tabs.addTab(self.channel_view, "Channel")
        self.gradcam_view = GradCamView(state, jobs=self.jobs)
        self.compare_view = CompareView(state, jobs=self.jobs)
        self.tabs.addTab(self.gradcam_view, "Grad-CAM")
        self.tabs.addTab(self.compare_view, "Compare")
        self.banner = ErrorBanner()
        central = QWidget()
        box = QVBoxLayout(central)
        box.setContentsMargins(0, 0, 0, 0)
        box.setSpacing(0)
        box.addWidget(self.banner)
        box.addWidget(self.tabs, 1)
        self.setCentralWidget(central)

    def _dock(self, title: str, name: str, widget: QWidget, area: Qt.DockWidgetArea) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(name)
        dock.setWidget(widget)
        dock.setFeatures(QDockWidget.DockWidgetMovable | QDockWidget.DockWidgetFloatable
                         | QDockWidget.DockWidgetClosable)
        self.addDockWidget(area, dock)
        dock.dockLocationChanged.connect(self._schedule_tab_bar_check)
        dock.topLevelChanged.connect(self._schedule_tab_bar_check)
        return dock

    def _schedule_tab_bar_check(self, *_: Any) -> None:
        QTimer.singleShot(0, self.hide_stray_tab_bars)

    def hide_stray_tab_bars(self) -> None:
        """Hide dock tab bars the layout no longer uses.

        Qt 6.12 leaves a second, stale copy of a tabbed dock group's tab bar visible
        (after a second tabifyDockWidget or a restoreState), drawn over the window. The
        live bar sits right against the dock it shows; a stray one does not.
        """
        docks = {dock.windowTitle(): dock for dock in self.findChildren(QDockWidget)}
        for bar in self.findChildren(QTabBar, options=Qt.FindDirectChildrenOnly):
            if not bar.isVisible() or bar.count() == 0:
                continue
            dock = docks.get(bar.tabText(bar.currentIndex()))
            if dock is None:
                continue
            g, d = bar.geometry(), dock.geometry()
            live = (dock.isVisible() and not dock.isFloating() and abs(g.left() - d.left()) <= 4
                    and (abs(g.top() - d.bottom()) <= 8 or abs(g.bottom() - d.top()) <= 8))
            if not live:
                bar.hide()

    def showEvent(self, event: Any) -> None:  # noqa: N802 (Qt)
        super().showEvent(event)
        self._schedule_tab_bar_check()

    def _build_docks(self) -> None:
        state = self.state
        self.model_panel = ModelPanel(state)
        self.image_panel = ImagePanel(state)
        self.layer_panel = LayerPanel(state)
        self.layer_info_panel = LayerInfoPanel(state, jobs=self.jobs)
        self.predictions_panel = PredictionsPanel(state)
        self.display_panel = DisplayOptionsPanel(state)
        left, right = Qt.LeftDockWidgetArea, Qt.RightDockWidgetArea
        self.layers_dock = self._dock("Layers", "layersDock", self.layer_panel, left)
        self.model_dock = self._dock("Model", "modelDock", self.model_panel, left)
        self.image_dock = self._dock("Image", "imageDock", self.image_panel, left)
        self.info_dock = self._dock("Layer info", "layerInfoDock", self.layer_info_panel, right)
        self.predictions_dock = self._dock("Predictions", "predictionsDock", self.predictions_panel, right)
        self.display_dock = self._dock("Display", "displayDock", self.display_panel, right)
        # Layers on top of the left column, image and model as tabs below it; on the
        # right the layer info above, predictions and display options as tabs below.
        self.tabifyDockWidget(self.image_dock, self.model_dock)
        self.tabifyDockWidget(self.predictions_dock, self.display_dock)
        self.image_dock.raise_()
        self.predictions_dock.raise_()
        self.resizeDocks([self.layers_dock, self.image_dock], [440, 340], Qt.Vertical)
        self.resizeDocks([self.info_dock, self.predictions_dock], [440, 340], Qt.Vertical)
        self.resizeDocks([self.layers_dock, self.info_dock], [390, 330], Qt.Horizontal)

    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        self.busy_label = QLabel("")
        self.progress_bar = QProgressBar()
        self.progress_bar.setObjectName("jobProgress")
        self.progress_bar.setMaximumWidth(220)
        self.progress_bar.setTextVisible(True)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setObjectName("cancelJob")
        self.cancel_button.setToolTip("Stop the running job (Esc); what was there before stays")
        for widget in (self.busy_label, self.progress_bar, self.cancel_button):
            bar.addPermanentWidget(widget)
            widget.hide()

    def _action(self, text: str, slot, shortcut=None, tip: str = "") -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        if tip:
            action.setToolTip(tip)
            action.setStatusTip(tip)
        action.triggered.connect(lambda *_: slot())
        return action

    def _build_menus(self) -> None:
        menus = self.menuBar()
        file_menu = menus.addMenu("&File")
        self.open_action = self._action("&Open image...", self.open_image_dialog, QKeySequence.Open,
                                        "Open an image file")
        self.paste_action = self._action("&Paste image", self.paste, QKeySequence.Paste,
                                         "Use the image (or image file path) on the clipboard")
        self.recent_menu = file_menu.addMenu("Open &recent")
        file_menu.insertAction(self.recent_menu.menuAction(), self.open_action)
        file_menu.addAction(self.paste_action)
        samples = file_menu.addMenu("&Samples")
        from featurescope.core.resources import sample_images

        for path in sample_images():
            samples.addAction(path.stem.replace("_", " "), lambda p=str(path): self.request_image(p))
        file_menu.addSeparator()
        export_menu = file_menu.addMenu("&Export")
        for action in self.exports.actions[:4]:
            export_menu.addAction(action)
        export_menu.addSeparator()
        export_menu.addAction(self.exports.annotate_action)
        file_menu.addSeparator()
        self.quit_action = self._action("&Quit", self.close, QKeySequence.Quit)
        file_menu.addAction(self.quit_action)

        edit_menu = menus.addMenu("&Edit")
        edit_menu.addAction(self.exports.copy_action)
        edit_menu.addAction(self.paste_action)

        view_menu = menus.addMenu("&View")
        self.fit_action = self._action("&Fit grid to view", self.grid_view.fit, "F",
                                       "Show the whole mosaic")
        view_menu.addAction(self.fit_action)
        for index, (name, key) in enumerate((("Feature maps", "Ctrl+1"), ("Filters", "Ctrl+2"),
                                             ("Channel", "Ctrl+3"), ("Grad-CAM", "Ctrl+4"),
                                             ("Compare", "Ctrl+5"))):
            view_menu.addAction(self._action(name, lambda i=index: self.tabs.setCurrentIndex(i), key))
        view_menu.addSeparator()
        for dock in (self.layers_dock, self.model_dock, self.image_dock, self.info_dock,
                     self.predictions_dock, self.display_dock):
            view_menu.addAction(dock.toggleViewAction())
        self.cancel_action = self._action("Cancel running job", self.cancel_jobs, "Esc")
        self.addAction(self.cancel_action)
        self._fill_recent_menu()

    def _connect(self) -> None:
        state = self.state
        state.error_reported.connect(self.show_error)
        state.model_changed.connect(self._on_model_changed)
        state.image_changed.connect(lambda *_: self._update_title())
        state.display_changed.connect(self.settings.set_display_options)
        self.jobs.busy_changed.connect(self._on_busy_changed)
        self.jobs.busy_changed.connect(state.busy_changed)
        self.jobs.progress.connect(self._on_progress)
        self.cancel_button.clicked.connect(self.cancel_jobs)
        self.model_panel.load_requested.connect(self.request_model)
        self.image_panel.image_requested.connect(self.request_image)
        self.image_panel.open_requested.connect(self.open_image_dialog)
        state.layer_changed.connect(self.fetch_missing_layer)
        self.model_panel.memory_budget_changed.connect(self.set_memory_budget)
        self.grid_view.channel_activated.connect(lambda _c: self.tabs.setCurrentIndex(CHANNEL_TAB))
        self.tabs.currentChanged.connect(self.settings.set_current_tab)

    def _restore(self) -> None:
        settings = self.settings
        options = settings.display_options()
        state = self.state
        state.set_display(**{k: getattr(options, k) for k in options.__dataclass_fields__})
        geometry, dock_state = settings.window_geometry(), settings.window_state()
        if geometry is not None:
            self.restoreGeometry(geometry)
        if dock_state is not None:
            self.restoreState(dock_state)
        self.tabs.setCurrentIndex(max(0, min(self.tabs.count() - 1, settings.current_tab())))
        self.image_panel.set_recent_files(settings.recent_files())
        self.model_panel.set_memory_budget(settings.memory_budget())

    # -- start -----------------------------------------------------------------------------
    def start(self, image: Optional[str] = None, model: Optional[str] = None,
              weights: Optional[str] = None, device: Optional[str] = None) -> None:
        """Load the remembered model (or ``model``) and image (or ``image``, else the cat)."""
        from featurescope.core.resources import default_sample

        spec = self.settings.model_spec()
        if model:
            spec.update(name=model, input_size="", mean="", std="")
        if weights:
            spec["weights"] = weights
        if device:
            spec["device"] = device
        self.model_panel.set_spec(spec)
        self.request_model(spec)
        if image is None:
            recent = [p for p in self.settings.recent_files() if Path(p).is_file()]
            image = recent[0] if recent else str(default_sample())
        self.request_image(str(image))
        self.layer_panel.focus_list()

    # -- requests ---------------------------------------------------------------------------
    def request_model(self, spec: dict) -> None:
        """Load a model in the background; the current one stays until it is in."""
        from featurescope.core.models import load_model

        try:
            kwargs = {"input_size": parse_size(str(spec.get("input_size") or "")),
                      "mean": parse_triple(str(spec.get("mean") or "")),
                      "std": parse_triple(str(spec.get("std") or ""))}
        except ValueError as error:
            self.state.report_error(str(error))
            return
        kwargs = {k: v for k, v in kwargs.items() if v is not None}
        name, weights, device = spec["name"], spec.get("weights") or "default", spec.get("device") or "auto"
        spec = dict(spec, weights=weights, device=device)

        def work(progress, cancel):
            model = load_model(name, weights=weights, device=device, progress=progress,
                               cancel=cancel, **kwargs)
            # layer_info is computed lazily by a forward pass on zeros: do it here, not
            # in the layer list on the GUI thread (0.8 s for vgg16)
            model.layer_info
            # receptive fields hook the model too: trace them here, once per model
            receptive_cache.prepare(model)
            return model

        def loaded(model: Any) -> None:
            self._model_spec = spec
            self.settings.set_model_spec(name, weights, device, str(spec.get("input_size") or ""),
                                         str(spec.get("mean") or ""), str(spec.get("std") or ""))
            self.state.set_model(model)
            self.request_capture()

        label = f"Loading {Path(name).name if '.py' in name else name}"
        self.jobs.submit("model", work, label=label, on_result=loaded, on_error=self._on_job_error,
                         on_cancelled=lambda: self.show_status("Model loading cancelled; the previous model stays."),
                         also_cancel=("capture", "grids", "stats", "fetch"))

    def request_image(self, path: str) -> None:
        """Open an image file in the background; the current image stays if it fails."""
        from featurescope.core.images import load_image

        source = str(path)
        self.jobs.submit("image", lambda progress, cancel: load_image(source),
                         label=f"Opening {Path(source).name}",
                         on_result=lambda image: self._image_loaded(image, source, remember=True),
                         on_error=self._on_job_error)

    def request_image_bytes(self, data: bytes, name: str = "clipboard") -> None:
        from featurescope.core.images import image_from_bytes

        self.jobs.submit("image", lambda progress, cancel: image_from_bytes(data, name),
                         label=f"Opening the {name} image",
                         on_result=lambda image: self._image_loaded(image, name, remember=False),
                         on_error=self._on_job_error)

    def _image_loaded(self, image: Any, source: str, remember: bool) -> None:
        if remember:
            self.image_panel.set_recent_files(self.settings.add_recent_file(source))
            self._fill_recent_menu()
            self.settings.set_last_folder("open", Path(source).parent)
        self.clear_error()
        self.state.set_image(image, source)
        self.request_capture()

    def request_capture(self) -> None:
        """Capture every layer of the current image with the current model (background).

        Within the memory budget setting: beyond it the capture stores float16, or only
        some layers (the selected one first); the others are fetched when selected.
        """
        from featurescope.core.capture import capture

        model, image = self.state.model, self.state.image
        if model is None or image is None:
            return
        budget, focus = self.settings.memory_budget(), self.state.layer or None

        def work(progress, cancel):
            return capture(model, image, progress=progress, cancel=cancel,
                           memory_budget=budget, focus=focus)

        def captured(result: Any) -> None:
            if model is not self.state.model or image is not self.state.image:
                return  # stale: the model or image changed meanwhile
            self.clear_error()
            if self.state.layer not in result.layers:
                self.state.set_layer(self.first_layer(result))
            self.state.set_result(result)
            if getattr(result, "notice", ""):
                self.show_status(result.notice)
            self.fetch_missing_layer()

        self._fetching = None
        self.jobs.submit("capture", work, label=f"Capturing {model.name}",
                         on_result=captured, on_error=self._on_job_error,
                         also_cancel=("grids", "stats", "fetch"))

    def fetch_missing_layer(self, *_: Any) -> None:
        """Capture the selected layer again when the memory budget left it out (worker).

        The answer replaces the state's result only if the model, the image and the
        result are still the ones it was asked for.
        """
        from featurescope.core.capture import capture_missing

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
            self._on_job_error(message, error)

        self.jobs.submit("fetch", work, label=f"Capturing {layer} (left out by the memory budget)",
                         on_result=fetched, on_error=failed, on_cancelled=forget,
                         also_cancel=("grids", "stats"))

    def set_memory_budget(self, budget: int) -> None:
        """Remember a new budget (bytes) and capture again under it."""
        if int(budget) == self.settings.memory_budget():
            return
        self.settings.set_memory_budget(int(budget))
        self.request_capture()

    @staticmethod
    def first_layer(result: Any) -> str:
        """The first convolution (what a newcomer should see first), else the first layer."""
        for name in result.layers:
            if getattr(result.info.get(name), "kind", "") == "Conv2d":
                return name
        return result.layers[0] if result.layers else ""

    def cancel_jobs(self) -> None:
        if not self.jobs.is_idle():
            self.jobs.cancel()
            self.show_status("Cancelling...")

    # -- images from the user ------------------------------------------------------------------
    def open_image_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open image", self.settings.last_folder("open"),
                                              IMAGE_FILTER)
        if path:
            self.request_image(path)

    def _fill_recent_menu(self) -> None:
        self.recent_menu.clear()
        recent = self.settings.recent_files()
        for path in recent:
            self.recent_menu.addAction(Path(path).name, lambda p=path: self.request_image(p)).setToolTip(path)
        if recent:
            self.recent_menu.addSeparator()
            self.recent_menu.addAction("Clear list", self._clear_recent)
        self.recent_menu.setEnabled(bool(recent))

    def _clear_recent(self) -> None:
        self.settings.clear_recent_files()
        self.image_panel.set_recent_files([])
        self._fill_recent_menu()

    def accept_mime(self, mime: Any) -> bool:
        """Use an image, or an image file (URL or path text), from a drop or the clipboard."""
        if mime is None:
            return False
        if mime.hasUrls():
            for url in mime.urls():
                if url.isLocalFile() and Path(url.toLocalFile()).is_file():
                    self.request_image(url.toLocalFile())
                    return True
        if mime.hasImage():
            image = mime.imageData()
            if image is not None and not image.isNull():
                buffer = QBuffer()
                buffer.open(QIODevice.WriteOnly)
                image.save(buffer, "PNG")
                self.request_image_bytes(bytes(buffer.data()), "clipboard")
                return True
        if mime.hasText():
            text = mime.text().strip().strip('"').strip("'")
            path = QUrl(text).toLocalFile() if text.startswith("file:") else text
            if path and "\n" not in path and Path(path).expanduser().is_file():
                self.request_image(str(Path(path).expanduser()))
                return True
        return False

    def paste(self) -> None:
        if not self.accept_mime(QGuiApplication.clipboard().mimeData()):
            self.show_status("The clipboard holds no image and no path to an image file.")

    def dragEnterEvent(self, event: Any) -> None:  # noqa: N802 (Qt)
        mime = event.mimeData()
        if mime.hasUrls() or mime.hasImage():
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event: Any) -> None:  # noqa: N802 (Qt)
        self.dragEnterEvent(event)

    def dropEvent(self, event: Any) -> None:  # noqa: N802 (Qt)
        if self.accept_mime(event.mimeData()):
            event.acceptProposedAction()
        else:
            self.show_error("Drop an image file (PNG, JPEG, ...) to look at it.")
            event.ignore()

    # -- answers -------------------------------------------------------------------------------
    def _on_job_error(self, message: str, _error: Optional[BaseException]) -> None:
        self.state.report_error(message)

    def show_error(self, message: str) -> None:
        """Show one sentence in the window; nothing modal, the app stays usable."""
        log.info("error shown: %s", message)
        self._error_shown = message
        self.banner.show_message(message)
        self.statusBar().showMessage(message, 15000)

    def clear_error(self) -> None:
        """Take the last error away (banner and status bar) once something new has worked."""
        if self._error_shown and self.statusBar().currentMessage() == self._error_shown:
            self.statusBar().clearMessage()
        self._error_shown = ""
        self.banner.hide()

    def show_status(self, message: str) -> None:
        self.statusBar().showMessage(message, 8000)

    def _on_model_changed(self, model: Any) -> None:
        self.clear_error()
        self._update_title()

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

    def _on_busy_changed(self, busy: bool, label: str) -> None:
        show = busy and bool(label)
        self.busy_label.setText(label)
        self.progress_bar.setRange(0, 0)  # busy until the job reports numbers
        for widget in (self.busy_label, self.progress_bar, self.cancel_button):
            widget.setVisible(show)

    def _on_progress(self, done: int, total: int, text: str) -> None:
        if total > 0:
            self.progress_bar.setRange(0, total)
            self.progress_bar.setValue(min(done, total))
        if text:
            self.busy_label.setText(text)

    # -- closing -----------------------------------------------------------------------------------
    def save_settings(self) -> None:
        self.settings.set_window(self.saveGeometry(), self.saveState())
        self.settings.set_display_options(self.state.display)
        self.settings.sync()

    def closeEvent(self, event: Any) -> None:  # noqa: N802 (Qt)
        self._closing = True
        self.save_settings()
        self.jobs.shutdown()
        super().closeEvent(event)
