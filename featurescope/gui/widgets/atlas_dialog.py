"""The *Build atlas* dialog: where the examples come from, which units, how many steps,
where the site goes. It only collects choices; the build itself is AtlasActions' job."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from PySide6.QtWidgets import (
    QComboBox, QDialog, QDialogButtonBox, QFileDialog, QFormLayout, QHBoxLayout, QLineEdit,
    QPushButton, QSpinBox, QWidget,
)


@dataclass
class AtlasRequest:
    """What the user asked for: ``source`` an index file or a folder of images."""

    source: str
    layers: Optional[list]  # None: every layer of the index
    channels: str
    steps: int
    output: str

    @property
    def is_index(self) -> bool:
        return Path(self.source).is_file()


def _path_row(parent: QWidget, edit: QLineEdit, pick) -> QWidget:
    row = QWidget(parent)
    box = QHBoxLayout(row)
    box.setContentsMargins(0, 0, 0, 0)
    box.addWidget(edit, 1)
    button = QPushButton("Choose...", row)
    button.clicked.connect(pick)
    box.addWidget(button)
    return row


class AtlasDialog(QDialog):
    """``AtlasDialog(parent, source, layer, output)``: defaults from the app's state."""

    def __init__(self, parent: QWidget, source: str = "", layer: str = "", output: str = ""):
        super().__init__(parent)
        self.setWindowTitle("Build atlas")
        self.setObjectName("atlasDialog")
        self.source_edit = QLineEdit(source, self)
        self.source_edit.setPlaceholderText("an index file, or a folder of images (one sub-folder per class)")
        self.layers_combo = QComboBox(self)
        if layer:
            self.layers_combo.addItem(f"the selected layer ({layer})", [layer])
        self.layers_combo.addItem("every layer of the index", None)
        self.channels_edit = QLineEdit("all", self)
        self.channels_edit.setToolTip("all, a range such as 0-63, or a list such as 3,9,12")
        self.steps_spin = QSpinBox(self)
        self.steps_spin.setRange(8, 4096)
        self.steps_spin.setValue(256)
        self.steps_spin.setToolTip("Optimisation steps per picture: fewer is faster, more is sharper.")
        self.output_edit = QLineEdit(output, self)
        form = QFormLayout(self)
        form.addRow("Examples from", _path_row(self, self.source_edit, self._pick_source))
        form.addRow("Layers", self.layers_combo)
        form.addRow("Units", self.channels_edit)
        form.addRow("Steps", self.steps_spin)
        form.addRow("Site folder", _path_row(self, self.output_edit, self._pick_output))
        buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel, self)
        buttons.button(QDialogButtonBox.Ok).setText("Build")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)
        self.resize(560, self.sizeHint().height())

    def _pick_source(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Index file", "",
                                              "featurescope index (*.fsindex *.npz);;All files (*)")
        if not path:
            path = QFileDialog.getExistingDirectory(self, "Or a folder of images")
        if path:
            self.source_edit.setText(path)

    def _pick_output(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Site folder")
        if path:
            self.output_edit.setText(path)

    def request(self) -> AtlasRequest:
        return AtlasRequest(self.source_edit.text().strip(), self.layers_combo.currentData(),
                            self.channels_edit.text().strip() or "all", self.steps_spin.value(),
                            self.output_edit.text().strip())
