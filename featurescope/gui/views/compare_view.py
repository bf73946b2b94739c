"""Compare view: image A (the current image) and image B at the selected layer.

A, B and |A - B| are tiled like the feature grid (true channel order) and coloured on
ONE scale, ``compare_layer(...).shared_levels``, so equal colours mean equal values in
all three. The three views are linked (pan or zoom one, all follow) and always equal in
size: side by side, or two over one when that makes them larger. Above them, small
thumbnails of the pictures the model sees for A and B; below, the per-channel cosine
similarity, least similar first, and the similarity of the whole layer.

Image B comes from Open B..., a drop onto this tab, Paste B, or a bundled sample. It is
opened and captured with the current model on the worker thread ("compare-b" request);
when the model changes B is captured again. The comparison itself (``compare_layer`` and
the three index mosaics) is a "compare" request too, so a big layer never blocks the
window. Work happens only while this tab is visible.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QPointF, Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (QComboBox, QFileDialog, QHBoxLayout, QLabel, QPushButton,
                               QSizePolicy, QVBoxLayout, QWidget)

from featurescope.core.render import grids
from featurescope.gui.jobs.workers import submit_or_run
from featurescope.gui.views.compare_layout import PICTURES, ThreeLinkedPictures
from featurescope.gui.views.grid_view import separator_item, separator_path
from featurescope.gui.widgets.image_box import THUMBNAIL_HEIGHT, thumbnail
from featurescope.gui.widgets.tab_page import TabPage
from featurescope.gui.widgets.mime_images import ImageDropTarget, deliver
from featurescope.core.io.images import IMAGE_FILE_FILTER


WORST_LISTED = 8
class CompareView(ThreeLinkedPictures, ImageDropTarget, TabPage):
    """Image A against image B at ``state.layer``."""

    def __init__(self, state, parent: Optional[QWidget] = None, jobs: Any = None) -> None:
        super().__init__(parent)
        self.state = state
        self.jobs = jobs
        self.compare = state.compare  # image B, its capture, the comparison (gui/model)
        self._pending_b: Optional[tuple[str, Any]] = None  # ("path"|"bytes", value) to load
        self.pictures: dict[str, np.ndarray] = {}
        self.grid_layout: Any = None
        self.worst_first: Optional[np.ndarray] = None
        self.setAcceptDrops(True)

        self.source_label = QLabel("Image B: none yet", self)
        self.source_label.setMinimumWidth(60)
        self.source_label.setWordWrap(True)  # a long file name must not widen the window
        self.source_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.open_button = QPushButton("Open B...", self)
        self.open_button.setToolTip("Choose the image to compare with the current one (or drop it here)")
        self.paste_button = QPushButton("Paste B", self)
        self.paste_button.setToolTip("Use the image (or image file path) on the clipboard as B")
        self.sample_combo = QComboBox(self)
        self.sample_combo.setObjectName("compareSample")
        self.sample_combo.addItem("a bundled sample...", "")
        self.sample_combo.setMinimumContentsLength(8)
        self.sample_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        from featurescope.core.resources import sample_images

        for path in sample_images():
            self.sample_combo.addItem(path.stem.replace("_", " "), str(path))
        self.thumbnails: dict[str, QLabel] = {}
        self.thumbnail_captions: dict[str, QLabel] = {}
        thumbs = QHBoxLayout()
        thumbs.setSpacing(6)
        for key, caption in (("a", "A"), ("b", "B")):
            picture = QLabel(self)
            picture.setObjectName(f"compareThumbnail{caption}")
            picture.setFixedHeight(THUMBNAIL_HEIGHT)
            picture.setMinimumWidth(THUMBNAIL_HEIGHT)
            picture.setAlignment(Qt.AlignmentFlag.AlignCenter)
            picture.setStyleSheet("background: #202124;")
            text = QLabel(caption, self)
            text.setStyleSheet("font-weight: bold;")
            thumbs.addWidget(text)
            thumbs.addWidget(picture)
            thumbs.addSpacing(10)
            self.thumbnails[key], self.thumbnail_captions[key] = picture, text
        thumbs.addStretch(1)

        top = QHBoxLayout()
        top.addWidget(self.source_label, 1)
        for button in (self.open_button, self.paste_button):
            # the style's 80 px minimum made the Compare tab, so the window, wider
            button.setSizePolicy(QSizePolicy.Preferred, QSizePolicy.Fixed)
        top.addWidget(self.open_button)
        top.addWidget(self.paste_button)
        top.addWidget(self.sample_combo)

        self.header = QLabel("Choose image B: Open B..., drop an image here, Paste B or a sample.", self)
        self.header.setWordWrap(True)
        self.header.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        font = self.header.font()
        font.setBold(True)
        self.header.setFont(font)

        self.plots = pg.GraphicsLayoutWidget(self)
        self.plots.setBackground("#202124")
        self.plots.ci.setContentsMargins(2, 2, 2, 2)
        self.plots.ci.setSpacing(4)
        self.boxes: dict[str, pg.ViewBox] = {}
        self.items: dict[str, pg.ImageItem] = {}
        self.titles: dict[str, pg.LabelItem] = {}
        self.separators: dict[str, Any] = {}  # key -> QGraphicsPathItem over the mosaic
        for column, (key, title) in enumerate(PICTURES):
            label = self.plots.addLabel(title, row=0, col=column, color="#e8eaed")
            # titles must not widen their column: the three views stay equal
            label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
            box = pg.ViewBox(lockAspect=True, invertY=True, enableMenu=False)
            box.setDefaultPadding(0.01)
            box.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
            item = pg.ImageItem(axisOrder="row-major")
            # shown smaller than life: average rather than drop pixels of the maps
            item.setAutoDownsample(True)
            box.addItem(item)
            # The tile boundaries as cosmetic one-screen-pixel lines, as in the feature
            # grid: at small sizes the mosaic's own 1-pixel separators vanish.
            lines = separator_item()
            box.addItem(lines, ignoreBounds=True)
            self.separators[key] = lines
            self.plots.addItem(box, row=1, col=column)
            self.boxes[key], self.items[key], self.titles[key] = box, item, label
        for key in ("b", "difference"):  # pan or zoom one, all three follow
            self.boxes[key].setXLink(self.boxes["a"])
            self.boxes[key].setYLink(self.boxes["a"])
        self.color_bar = pg.ColorBarItem(values=(0, 1), interactive=False, width=16)
        self.plots.addItem(self.color_bar, row=1, col=len(PICTURES))
        self.columns = 3
        self._arrange(3, force=True)
        self.plots.installEventFilter(self)

        self.similarity_plot = pg.PlotWidget(self)
        self.similarity_plot.setObjectName("channelSimilarity")
        self.similarity_plot.setMaximumHeight(150)
        self.similarity_plot.setMinimumHeight(90)
        self.similarity_plot.setMenuEnabled(False)
        self.similarity_plot.setMouseEnabled(x=False, y=False)
        self.similarity_plot.hideButtons()
        self.similarity_plot.setLabel("left", "similarity")
        self.similarity_plot.setLabel("bottom", "channels, least similar first")
        self.similarity_plot.setYRange(-1.0, 1.0, padding=0.02)
        # Two items (below / above 0.5), not per-bar brushes, which leak in PySide6 6.12.
        self.similarity_bars = pg.BarGraphItem(x=[], height=[], width=0.85, brush=(80, 140, 220),
                                               pen=pg.mkPen(None))
        self.dissimilar_bars = pg.BarGraphItem(x=[], height=[], width=0.85, brush=(220, 90, 80),
                                               pen=pg.mkPen(None))
        self.similarity_plot.addItem(self.similarity_bars)
        self.similarity_plot.addItem(self.dissimilar_bars)
        self.worst_label = QLabel(self)
        self.worst_label.setWordWrap(True)
        self.worst_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.hover_label = QLabel(self)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addLayout(top)
        layout.addLayout(thumbs)
        layout.addWidget(self.header)
        layout.addWidget(self.plots, 1)
        layout.addWidget(self.hover_label)
        layout.addWidget(self.similarity_plot)
        layout.addWidget(self.worst_label)

        self.open_button.clicked.connect(self.open_dialog)
        self.paste_button.clicked.connect(self.paste)
        self.sample_combo.activated.connect(self._sample_chosen)
        self._hover_proxy = pg.SignalProxy(self.plots.scene().sigMouseMoved, rateLimit=60,
                                           slot=lambda args: self.show_hover(args[0]))
        state.model_changed.connect(self._forget_model)
        for signal in (state.result_changed, state.layer_changed, state.model_changed):
            signal.connect(self.refresh)
        state.display_changed.connect(lambda *_: self._paint())
        self.refresh()

    def _forget_model(self, model: Any) -> None:
        # even while hidden: B's capture belongs to the previous network and would keep
        # it alive; B itself (the picture) stays and is captured again when shown
        self.compare.forget_model(model)

    def eventFilter(self, watched, event) -> bool:  # noqa: N802 - Qt's name
        if watched is self.plots and event.type() == QEvent.Type.Resize:
            self._choose_arrangement()
        return super().eventFilter(watched, event)

    def _show_thumbnails(self) -> None:
        model = self.state.model
        for key, result in (("a", self.state.result), ("b", self.compare.result_b)):
            label = self.thumbnails[key]
            if result is None or model is None or not hasattr(model, "deprocess"):
                label.clear()
                continue
            label.setPixmap(thumbnail(model.deprocess(result.input)))

    # --- choosing B -------------------------------------------------------------------

    def open_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open image B", "", IMAGE_FILE_FILTER)
        if path:
            self.set_image_b(path)

    def _sample_chosen(self, index: int) -> None:
        path = self.sample_combo.itemData(index)
        if path:
            self.set_image_b(path)

    def set_image_b(self, path: str) -> None:
        """Use the image file ``path`` as B (opened and captured on the worker)."""
        self._pending_b = ("path", str(path))
        self._capture_b()

    def set_image_b_bytes(self, data: bytes, name: str = "clipboard") -> None:
        """Use encoded image bytes (a paste or a dropped picture) as B."""
        self._pending_b = ("bytes", (bytes(data), name))
        self._capture_b()

    def accept_mime(self, mime: Any) -> bool:
        """B from a drop or the clipboard: a file URL, image data or a path as text."""
        return deliver(mime, self.set_image_b, self.set_image_b_bytes)

    def paste(self) -> None:
        if not self.accept_mime(QGuiApplication.clipboard().mimeData()):
            self.header.setText("The clipboard holds no image and no path to an image file.")

    def drop_refused(self) -> None:
        self.header.setText("Drop an image file (PNG, JPEG, ...) to compare with it.")

    def _capture_b(self) -> None:
        """Open (if new) and capture B with the current model, on the worker."""
        from featurescope.core.capture.capture import capture
        from featurescope.core.io.images import image_from_bytes, load_image

        model = self.state.model
        if model is None:
            return
        pending, image = self._pending_b, self.compare.image_b
        if pending is None and image is None:
            return
        source = self.compare.source_b
        if pending is not None:
            kind, value = pending
            source = value if kind == "path" else value[1]

        def work(progress=None, cancel=None):
            picture = image
            if pending is not None:
                kind, value = pending
                picture = load_image(value) if kind == "path" else image_from_bytes(*value)
            return picture, capture(model, picture, progress=progress, cancel=cancel)

        def done(answer: Any) -> None:
            picture, result = answer
            if pending is not None and self._pending_b is not pending:
                return  # another B was asked for meanwhile
            self._pending_b = None
            # a capture with a network no longer shown is dropped (it would keep that
            # network alive); the picture stays and is captured again when shown
            stale = model is not self.state.model
            self.compare.set_image_b(picture, source, None if stale else result, model)
            if stale:
                self.compare.model_b = None
            name = Path(source).name if source != "clipboard" else "clipboard image"
            self.source_label.setText(f"Image B: {name}")
            self.source_label.setToolTip(source)
            self.refresh()

        def failed(message: str, _error: Any = None) -> None:
            if pending is not None and self._pending_b is pending:
                self._pending_b = None
            self.state.report_error(message)

        self.compare.model_b = model  # asked for: do not ask again for this model
        label = f"Capturing image B ({Path(source).name if source else 'B'})"
        submit_or_run(self.jobs, "compare-b", work, label=label, on_result=done, on_error=failed,
                      also_cancel=("compare",))

    # --- comparing ----------------------------------------------------------------------

    def redraw(self) -> None:
        """Compare the state's capture with B at the state's layer."""
        model, result_a, layer = self.state.model, self.state.result, self.state.layer
        if model is not None and self.compare.image_b is not None and self.compare.model_b is not model:
            self._capture_b()  # the model changed: B's activations are another network's
            return
        if self.compare.result_b is None or result_a is None or not layer or layer not in result_a:
            self._clear()
            return
        if self.compare.result_model is not model or layer not in self.compare.result_b:
            return  # B is being captured again for this model
        key = (result_a, self.compare.result_b, layer)
        shown = self.compare.key
        if shown is not None and shown[0] is key[0] and shown[1] is key[1] and shown[2] == layer:
            return
        self.compare.key = key
        self.header.setText(f"Comparing at {layer}...")
        result_b = self.compare.result_b

        def work(progress=None, cancel=None):
            from featurescope.core.analysis.compare import compare_with_grids

            return compare_with_grids(result_a, result_b, layer)

        def done(answer: Any) -> None:
            if self.compare.key is key:
                comparison, self.pictures, self.grid_layout = answer
                self.compare.set_comparison(comparison)
                self._paint()

        def failed(message: str, _error: Any = None) -> None:
            if self.compare.key is key:
                self._clear()
                self.header.setText(message)

        submit_or_run(self.jobs, "compare", work, label="", on_result=done, on_error=failed)

    def _clear(self) -> None:
        self._show_thumbnails()
        self.pictures, self.grid_layout, self.worst_first = {}, None, None
        self.compare.set_comparison(None)
        for item in self.items.values():
            item.clear()
        self._show_separators(None)
        self.similarity_bars.setOpts(x=[], height=[])
        self.dissimilar_bars.setOpts(x=[], height=[])
        self.worst_label.setText("")
        if self.compare.image_b is None:
            self.header.setText("Choose image B: Open B..., drop an image here, Paste B or a sample.")

    def _paint(self) -> None:
        """Show the comparison in the display options' colormap."""
        c = self.compare.comparison
        if c is None:
            return
        lut = grids.colormap_lut(self.state.display.colormap)
        for key, item in self.items.items():
            item.setImage(self.pictures[key], autoLevels=False, levels=(0, 255), lut=lut)
        self._show_separators(self.grid_layout)
        self._show_thumbnails()
        self._choose_arrangement()
        self.fit()
        low, high = c.shared_levels
        self.color_bar.setColorMap(pg.ColorMap(np.linspace(0.0, 1.0, 255), lut[1:]))
        self.color_bar.setLevels(values=(low, high if high > low else low + 1.0))
        self.worst_first = c.most_different_channels()
        similarity = c.channel_similarity[self.worst_first]
        rank = np.arange(similarity.size)
        below = similarity < 0.5
        self.dissimilar_bars.setOpts(x=rank[below], height=similarity[below])
        self.similarity_bars.setOpts(x=rank[~below], height=similarity[~below])
        self.similarity_plot.setXRange(-0.5, max(similarity.size, 1) - 0.5, padding=0.01)
        channels, height, width = c.a.shape
        self.header.setText(
            f"{c.layer}: similarity {c.similarity:.3f} (cosine, whole layer), mean |A - B| "
            f"{c.mean_abs_difference:.4g}; one colour scale {low:.3g} .. {high:.3g} "
            f"for all three ({channels} channels of {height}x{width})")
        worst = ", ".join(f"{int(i)} ({c.channel_similarity[i]:.2f})"
                          for i in self.worst_first[:WORST_LISTED])
        self.worst_label.setText(f"Least similar channels: {worst}")

    def _show_separators(self, layout: Any) -> None:
        """The tile boundaries of ``layout`` (None: none) over all three pictures."""
        from PySide6.QtGui import QPainterPath

        path = QPainterPath() if layout is None else separator_path(layout)
        for lines in self.separators.values():
            lines.setPath(path)

    def show_hover(self, scene_pos: QPointF) -> str:
        """Channel, position and the A, B and |A - B| values under the mouse."""
        text = ""
        if self.compare.comparison is not None and self.grid_layout is not None:
            for item in self.items.values():
                p = item.mapFromScene(scene_pos)
                h, w = self.grid_layout.shape
                if 0 <= p.y() < h and 0 <= p.x() < w:
                    hit = self.grid_layout.locate(int(p.y()), int(p.x()))
                    if hit is not None:
                        ch, y, x = hit
                        c = self.compare.comparison
                        text = (f"channel {ch}, y {y}, x {x}:  A {c.a[ch, y, x]:.4g}   "
                                f"B {c.b[ch, y, x]:.4g}   |A - B| {c.difference[ch, y, x]:.4g}   "
                                f"(channel similarity {c.channel_similarity[ch]:.3f})")
                    break
        self.hover_label.setText(text)
        return text
