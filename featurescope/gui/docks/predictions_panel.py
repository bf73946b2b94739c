"""Predictions dock: the model's top classes for the current image, with probability bars;
a detector's boxes (label, score, from a score threshold on) or a segmenter's classes (share
of the pixels), where clicking one makes it what Grad-CAM explains."""
from __future__ import annotations

from typing import Any, Optional

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QPainter
from PySide6.QtWidgets import (QDoubleSpinBox, QGridLayout, QGroupBox, QHBoxLayout, QLabel,
                               QListWidget, QListWidgetItem, QProgressBar, QSizePolicy, QVBoxLayout,
                               QWidget)

from featurescope.gui.model.dense_targets import best_score, dense_rows, task_of

from featurescope.gui.model.prediction_rows import steady_order

TOP = 5
UNTRAINED_TEXT = "untrained: these predictions mean nothing"


class ElidedLabel(QLabel):
    """One line that elides its end ("efficientnet_lite0 (embedded Ima...") instead of
    wrapping; ``text()`` stays the whole text, shown in full as the tooltip."""

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)

    def setText(self, text: str) -> None:  # noqa: N802 - Qt's name
        super().setText(text)
        self.setToolTip(text)

    def shown_text(self) -> str:
        """What fits in the label's width."""
        width = self.contentsRect().width()
        return self.fontMetrics().elidedText(self.text(), Qt.TextElideMode.ElideRight, width)

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt's name
        return QSize(10, self.fontMetrics().height())

    def paintEvent(self, _event) -> None:  # noqa: N802 - Qt's name
        painter = QPainter(self)
        painter.setPen(self.palette().color(self.foregroundRole()))
        painter.drawText(self.contentsRect(), int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter),
                         self.shown_text())


