"""Predictions dock: the model's top classes for the current image, with probability bars."""
from __future__ import annotations

from typing import Any, Optional

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QGridLayout, QLabel, QProgressBar, QVBoxLayout, QWidget

TOP = 5
UNTRAINED_TEXT = "untrained: these predictions mean nothing"


class PredictionsPanel(QWidget):
    """Top-5 classes of ``state.result``, refreshed on every result.

    ``rows`` holds (label QLabel, QProgressBar) pairs; ``header`` says which model, and warns
    when it is untrained.
    """

    def __init__(self, state, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.state = state
        self.header = QLabel(self)
        self.header.setWordWrap(True)
        self.header.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.warning = QLabel(UNTRAINED_TEXT, self)
        self.warning.setWordWrap(True)
        self.warning.setStyleSheet("color: #c0392b; font-weight: bold;")
        grid = QGridLayout()
        grid.setColumnStretch(1, 1)
        self.rows: list[tuple[QLabel, QProgressBar]] = []
        for i in range(TOP):
            label = QLabel(self)
            label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            bar = QProgressBar(self)
            bar.setRange(0, 1000)
            bar.setMaximumHeight(16)
            bar.setMinimumWidth(80)
            grid.addWidget(label, i, 0)
            grid.addWidget(bar, i, 1)
            self.rows.append((label, bar))
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(self.header)
        layout.addWidget(self.warning)
        layout.addLayout(grid)
        layout.addStretch(1)
        state.result_changed.connect(self.refresh)
        state.model_changed.connect(self.refresh)
        state.image_changed.connect(self.refresh)
        self.refresh()

    def refresh(self, *_: Any) -> None:
        model, result = self.state.model, self.state.result
        self.warning.setVisible(model is not None and not getattr(model, "trained", True))
        predictions = []
        if result is not None and getattr(result, "logits", None) is not None:
            predictions = list(result.predictions(top=TOP))
        name = getattr(model, "display_name", "") if model is not None else ""
        if result is None:
            self.header.setText(f"{name}: waiting for a result" if name else "No model loaded.")
        elif not predictions:
            self.header.setText(f"{name} has no class output to predict from.")
        else:
            self.header.setText(f"{name}: top {len(predictions)} classes")
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
            label.setToolTip(f"{text} (index {p.index})")
            bar.setValue(round(p.probability * 1000))
            bar.setFormat(f"{p.probability * 100:.1f} %")

    def texts(self) -> list[tuple[str, str]]:
        """What is shown, as (label, percentage) pairs (for tests)."""
        return [(label.text(), bar.format()) for label, bar in self.rows if not label.isHidden()]
