"""Export menu: grid PNG (+ JSON sidecar), activations NPZ, all layers, clipboard.

Dialogs start in the last folder used (QSettings) and ask before overwriting; the
engine's writers refuse to overwrite (FileExistsExportError) unless ``force=True``,
which is what a "Yes" turns into. Writing many layers runs on the worker thread with
progress and Cancel.
"""
from __future__ import annotations

from datetime import datetime, timezone
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
                        self.export_all_action, self.export_selected_action, self.copy_action]
        state.result_changed.connect(self._update_enabled)
        self._update_enabled()

    def _update_enabled(self, *_: Any) -> None:
        for action in self.actions:
            action.setEnabled(self.state.result is not None)

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

    def grid_picture(self, annotate: Optional[bool] = None) -> tuple[np.ndarray, Any]:
        """The selected layer's grid as feature_grid gives it (upscaled), maybe annotated."""
        from featurescope.core.io.export import annotate_grid
        from featurescope.core.render.grids import apply_lut, colormap_lut

        from featurescope.gui.views.grid_view import build_grid

        options = self.state.display
        # == feature_grid(result[layer], ...options, upscale) by the grids contract
        indices, layout = build_grid(self.state.result, self.state.layer, options)
        rgb = apply_lut(indices, colormap_lut(options.colormap), upscale=options.upscale)
        if annotate if annotate is not None else self.annotate_action.isChecked():
            rgb = annotate_grid(rgb, layout, self.grid_title(), channel_numbers=True,
                                upscale=options.upscale)
        return rgb, layout

    def grid_title(self) -> str:
        model = self.state.model
        name = model.display_name if model is not None else ""
        return f"{name}  {self.state.layer}".strip()

    def sidecar(self, layout: Any, png: Path) -> dict:
        state, options, model = self.state, self.state.display, self.state.model
        info = state.result.info.get(state.layer) if hasattr(state.result, "info") else None
        from featurescope import __version__

        return {
            "featurescope": __version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "png": png.name,
            "model": getattr(model, "name", None),
            "weights": getattr(model, "weights_label", None),
            "trained": getattr(model, "trained", None),
            "layer": state.layer,
            "kind": getattr(info, "kind", None),
            "shape": list(getattr(info, "output_shape", state.result[state.layer].shape)),
            "image": state.image_source,
            "options": {"normalize": options.normalize, "colormap": options.colormap,
                        "order": options.order, "columns": layout.columns,
                        "clip_percentile": options.clip_percentile, "upscale": options.upscale,
                        "annotated": self.annotate_action.isChecked()},
            "grid": {"rows": layout.rows, "columns": layout.columns, "gap": layout.gap,
                     "tile_height": layout.tile_height, "tile_width": layout.tile_width},
            # position in the grid (row-major) -> true channel number
            "channel_order": [int(c) for c in np.asarray(layout.order).ravel()],
        }

    # -- the actions ------------------------------------------------------------------------
    def export_grid(self, path: Optional[Path] = None) -> list[Path]:
        """PNG of the selected layer's grid and a JSON sidecar beside it."""
        if not self._ready():
            return []
        from featurescope.core.io.export import write_json, write_png

        if path is None:
            path = self._save_path("Export grid", f"{safe_stem(self.state.layer)}.png", "PNG images (*.png)")
            if path is None:
                return []
        if path.suffix.lower() != ".png":
            path = path.with_name(path.name + ".png")
        sidecar = path.with_suffix(".json")
        existing = [p for p in (path, sidecar) if p.exists()]
        if existing and not self._confirm_overwrite(existing):
            return []
        try:
            rgb, layout = self.grid_picture()
            written = [write_png(path, rgb, force=bool(existing)),
                       write_json(sidecar, self.sidecar(layout, path), force=bool(existing))]
        except FeaturescopeError as error:
            self.state.report_error(str(error))
            return []
        self.last_written = written
        self.show_message(f"Saved {path.name} and {sidecar.name} in {path.parent}")
        return written

    def export_activations(self, path: Optional[Path] = None, force: bool = False) -> None:
        """Every captured layer (keys = layer names) and the input, in one NPZ, in the background."""
        if not self._ready():
            return
        if path is None:
            stem = safe_stem(getattr(self.state.model, "name", "activations"))
            path = self._save_path("Export activations", f"{stem}_activations.npz", "NumPy archives (*.npz)")
            if path is None:
                return
        if path.suffix.lower() != ".npz":
            path = path.with_name(path.name + ".npz")
        if path.exists() and not force:
            if not self._confirm_overwrite([path]):
                return
            force = True
        from featurescope.core.io.export import write_npz

        result = self.state.result

        def work(progress, cancel):
            arrays = {name: result[name] for name in result.layers}
            arrays["input"] = result.input
            progress(0, 1, f"Writing {path.name}")
            cancel.raise_if_cancelled()
            return [write_npz(path, arrays, force=force)]

        self.jobs.submit("export", work, label=f"Exporting activations to {path.name}",
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
        from featurescope.core.io.export import export_layers, export_targets

        state, options = self.state, self.state.display
        result, model = state.result, state.model
        source = state.image_source if state.image_source and Path(state.image_source).is_file() else None
        annotate = self.annotate_action.isChecked()
        if not force:
            existing = [p for p in export_targets(names, folder, ("png", "npz"), annotate) if p.exists()]
            if existing:
                if not self._confirm_overwrite(existing):
                    return
                force = True

        def work(progress, cancel):
            complete = result
            if any(name in getattr(result, "missing", ()) for name in names):
                # layers the memory budget left out: capture them again for the export
                complete = capture_missing(model, result, names, progress=progress, cancel=cancel)
            return export_layers(complete, folder, layers=names, formats=("png", "npz"),
                                 normalize=options.normalize, colormap=options.colormap,
                                 order=options.order, upscale=options.upscale, annotate=annotate,
                                 model=model, source_path=source, force=force, progress=progress,
                                 cancel=cancel)

        def failed(message: str, error: Optional[BaseException]) -> None:
            if isinstance(error, FileExistsExportError) and not force:
                if self._confirm_overwrite([Path(error.path)]):
                    self._export_layers(names, title, folder, force=True)
                return
            self._on_error(message, error)

        count = f"{len(names)} layer{'s' if len(names) != 1 else ''}"
        self.jobs.submit("export", work, label=f"Exporting {count} to {folder.name}",
                         on_result=self._on_written, on_error=failed,
                         on_cancelled=lambda: self.show_message("Export cancelled; no half-written files."))

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