class PredictionsPanel(QWidget):
    """Top-5 classes of ``state.result``, refreshed on every result.

    ``rows`` holds (label QLabel, QProgressBar) pairs; ``header`` says which model, and warns
    when it is untrained.
    """

    def __init__(self, state, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.state = state
        self.header = ElidedLabel(self)  # the model, on one line
        self.header.setObjectName("predictionsModel")
        self.header.setStyleSheet("font-weight: bold;")
        self.group = QGroupBox("Top classes", self)
        self.group.setObjectName("predictionsGroup")
        self.warning = QLabel(UNTRAINED_TEXT, self)
        self.warning.setWordWrap(True)
        self.warning.setStyleSheet("color: #c0392b; font-weight: bold;")
        grid = QGridLayout(self.group)
        grid.setContentsMargins(6, 4, 6, 6)
        # the columns' widths never follow the text: a new class name does not move the bars
        grid.setColumnStretch(0, 2)
        grid.setColumnStretch(1, 3)
        self.rows: list[tuple[QLabel, QProgressBar]] = []
        self.shown_classes: list[int] = []  # class indices, top row first
        for i in range(TOP):
            label = ElidedLabel(self)
            bar = QProgressBar(self)
            bar.setRange(0, 1000)
            bar.setMaximumHeight(16)
            bar.setMinimumWidth(80)
            grid.addWidget(label, i, 0)
            grid.addWidget(bar, i, 1)
            self.rows.append((label, bar))
        self.dense_group = self._build_dense_group()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(self.header)
        layout.addWidget(self.warning)
        layout.addWidget(self.group)
        layout.addWidget(self.dense_group, 1)
        layout.addStretch(1)
        state.result_changed.connect(self.refresh)
        state.model_changed.connect(self.refresh)
        state.image_changed.connect(self.refresh)
        state.score_threshold_changed.connect(self.refresh)
        state.gradcam.target_changed.connect(self.refresh)
        self.refresh()

    def _build_dense_group(self) -> QGroupBox:
        """A detector's boxes or a segmenter's classes: a list to click, and the score
        threshold the boxes are shown from."""
        group = QGroupBox("Detections", self)
        group.setObjectName("densePredictions")
        self.threshold = QDoubleSpinBox(group)
        self.threshold.setObjectName("scoreThreshold")
        self.threshold.setRange(0.0, 1.0)
        self.threshold.setSingleStep(0.05)
        self.threshold.setDecimals(2)
        self.threshold.setValue(self.state.score_threshold)
        self.threshold.setToolTip("Boxes scoring this much or more are listed and drawn on the photo")
        self.threshold.valueChanged.connect(self.state.set_score_threshold)
        self.threshold_row = QWidget(group)
        row = QHBoxLayout(self.threshold_row)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(QLabel("Score at least", group))
        row.addWidget(self.threshold)
        row.addStretch(1)
        self.dense_list = QListWidget(group)
        self.dense_list.setObjectName("denseList")
        self.dense_list.setToolTip("Click one to explain it in the Grad-CAM and Why views")
        self.dense_list.itemClicked.connect(self._dense_chosen)
        self.dense_note = QLabel(group)
        self.dense_note.setWordWrap(True)
        box = QVBoxLayout(group)
        box.setContentsMargins(6, 4, 6, 6)
        box.addWidget(self.threshold_row)
        box.addWidget(self.dense_list, 1)
        box.addWidget(self.dense_note)
        return group

    def _dense_chosen(self, item: QListWidgetItem) -> None:
        self.state.gradcam.set_target(item.data(Qt.ItemDataRole.UserRole))

    def _refresh_dense(self, task: str) -> None:
        """The boxes or classes of the current result; the Grad-CAM target selected."""
        state = self.state
        rows = dense_rows(state.model, state.result, state.score_threshold)
        detection = task == "detection"
        self.dense_group.setTitle(f"{len(rows)} boxes" if detection else "Classes (share of pixels)")
        self.threshold_row.setVisible(detection)
        self.threshold.blockSignals(True)
        self.threshold.setValue(state.score_threshold)
        self.threshold.blockSignals(False)
        self.dense_list.clear()
        for row in rows:
            item = QListWidgetItem(f"{row.text}   {row.value * 100:.1f} %")
            item.setData(Qt.ItemDataRole.UserRole, row.target)
            item.setToolTip(f"{row.text}: {'score' if detection else 'share of the pixels'} "
                            f"{row.value:.3f}; click to explain it in the Grad-CAM and Why views")
            self.dense_list.addItem(item)
            if row.target == state.gradcam.target:
                item.setSelected(True)
        best = best_score(state.result)
        note = ""
        if state.result is None:
            note = "waiting for a result"
        elif detection and not rows:
            note = (f"No box scores {state.score_threshold:.2f} or more"
                    + (f" (the best scores {best:.3f})." if best is not None else "; no box at all."))
        self.dense_note.setText(note)
        self.dense_note.setVisible(bool(note))

    def dense_texts(self) -> list[str]:
        """The listed boxes or classes, as shown (for tests)."""
        return [self.dense_list.item(i).text() for i in range(self.dense_list.count())]

    def refresh(self, *_: Any) -> None:
        model, result = self.state.model, self.state.result
        self.warning.setVisible(model is not None and not getattr(model, "trained", True))
        task = task_of(model)
        self.group.setVisible(task == "classification")
        self.dense_group.setVisible(task != "classification")
        if task != "classification":
            self.header.setText(getattr(model, "display_name", ""))
            self._refresh_dense(task)
            return
        predictions = []
        if result is not None and getattr(result, "logits", None) is not None:
            predictions = list(result.predictions(top=TOP))
        name = getattr(model, "display_name", "") if model is not None else ""
        self.header.setText(name or "No model loaded")
        if result is None:
            self.group.setTitle("Top classes: waiting for a result" if name else "Top classes")
        elif not predictions:
            self.group.setTitle("No class output to predict from")
        else:
            self.group.setTitle(f"Top {len(predictions)} classes")
        if self.state.live_frame and predictions:
            by_index = {p.index: p for p in predictions}
            order = steady_order(self.shown_classes, [(p.index, p.probability) for p in predictions])
            predictions = [by_index[i] for i in order]
        self.shown_classes = [p.index for p in predictions]
        categories = getattr(model, "categories", None)
        for i, (label, bar) in enumerate(self.rows):
            visible = i < len(predictions)
            label.setVisible(visible)
            bar.setVisible(visible)
            if not visible:
                continue
            p = predictions[i]
            text = p.label if categories and p.label else f"class {p.index}"
            label.setText(text)
            label.setToolTip(f"{text} (index {p.index}, {p.probability * 100:.1f} %)")
            bar.setValue(round(p.probability * 1000))
            bar.setFormat(f"{p.probability * 100:.1f} %")

    def texts(self) -> list[tuple[str, str]]:
        """What is shown, as (label, percentage) pairs (for tests)."""
        return [(label.text(), bar.format()) for label, bar in self.rows if not label.isHidden()]
