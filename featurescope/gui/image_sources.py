"""Where the picture comes from: the Open dialog, recent files, drops and the clipboard.

Every source ends in a background job that opens the image; ``image_ready(image,
source)`` carries it back to the window, which puts it into the state. A file that
cannot be opened is one sentence in the state's error report; the old image stays.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QFileDialog, QMenu, QWidget

from featurescope.gui.widgets.mime_images import deliver
from featurescope.gui.model.settings import Settings
from featurescope.gui.model.state import AppState
from featurescope.gui.jobs.workers import JobRunner
from featurescope.core.io.images import IMAGE_FILE_FILTER


class ImageSources(QObject):
    """Opens images from files, drops and the clipboard on the worker; keeps recent files."""

    image_ready = Signal(object, str)  # PIL image, source (a path or "clipboard")
    recent_files_changed = Signal(list)

    def __init__(self, window: QWidget, state: AppState, jobs: JobRunner, settings: Settings,
                 show_status: Callable[[str], None]) -> None:
        super().__init__(window)
        self.window, self.state, self.jobs, self.settings = window, state, jobs, settings
        self.show_status = show_status
        self.recent_menu: Optional[QMenu] = None

    # -- opening ---------------------------------------------------------------------
    def request_image(self, path: str) -> bool:
        """Open an image file in the background; the current image stays if it fails.

        A folder is refused at once with one sentence (nothing is queued, so nothing
        waits for it); returns False then, True when the file was queued.
        """
        source = str(path)
        if Path(source).is_dir():
            self.state.report_error(f"{Path(source).name or source} is a folder; open an image file.")
            return False

        def work(progress, cancel):
            from featurescope.core.io.images import load_image  # Pillow: off the start-up path

            return load_image(source)

        self.jobs.submit("image", work,
                         label=f"Opening {Path(source).name}",
                         on_result=lambda image: self._loaded(image, source, remember=True),
                         on_error=self._failed)
        return True

    def request_image_bytes(self, data: bytes, name: str = "clipboard") -> None:
        def work(progress, cancel):
            from featurescope.core.io.images import image_from_bytes

            return image_from_bytes(data, name)

        self.jobs.submit("image", work,
                         label=f"Opening the {name} image",
                         on_result=lambda image: self._loaded(image, name, remember=False),
                         on_error=self._failed)

    def _failed(self, message: str, _error: Optional[BaseException]) -> None:
        self.state.report_error(message)

    def _loaded(self, image: Any, source: str, remember: bool) -> None:
        if remember:
            self.settings.set_last_folder("open", Path(source).parent)
            self.recent_files_changed.emit(self.settings.add_recent_file(source))
        self.image_ready.emit(image, source)

    def open_image_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self.window, "Open image",
                                              self.settings.last_folder("open"), IMAGE_FILE_FILTER)
        if path:
            self.request_image(path)

    # -- recent files ----------------------------------------------------------------
    def attach_recent_menu(self, menu: QMenu) -> None:
        """Keep ``menu`` filled with the recent files (and a Clear list entry)."""
        self.recent_menu = menu
        self.recent_files_changed.connect(lambda _files: self.fill_recent_menu())
        self.fill_recent_menu()

    def fill_recent_menu(self) -> None:
        menu = self.recent_menu
        if menu is None:
            return
        menu.clear()
        recent = self.settings.recent_files()
        for path in recent:
            menu.addAction(Path(path).name, lambda p=path: self.request_image(p)).setToolTip(path)
        if recent:
            menu.addSeparator()
            menu.addAction("Clear list", self.clear_recent)
        menu.setEnabled(bool(recent))

    def clear_recent(self) -> None:
        self.settings.clear_recent_files()
        self.recent_files_changed.emit([])

    # -- drops and the clipboard -----------------------------------------------------
    def accept_mime(self, mime: Any) -> bool:
        """Use an image, or an image file (URL or path text), from a drop or the clipboard."""
        return deliver(mime, self.request_image, self.request_image_bytes)

    def paste(self) -> None:
        if not self.accept_mime(QGuiApplication.clipboard().mimeData()):
            self.show_status("The clipboard holds no image and no path to an image file.")

