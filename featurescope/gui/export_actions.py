"""Export menu: grid PNG, activations NPZ, all/selected layers, Grad-CAM, comparison,
clipboard; every file set with its JSON sidecar, written by core (featurescope.core.io).

Every grid is drawn from the one DisplayOptions record the grid view uses
(``state.display``: colormap, normalisation, clipping, order, columns, upscale), so what
is exported is what is on screen. Dialogs start in the last folder used (QSettings) and
ask before overwriting; the engine's writers refuse to overwrite (FileExistsExportError)
unless ``force=True``, which is what a "Yes" turns into. Writing many layers, the
Grad-CAM and the comparison run on the worker thread with progress and Cancel.

The Grad-CAM and comparison exports read the app model, never a widget:
``state.gradcam`` (class, opacity) and ``state.compare`` (image B, the comparison shown).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
from PySide6.QtCore import QObject
from PySide6.QtGui import QAction, QGuiApplication, QImage, QKeySequence
from PySide6.QtWidgets import QFileDialog, QMessageBox, QWidget

from featurescope.core.errors import FeaturescopeError, FileExistsExportError
from featurescope.gui.model.settings import Settings
from featurescope.gui.model.state import AppState
from featurescope.gui.jobs.workers import JobRunner


def safe_stem(text: str) -> str:
    keep = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text)
    return keep.strip("._") or "grid"


def rgb_to_qimage(rgb: np.ndarray) -> QImage:
    rgb = np.ascontiguousarray(rgb[:, :, :3], dtype=np.uint8)
    h, w = rgb.shape[:2]
    return QImage(rgb.data, w, h, 3 * w, QImage.Format_RGB888).copy()


class ExportActions(QObject):
    """Creates the export QActions for ``window`` and does what they say."""

    def __init__(self, window: QWidget, state: AppState, jobs: JobRunner, settings: Settings,
                 show_message: Callable[[str], None]) -> None:
        super().__init__(window)
        self.window, self.state, self.jobs, self.settings = window, state, jobs, settings
        self.show_message = show_message
        self.last_written: list[Path] = []

        self.export_grid_action = QAction("Export &grid...", window)
        self.export_grid_action.setShortcut(QKeySequence("Ctrl+E"))
        self.export_grid_action.setToolTip("Save the selected layer's grid as PNG with a JSON sidecar")
        self.export_grid_action.triggered.connect(lambda: self.export_grid())
        self.export_activations_action = QAction("Export &activations (NPZ)...", window)
        self.export_activations_action.setToolTip("Save every captured layer's activations and the input as NPZ")
        self.export_activations_action.triggered.connect(lambda: self.export_activations())
        self.export_all_action = QAction("Export all &layers...", window)
        self.export_all_action.setShortcut(QKeySequence("Ctrl+Shift+E"))
        self.export_all_action.setToolTip("Write a PNG grid per layer, one NPZ and a JSON sidecar into a folder")
        self.export_all_action.triggered.connect(lambda: self.export_all())
        self.export_selected_action = QAction("Export &selected layers...", window)
        self.export_selected_action.setShortcut(QKeySequence("Ctrl+Alt+E"))
        self.export_selected_action.setToolTip(
            "Write the layers selected in the layer list (Ctrl/Shift-click) into a folder: "
            "a PNG grid each (annotated too if chosen), one NPZ and a JSON sidecar")
        self.export_selected_action.triggered.connect(lambda: self.export_selected())
        # the window points this at the layer list's multi-selection
        self.selected_layers: Callable[[], list[str]] = lambda: [self.state.layer]
        self.export_gradcam_action = QAction("Export Grad-&CAM...", window)
        self.export_gradcam_action.setToolTip(
            "Save the Grad-CAM of the selected layer (its nearest convolution) for the class and "
            "opacity chosen in the Grad-CAM tab, as PNG with a JSON sidecar")
        self.export_gradcam_action.triggered.connect(lambda: self.export_grad_cam())
        self.export_comparison_action = QAction("Export c&omparison...", window)
        self.export_comparison_action.setToolTip(
            "Write the Compare tab's A, B and |A - B| grids (one colour scale) and a JSON of "
            "their similarities into a folder")
        self.export_comparison_action.triggered.connect(lambda: self.export_comparison())
        self.copy_action = QAction("&Copy grid", window)
        self.copy_action.setShortcut(QKeySequence.Copy)
        self.copy_action.setToolTip("Copy the selected layer's grid to the clipboard as an image")
        self.copy_action.triggered.connect(lambda: self.copy_grid())
        self.annotate_action = QAction("&Annotate exported grids", window)
        self.annotate_action.setCheckable(True)
        self.annotate_action.setChecked(settings.annotate_exports())
        self.annotate_action.setToolTip("Draw the layer name and the true channel numbers on exported grids")
        self.annotate_action.toggled.connect(settings.set_annotate_exports)
        self.actions = [self.export_grid_action, self.export_activations_action,
                        self.export_all_action, self.export_selected_action,
                        self.export_gradcam_action, self.export_comparison_action, self.copy_action]
        state.result_changed.connect(self.update_enabled)
        state.layer_changed.connect(self.update_enabled)
        self.update_enabled()

    def update_enabled(self, *_: Any) -> None:
        """Enable each action when it has something to export (also run when the Export
        menu opens: a comparison can arrive without a state event)."""
        captured = self.state.result is not None
        for action in self.actions:
            action.setEnabled(captured)
        self.export_gradcam_action.setEnabled(self._gradcam_layer() != "")
        self.export_comparison_action.setEnabled(self._comparison() is not None)

    def _gradcam_layer(self) -> str:
        """The conv layer a Grad-CAM export explains ("" when there is none)."""
        from featurescope.gui.views.gradcam_view import gradcam_layer

        if self.state.model is None or getattr(self.state.result, "logits", None) is None:
            return ""
        return gradcam_layer(self.state)[0]

    def _comparison(self) -> Any:
        return self.state.compare.comparison

    # -- helpers ----------------------------------------------------------------------------
    def _ready(self) -> bool:
        if self.state.result is None or self.state.layer not in self.state.result:
            self.show_message("Nothing to export yet: wait until the feature maps are on screen.")
            return False
        return True

    def _confirm_overwrite(self, paths: list[Path]) -> bool:
        names = ", ".join(p.name for p in paths[:4])
        if len(paths) > 4:
            names += f" and {len(paths) - 4} more"
        answer = QMessageBox.question(
            self.window, "Replace existing files?",
            f"{names} already exist{'s' if len(paths) == 1 else ''} in {paths[0].parent}. Replace?",
            QMessageBox.Yes | QMessageBox.No, QMessageBox.No)
        return answer == QMessageBox.Yes

    def _may_write(self, targets, force: bool) -> Optional[bool]:
        """The engine's one "exists, confirm, force" check, asking with the box above:
        the force to write with, or None when the user keeps the files."""
        from featurescope.core.io.writers import check_overwrite

        return check_overwrite(targets, force, confirm=self._confirm_overwrite)

    def _save_path(self, title: str, name: str, filters: str) -> Optional[Path]:
        start = str(Path(self.settings.last_folder("export")) / name)
        # we ask about overwriting ourselves (once for the PNG and its sidecar)
        path, _ = QFileDialog.getSaveFileName(self.window, title, start, filters, "",
                                              QFileDialog.DontConfirmOverwrite)
        if not path:
            return None
        path = Path(path)
        self.settings.set_last_folder("export", path.parent)
        return path

    def _source(self) -> Any:
        """The current image's file (or a video file's frame: FrameOf), for the sidecars'
        SHA-256 and frame index; None for a pasted image or a camera frame."""
        return self.state.image_origin or None

    def grid_picture(self, annotate: Optional[bool] = None) -> tuple[np.ndarray, Any]:
        """The selected layer's grid exactly as the grid view draws it (upscaled), maybe
        annotated with core's title ("layer - model (untrained)")."""
        from featurescope.core.render.annotate import annotate_grid, grid_title
        from featurescope.core.render.options import render_grid

        options = self.state.display
        rgb, layout = render_grid(self.state.result[self.state.layer], options)
        if annotate if annotate is not None else self.annotate_action.isChecked():
            rgb = annotate_grid(rgb, layout, grid_title(self.state.layer, self.state.model),
                                channel_numbers=True, upscale=options.upscale)
        return rgb, layout

    # -- the actions ------------------------------------------------------------------------
    def export_grid(self, path: Optional[Path] = None) -> list[Path]:
        """PNG of the selected layer's grid and a JSON sidecar beside it."""
        if not self._ready():
            return []
        from featurescope.core.io.export import export_grid

        if path is None:
            path = self._save_path("Export grid", f"{safe_stem(self.state.layer)}.png", "PNG images (*.png)")
            if path is None:
                return []
        if path.suffix.lower() != ".png":
            path = path.with_name(path.name + ".png")
        sidecar = path.with_suffix(".json")
        force = self._may_write((path, sidecar), False)
        if force is None:
            return []
        state = self.state
        try:
            written = export_grid(state.result, state.layer, path, state.display, model=state.model,
                                  source_path=self._source(), annotate=self.annotate_action.isChecked(),
                                  force=force)
        except FeaturescopeError as error:
            state.report_error(str(error))
            return []
        self.last_written = written
        self.show_message(f"Saved {path.name} and {sidecar.name} in {path.parent}")
        return written

    def export_activations(self, path: Optional[Path] = None, force: bool = False) -> None:
        """Every captured layer (keys = layer names) and the input in one NPZ, with a JSON
        sidecar beside it, in the background."""
        if not self._ready():
            return
        if path is None:
            stem = safe_stem(getattr(self.state.model, "name", "activations"))
            path = self._save_path("Export activations", f"{stem}_activations.npz", "NumPy archives (*.npz)")
            if path is None:
                return
        if path.suffix.lower() != ".npz":
            path = path.with_name(path.name + ".npz")
        force = self._may_write((path, path.with_suffix(".json")), force)
        if force is None:
            return
        from featurescope.core.io.export import export_activations

        result, model, source = self.state.result, self.state.model, self._source()

        def work(progress, cancel):
            return export_activations(result, path, model=model, source_path=source, force=force,
                                      progress=progress, cancel=cancel)

        self.jobs.submit("export", work, label=f"Exporting activations to {path.name}",
                         on_result=self._on_written, on_error=self._on_error)

    def export_grad_cam(self, path: Optional[Path] = None, force: bool = False) -> None:
        """The Grad-CAM the Grad-CAM tab shows for the selected layer (its class and
        opacity) as PNG with a JSON sidecar, computed and written in the background."""
        layer = self._gradcam_layer() if self.state.result is not None else ""
        if not layer:
            self.show_message("No Grad-CAM to export: it needs a captured image, class scores "
                              "and a convolution at or before the selected layer.")
            return
        from featurescope.core.io.gradcam_export import export_grad_cam, gradcam_targets

        if path is None:
            path = self._save_path("Export Grad-CAM", gradcam_targets(".", layer)[0].name,
                                   "PNG images (*.png)")
            if path is None:
                return
        if path.suffix.lower() != ".png":
            path = path.with_name(path.name + ".png")
        force = self._may_write((path, path.with_suffix(".json")), force)
        if force is None:
            return
        target, alpha = self.state.gradcam.target, self.state.gradcam.opacity
        model, result, source = self.state.model, self.state.result, self._source()

        def work(progress, cancel):
            progress(0, 1, f"Grad-CAM at {layer}")
            cancel.raise_if_cancelled()
            return export_grad_cam(model, result, path, layer=layer, target=target, alpha=alpha,
                                   source_path=source, force=force)

        self.jobs.submit("export", work, label=f"Exporting the Grad-CAM to {path.name}",
                         on_result=self._on_written, on_error=self._on_error)

    def export_comparison(self, folder: Optional[Path] = None, force: bool = False) -> None:
        """The Compare tab's A, B and |A - B| grids and their JSON into a folder, in the
        background, in the display colormap and upscale (annotated too if chosen)."""
        comparison = self._comparison()
        if comparison is None:
            self.show_message("No comparison to export: choose image B in the Compare tab first.")
            return
        if folder is None:
            chosen = QFileDialog.getExistingDirectory(self.window, "Export comparison into",
                                                      self.settings.last_folder("export"))
            if not chosen:
                return
            folder = Path(chosen)
            self.settings.set_last_folder("export", folder)
        from featurescope.core.io.compare_export import comparison_targets, export_comparison

        force = self._may_write(comparison_targets(folder, comparison.layer), force)
        if force is None:
            return
        options, model, annotate = self.state.display, self.state.model, self.annotate_action.isChecked()
        source_a, source_b = self._source(), self.state.compare.source_b or None

        def work(progress, cancel):
            progress(0, 1, f"Comparison at {comparison.layer}")
            cancel.raise_if_cancelled()
            return export_comparison(comparison, folder, model=model, source_a=source_a,
                                     source_b=source_b, colormap=options.colormap,
                                     upscale=options.upscale, annotate=annotate, force=force)

        self.jobs.submit("export", work, label=f"Exporting the comparison to {folder.name}",
                         on_result=self._on_written, on_error=self._on_error)

    def export_all(self, folder: Optional[Path] = None, force: bool = False) -> None:
        """PNG grid per layer (annotated too if chosen), one NPZ and a JSON sidecar, in the background."""
        if self._ready():
            self._export_layers(list(self.state.result.layers), "Export all layers into", folder, force)

    def export_selected(self, folder: Optional[Path] = None, force: bool = False,
                        layers: Optional[list[str]] = None) -> None:
        """Like :meth:`export_all` for the layers selected in the layer list (network order)."""
        if not self._ready():
            return
        result = self.state.result
        chosen = set(layers if layers is not None else self.selected_layers()) or {self.state.layer}
        names = [name for name in result.layers if name in chosen]
        self._export_layers(names, f"Export {len(names)} selected layer{'s' if len(names) != 1 else ''} into",
                            folder, force)

    def _export_layers(self, names: list[str], title: str, folder: Optional[Path], force: bool) -> None:
        if folder is None:
            chosen = QFileDialog.getExistingDirectory(self.window, title, self.settings.last_folder("export"))
            if not chosen:
                return
            folder = Path(chosen)
            self.settings.set_last_folder("export", folder)
        from featurescope.core.capture.capture import capture_missing
        from featurescope.core.io.export import export_layer_steps, export_targets

        state, options = self.state, self.state.display
        result, model = state.result, state.model
        source = self._source()
        annotate = self.annotate_action.isChecked()
        force = self._may_write(export_targets(names, folder, ("png", "npz"), annotate), force)
        if force is None:
            return

        # One unit per layer (then the NPZ and the sidecar), so an image opened or a
        # layer fetched meanwhile waits for one layer's files, not the whole export.
        steps: list = []
        written: list[Path] = []

        def prepare(progress, cancel):
            complete = result
            if any(name in getattr(result, "missing", ()) for name in names):
                # layers the memory budget left out: capture them again for the export
                complete = capture_missing(model, result, names, progress=progress, cancel=cancel)
            steps.extend(export_layer_steps(complete, folder, layers=names, formats=("png", "npz"),
                                            options=options, annotate=annotate, model=model,
                                            source_path=source, force=force))
            return []

        def run_step(index):
            return lambda progress, cancel: steps[index](cancel=cancel)

        def failed(message: str, error: Optional[BaseException]) -> None:
            if isinstance(error, FileExistsExportError) and not force:
                if self._confirm_overwrite([Path(error.path)]):
                    self._export_layers(names, title, folder, force=True)
                return
            self._on_error(message, error)

        count = f"{len(names)} layer{'s' if len(names) != 1 else ''}"
        units = [prepare] + [run_step(i) for i in range(len(names) + 2)]  # layers, NPZ, sidecar
        self.jobs.submit_units("export", units, label=f"Exporting {count} to {folder.name}",
                               on_partial=written.extend,
                               on_result=lambda _none: self._on_written(written), on_error=failed,
                               on_cancelled=lambda: self.show_message(
                                   "Export cancelled; the layers written so far stay, none half-written."))

    def copy_grid(self) -> Optional[QImage]:
        """Put the selected layer's grid (as exported) on the clipboard."""
        if not self._ready():
            return None
        rgb, _ = self.grid_picture()
        image = rgb_to_qimage(rgb)
        QGuiApplication.clipboard().setImage(image)
        self.show_message(f"Copied the grid of {self.state.layer} ({image.width()} x {image.height()}) to the clipboard")
        return image

    def _on_written(self, paths: list) -> None:
        self.last_written = [Path(p) for p in paths]
        if paths:
            folder = Path(paths[0]).parent
            self.show_message(f"Wrote {len(paths)} file{'s' if len(paths) != 1 else ''} in {folder}")

    def _on_error(self, message: str, _error: Optional[BaseException]) -> None:
        self.state.report_error(message)
