"""*File > Build atlas...* and *Open atlas in browser*.

The build runs in the background lane one piece per unit (the core's
:class:`~featurescope.core.atlas.build.AtlasBuild`; a folder is indexed first, one batch
per unit), so the app stays responsive; progress and Cancel are the window's jobs area.
Cancel stops after the piece being drawn and writes the site with what is done; the same
build continues later from the shared picture cache.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

from PySide6.QtCore import QObject, QUrl
from PySide6.QtGui import QAction, QDesktopServices
from PySide6.QtWidgets import QDialog, QFileDialog, QWidget

from featurescope.gui.jobs.lanes import BACKGROUND
from featurescope.gui.widgets.atlas_dialog import AtlasDialog, AtlasRequest

KIND = "atlas"


def default_site(model_name: str) -> str:
    return str(Path.home() / "featurescope-atlas" / model_name)


class AtlasActions(QObject):
    """``AtlasActions(window, state, jobs, show_status, index_source)``; ``index_source()``
    gives the path of the index the Examples tab has open, or ""."""

    def __init__(self, window: QWidget, state, jobs, show_status: Callable[[str], None],
                 index_source: Callable[[], str] = lambda: ""):
        super().__init__(window)
        self.window, self.state, self.jobs = window, state, jobs
        self.show_status, self.index_source = show_status, index_source
        self.site: Optional[Path] = None  # the index.html of the last atlas built here
        self._build = None
        self.build_action = QAction("Build &atlas...", window)
        self.build_action.setStatusTip("A static site with every unit of the model: feature "
                                       "visualisations, dataset examples, labels (runs in the background)")
        self.build_action.triggered.connect(lambda *_: self.build_dialog())
        self.open_action = QAction("Open atlas in &browser", window)
        self.open_action.setStatusTip("Open the last atlas built here, or choose a site folder")
        self.open_action.triggered.connect(lambda *_: self.open_in_browser())

    # -- building ------------------------------------------------------------------------
    def build_dialog(self) -> None:
        model = self.state.model
        if model is None:
            self.show_status("Load a model first: the atlas shows its units.")
            return
        dialog = AtlasDialog(self.window, self.index_source(), self.state.layer or "",
                             default_site(model.name))
        if dialog.exec() == QDialog.Accepted:
            self.build(dialog.request())

    def build(self, request: AtlasRequest, settings=None) -> None:
        """Start a build (tests call this with an AtlasRequest directly)."""
        from featurescope.core.atlas.units import AtlasSettings

        model = self.state.model
        settings = settings or AtlasSettings(steps=request.steps)

        def start(progress, cancel):
            from featurescope.core.atlas.build import AtlasBuild, INDEX_NAME
            from featurescope.core.index.build import build_index
            from featurescope.core.index.store import open_index
            from featurescope.core.io.writers import make_folder

            out = Path(request.output).expanduser()
            make_folder(out)
            if request.is_index:
                index = open_index(request.source)
                why = index.matches_model(model)
                if why:
                    from featurescope.core.errors import IndexFileError

                    raise IndexFileError(why)
            else:  # a folder: index it here first (resumed from the site's index file)
                index = build_index(model, request.source, layers=request.layers, top=settings.top,
                                    workers=0, output=out / INDEX_NAME, progress=progress, cancel=cancel)
            self._build = AtlasBuild(model, out, index, request.layers, request.channels, settings)
            return self._progress()

        self._submit(start)

    def _progress(self) -> tuple:
        build = self._build
        return (build.done, build.total, build.progress_text())

    def _step(self, progress, cancel):
        build = self._build
        if build.step(progress, cancel):
            return build.write()
        return self._progress()

    def _submit(self, fn) -> None:
        self.jobs.submit(KIND, fn, label="Building atlas", lane=BACKGROUND, on_result=self._answered,
                         on_error=self._failed, on_cancelled=self._cancelled)

    def _answered(self, answer: Any) -> None:
        if isinstance(answer, tuple):
            done, total, text = answer
            self.show_status(f"Atlas: {done} of {total} pictures, {text}")
            self._submit(self._step)
            return
        self._build = None
        self.site = Path(answer)
        self.show_status(f"Atlas written: {self.site} (File > Open atlas in browser)")

    def _write_partial(self, message: str) -> None:
        build, self._build = self._build, None
        if build is None:
            if message:
                self.show_status(message)
            return

        def write(progress, cancel):
            return build.write()

        def written(site: Any) -> None:
            self.site = Path(site)
            self.show_status(message or f"Atlas stopped; what is drawn is at {self.site}. "
                             "Build it again to continue.")

        self.jobs.submit("atlas-write", write, lane=BACKGROUND, on_result=written,
                         on_error=lambda text, _e: self.show_status(text))

    def _cancelled(self) -> None:
        self._write_partial("")

    def _failed(self, message: str, _error: Any) -> None:
        self._write_partial(message)

    def cancel(self) -> None:
        self.jobs.cancel(KIND)

    # -- opening -------------------------------------------------------------------------
    def open_in_browser(self, site: Optional[Path] = None) -> bool:
        site = site or self.site
        if site is None:
            folder = QFileDialog.getExistingDirectory(self.window, "Atlas site folder")
            if not folder:
                return False
            site = Path(folder) / "index.html"
        if not Path(site).is_file():
            self.show_status(f"{site} does not exist; build the atlas first (File > Build atlas...).")
            return False
        return QDesktopServices.openUrl(QUrl.fromLocalFile(str(site)))
