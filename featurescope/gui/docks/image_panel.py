"""The image: what the model sees, the bundled samples, recent files.

The preview is ``model.deprocess(result.input)``: the photo after the model's resize,
crop and normalisation, turned back into a picture, so the user sees exactly the input
whose feature maps are on screen.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QIcon, QImage, QPixmap
from PySide6.QtWidgets import (
    QHBoxLayout, QLabel, QListView, QListWidget, QListWidgetItem, QPushButton, QVBoxLayout,
    QWidget,
)

from featurescope.gui.model.dense_targets import dense_rows
from featurescope.gui.model.state import AppState
from featurescope.gui.widgets.dense_overlay import DenseOverlay

THUMB = 64


def _thumbnail(path: Path) -> QIcon:
    image = QImage(str(path))
    if image.isNull():
        return QIcon()
    return QIcon(QPixmap.fromImage(image.scaled(THUMB, THUMB, Qt.KeepAspectRatioByExpanding,
                                                Qt.SmoothTransformation)))


class ImagePanel(QWidget):
    """``image_requested(path)`` when the user picks a sample or a recent file;
    ``open_requested()`` for the Open... button (the window owns the dialog)."""

    image_requested = Signal(str)
    open_requested = Signal()

    def __init__(self, state: AppState, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.state = state

        self.preview = pg.GraphicsLayoutWidget()
        self.preview.setObjectName("inputPreview")
        self.preview.setBackground("#202124")
        self.preview.ci.setContentsMargins(0, 0, 0, 0)
        self.preview.setMinimumSize(120, 110)
        self.preview_box = self.preview.addViewBox(lockAspect=True, invertY=True, enableMenu=False)
        self.preview_box.setMouseEnabled(False, False)
        self.preview_item = pg.ImageItem(axisOrder="row-major")
        self.preview_box.addItem(self.preview_item)
        # a detector's boxes or a segmenter's mask, over the picture in its pixels
        self.dense_overlay = DenseOverlay(self.preview_box)
        self.caption = QLabel("No image")
        self.caption.setObjectName("imageCaption")
        # "chelsea.png: 451 x 300 -> model input 224 x 224" wraps instead of widening the dock
        self.caption.setWordWrap(True)

        self.samples = QListWidget()
        self.samples.setObjectName("sampleGallery")
        self.samples.setViewMode(QListView.IconMode)
        self.samples.setIconSize(QSize(THUMB, THUMB))
        self.samples.setFlow(QListView.LeftToRight)
        self.samples.setWrapping(False)
        self.samples.setResizeMode(QListView.Adjust)
        self.samples.setFixedHeight(THUMB + 34)
        self.samples.setToolTip("Bundled sample photos: click to open")
        from featurescope.core.resources import sample_images

        for path in sample_images():
            item = QListWidgetItem(_thumbnail(path), path.stem.replace("_", " "))
            item.setData(Qt.UserRole, str(path))
            item.setToolTip(str(path))
            self.samples.addItem(item)

        self.recent = QListWidget()
        self.recent.setObjectName("recentFiles")
        self.recent.setMinimumHeight(40)
        self.recent.setMaximumHeight(90)
        self.open_button = QPushButton("Open image...")
        self.open_button.setToolTip("Open an image file (Ctrl+O); you can also drop or paste one")

        top = QHBoxLayout()
        top.addWidget(self.open_button)
        top.addStretch(1)
        box = QVBoxLayout(self)
        box.setContentsMargins(4, 4, 4, 4)
        box.addLayout(top)
        box.addWidget(QLabel("What the model sees:"))
        box.addWidget(self.preview, 1)
        box.addWidget(self.caption)
        box.addWidget(QLabel("Samples:"))
        box.addWidget(self.samples)
        box.addWidget(QLabel("Recent:"))
        box.addWidget(self.recent)

        self.samples.itemActivated.connect(self._on_item)
        self.samples.itemClicked.connect(self._on_item)
        self.recent.itemActivated.connect(self._on_item)
        self.recent.itemClicked.connect(self._on_item)
        self.open_button.clicked.connect(self.open_requested)
        state.result_changed.connect(self._on_result_changed)
        state.score_threshold_changed.connect(self.draw_dense)
        state.gradcam.target_changed.connect(self.draw_dense)
        state.image_changed.connect(self._on_image_changed)

    def _on_item(self, item: QListWidgetItem) -> None:
        path = item.data(Qt.UserRole)
        if path:
            self.image_requested.emit(str(path))

    def set_recent_files(self, paths: list[str]) -> None:
        self.recent.clear()
        for path in paths:
            item = QListWidgetItem(Path(path).name)
            item.setData(Qt.UserRole, path)
            item.setToolTip(path)
            self.recent.addItem(item)

    def _on_image_changed(self, image: Any, source: str) -> None:
        name = Path(source).name if source and source != "clipboard" else (source or "image")
        size = f"{image.width} x {image.height}" if image is not None else ""
        self.caption.setText(f"{name}  ({size})")
        self.caption.setToolTip(source)

    def draw_dense(self, *_: Any) -> None:
        """A detector's boxes (from the score threshold on) or a segmenter's class mask over
        the picture; the Grad-CAM target drawn thicker or alone."""
        state = self.state
        if state.result is None or state.model is None:
            self.dense_overlay.clear()
            return
        rows = dense_rows(state.model, state.result, state.score_threshold)
        self.dense_overlay.show(state.result, rows, state.gradcam.target)

    def _on_result_changed(self, result: Any) -> None:
        model = self.state.model
        if result is None or model is None:
            self.dense_overlay.clear()
            return
        picture = np.ascontiguousarray(model.deprocess(result.input))
        self.preview_item.setImage(picture, autoLevels=False, levels=(0, 255))
        h, w = picture.shape[:2]
        self.preview_box.setRange(xRange=(0, w), yRange=(0, h), padding=0)
        self.draw_dense()
        image = self.state.image
        source = self.state.image_source
        name = Path(source).name if source and source != "clipboard" else (source or "image")
        if image is not None:
            self.caption.setText(f"{name}: {image.width} x {image.height} -> model input {w} x {h}")
            how = "resized and cropped" if getattr(model, "task", "classification") == "classification" \
                else "resized whole (not cropped)"
            self.caption.setToolTip(f"{source}\n{image.width} x {image.height} pixels, {how} "
                                    f"to {w} x {h} for the model (shown above)")
