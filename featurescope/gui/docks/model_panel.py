"""Pick a network: the searchable catalogue, weights, your own model file, the device.

The panel only describes what to load (``load_requested(dict)``); the window runs the
load on the worker thread, so the current model stays usable until the new one is in.
The catalogue and the device list need torch and torchvision: they are filled by
:meth:`ModelPanel.fill_choices` once the worker has imported them, so the window opens
before torch is imported.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox, QComboBox, QFileDialog, QFormLayout, QGroupBox, QHBoxLayout, QHeaderView, QLabel,
    QLineEdit, QPushButton, QSizePolicy, QSpinBox, QTreeWidget, QTreeWidgetItem, QVBoxLayout, QWidget,
)

from featurescope.core.errors import ModelError
from featurescope.core.models.spec import parse_statistics
from featurescope.gui.model.model_choice import SOURCE_NAME, catalogue_and_devices, is_model_file, parse_size
from featurescope.gui.model.settings import absolute
from featurescope.gui.model.state import AppState

STATUS_TEXT = {"embedded": "embedded", "cached": "cached", "downloadable": "will download"}
WEIGHTS_CHOICES = [("Pretrained", "default"), ("Untrained (random)", "none"),
                   ("Weights file...", "file")]


MIB = 1 << 20


class ModelPanel(QWidget):
    load_requested = Signal(dict)
    memory_budget_changed = Signal(object)  # int bytes (over 2 GiB: not a C int), when the user has finished editing

    def __init__(self, state: AppState, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.state = state

        self.current = QLabel("No model loaded")
        self.current.setObjectName("currentModel")
        self.current.setWordWrap(True)
        self.current.setStyleSheet("font-weight: bold;")

        self.search = QLineEdit()
        self.search.setPlaceholderText("Search models (resnet, vgg, mobilenet...)")
        self.search.setClearButtonEnabled(True)
        self.search.setObjectName("modelSearch")
        self.models = QTreeWidget()
        self.models.setObjectName("modelCatalogue")
        self.models.setHeaderLabels(["Model", "Family", "Weights"])
        self.models.setRootIsDecorated(False)
        self.models.setUniformRowHeights(True)
        header = self.models.header()
        header.setSectionResizeMode(0, QHeaderView.Stretch)
        header.setSectionResizeMode(1, QHeaderView.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.ResizeToContents)

        self.weights = QComboBox()
        self.weights.setObjectName("weightsChoice")
        # shrinks with the dock (the full text is in the popup): a narrow window stays possible
        self.weights.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.weights.setMinimumContentsLength(6)
        for text, value in WEIGHTS_CHOICES:
            self.weights.addItem(text, value)
        self.weights_file = QLineEdit()
        self.weights_file.setPlaceholderText("state dict (.pth / .pt)")
        self.weights_browse = QPushButton("...")
        self.weights_browse.setFixedWidth(30)
        # A fully pickled model is refused unless the user trusts that very file
        # (remembered per absolute path by the window's settings).
        self.trust = QCheckBox("Trust this file (it can run code when loaded)")
        self.trust.setObjectName("trustWeights")
        self.trust.setToolTip("Only for a file you made or got from someone you trust: a pickled "
                              "model is loaded with Python's unpickler, which can run any code.")
        self.trust.setStyleSheet("QCheckBox:checked { color: #c0392b; }")
        # the long sentence must not widen the dock (the tooltip says it all when clipped)
        self.trust.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Fixed)
        self._trusted: set[str] = set()

        self.custom = QGroupBox("Your own model file")
        self.custom.setCheckable(True)
        self.custom.setChecked(False)
        self.custom.setObjectName("customModel")
        self.custom_file = QLineEdit()
        self.custom_file.setPlaceholderText("mynet.py:Net")
        self.custom_browse = QPushButton("...")
        self.custom_browse.setFixedWidth(30)
        self.input_size = QLineEdit()
        self.input_size.setPlaceholderText("224 or 32x32")
        self.mean = QLineEdit()
        self.mean.setPlaceholderText("0.485, 0.456, 0.406")
        self.std = QLineEdit()
        self.std.setPlaceholderText("0.229, 0.224, 0.225")
        # the fields show only when the box is ticked, so the catalogue keeps the room
        self.custom_fields = QWidget()
        custom_form = QFormLayout(self.custom_fields)
        custom_form.setContentsMargins(0, 0, 0, 0)
        custom_box = QVBoxLayout(self.custom)
        custom_box.setContentsMargins(6, 2, 6, 2)
        custom_box.addWidget(self.custom_fields)
        self.custom_fields.setVisible(False)
        self.custom.toggled.connect(self.custom_fields.setVisible)
        row = QHBoxLayout()
        row.addWidget(self.custom_file, 1)
        row.addWidget(self.custom_browse)
        custom_form.addRow("File:factory", row)
        custom_form.addRow("Input size", self.input_size)
        custom_form.addRow("Mean", self.mean)
        custom_form.addRow("Std", self.std)

        self.device = QComboBox()
        self.device.setObjectName("deviceChoice")
        self.device.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.device.setMinimumContentsLength(6)
        self.device.addItem("cpu", "cpu")  # the others come with fill_choices
        self.filled = False
        self._wanted_name = ""  # the model to select once the catalogue is there
        self._wanted_device = ""
        self._setting_spec = False  # set_spec fills the form: no resets meanwhile

        self.memory_budget = QSpinBox()
        self.memory_budget.setObjectName("memoryBudget")
        self.memory_budget.setRange(16, 1 << 20)
        self.memory_budget.setSingleStep(256)
        self.memory_budget.setSuffix(" MB")
        self.memory_budget.setSizePolicy(QSizePolicy.Preferred, QSizePolicy.Fixed)
        self.memory_budget.setKeyboardTracking(False)
        self.memory_budget.setToolTip(
            "Most memory the captured activations may use. Beyond it they are stored as "
            "float16, then only some layers are kept and the others are captured again "
            "when you select them.")
        self.memory_budget.editingFinished.connect(self._on_memory_budget)

        self.load_button = QPushButton("Load model")
        self.load_button.setObjectName("loadModel")
        self.load_button.setDefault(True)

        form = QFormLayout()
        weights_row = QHBoxLayout()
        weights_row.addWidget(self.weights)
        weights_row.addWidget(self.weights_file, 1)
        weights_row.addWidget(self.weights_browse)
        form.addRow("Weights", weights_row)
        form.addRow("", self.trust)
        form.addRow("Device", self.device)
        form.addRow("Memory", self.memory_budget)

        box = QVBoxLayout(self)
        box.setContentsMargins(4, 4, 4, 4)
        box.addWidget(self.current)
        box.addWidget(self.search)
        box.addWidget(self.models, 1)
        box.addLayout(form)
        box.addWidget(self.custom)
        box.addWidget(self.load_button)

        self.models.addTopLevelItem(QTreeWidgetItem(["Loading the list of networks...", "", ""]))
        self._on_weights_choice()
        self.search.textChanged.connect(self._filter)
        self.search.returnPressed.connect(self._on_search_enter)
        self.models.currentItemChanged.connect(self._on_model_chosen)
        self.custom.toggled.connect(self._on_custom_toggled)
        self.weights.currentIndexChanged.connect(self._on_weights_choice)
        self.weights_browse.clicked.connect(self._browse_weights)
        self.weights_file.textChanged.connect(self._show_trust)
        self.custom_browse.clicked.connect(self._browse_custom)
        self.models.itemDoubleClicked.connect(lambda *_: self.request_load())
        self.load_button.clicked.connect(self.request_load)
        state.model_changed.connect(self._on_model_changed)

    # -- catalogue ----------------------------------------------------------------------
    def fill_choices(self, entries: Optional[list] = None, devices: Optional[list[str]] = None) -> None:
        """Fill the catalogue (CatalogueEntry list) and the devices; computed here when not given.

        Computing them imports torch and torchvision, so the window passes them in from
        the worker at start-up (:func:`~featurescope.gui.model.model_choice.catalogue_and_devices`).
        """
        if entries is None or devices is None:
            entries, devices = catalogue_and_devices()
        self.filled = True
        self.models.clear()
        for entry in entries:
            status = STATUS_TEXT.get(entry.weights_status, entry.weights_status)
            item = QTreeWidgetItem([entry.name, entry.family, status])
            item.setData(0, Qt.UserRole, entry.name)
            item.setToolTip(2, f"{entry.weights_name}: {status}")
            self.models.addTopLevelItem(item)
        self._filter(self.search.text())
        wanted_device = self._wanted_device or str(self.device.currentData() or "")
        self.device.clear()
        for name in devices:
            self.device.addItem(name, name)
        self._select_device(wanted_device)
        if self._wanted_name:
            self.select_model(self._wanted_name)

    def _select_device(self, device: str) -> None:
        index = self.device.findData(device)
        if index < 0 and device == "cuda":
            index = self.device.findData("cuda:0")
        if index >= 0:
            self.device.setCurrentIndex(index)

    def _filter(self, text: str) -> None:
        words = text.lower().split()
        for i in range(self.models.topLevelItemCount()):
            item = self.models.topLevelItem(i)
            haystack = f"{item.text(0)} {item.text(1)} {item.text(2)}".lower()
            item.setHidden(not all(word in haystack for word in words))

    def select_model(self, name: str) -> None:
        """Select ``name`` in the list as it was asked for (its weights choice stays)."""
        self._wanted_name = name
        setting, self._setting_spec = self._setting_spec, True
        try:
            self._select_model(name)
        finally:
            self._setting_spec = setting

    def _select_model(self, name: str) -> None:
        for i in range(self.models.topLevelItemCount()):
            item = self.models.topLevelItem(i)
            if item.data(0, Qt.UserRole) == name:
                self.models.setCurrentItem(item)
                self.models.scrollToItem(item)
                return

    def typed_name(self) -> str:
        """A ``source:name`` typed in the search (``timm:resnet18``), else ""."""
        text = self.search.text().strip()
        return text if SOURCE_NAME.match(text) else ""

    def _on_search_enter(self) -> None:
        """Enter in the search loads what it names: a typed ``timm:NAME``, else the one
        model left visible (or the current one when it is still visible)."""
        if self.typed_name():
            self._choose_catalogue()
            self.request_load()
            return
        visible = [self.models.topLevelItem(i) for i in range(self.models.topLevelItemCount())
                   if not self.models.topLevelItem(i).isHidden()
                   and self.models.topLevelItem(i).data(0, Qt.UserRole)]
        current = self.models.currentItem()
        if current is not None and current in visible:
            self.request_load()
        elif len(visible) == 1:
            self.models.setCurrentItem(visible[0])
            self.request_load()

    def _choose_catalogue(self) -> None:
        """A catalogue or typed model is what loads next: the own-file box goes off."""
        if self.custom.isChecked():
            self.custom.setChecked(False)

    def _on_model_chosen(self, current: Any, _previous: Any = None) -> None:
        """Choosing another model starts from its own default weights (pretrained):
        a weights file or "untrained" picked for the last model never carries over."""
        if current is None or self._setting_spec:
            return
        self._choose_catalogue()
        self._reset_weights()

    def _on_custom_toggled(self, checked: bool) -> None:
        if not self._setting_spec:
            self._reset_weights()

    def _reset_weights(self) -> None:
        self.weights.setCurrentIndex(self.weights.findData("default"))

    # -- the form -------------------------------------------------------------------------
    def _on_weights_choice(self, *_: Any) -> None:
        is_file = self.weights.currentData() == "file"
        self.weights_file.setEnabled(is_file)
        self.weights_browse.setEnabled(is_file)
        self._show_trust()

    def set_trusted_files(self, paths: list[str]) -> None:
        """The weights files the user trusts (absolute paths), ticked when shown again."""
        self._trusted = {str(p) for p in paths}
        self._show_trust()

    def _show_trust(self, *_: Any) -> None:
        is_file = self.weights.currentData() == "file"
        self.trust.setVisible(is_file)
        text = self.weights_file.text().strip()
        self.trust.setChecked(bool(is_file and text and absolute(text) in self._trusted))

    def _browse_weights(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Weights file", str(Path.home()),
                                              "PyTorch weights (*.pth *.pt *.bin);;All files (*)")
        if path:
            self.weights_file.setText(path)
            self.weights.setCurrentIndex(self.weights.findData("file"))

    def _browse_custom(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Model file", str(Path.home()),
                                              "Python files (*.py)")
        if path:
            factory = self.custom_file.text().partition(":")[2] or "Net"
            self.custom_file.setText(f"{path}:{factory}")
            self.custom.setChecked(True)

    def set_memory_budget(self, budget: int) -> None:
        """Show a budget in bytes (rounded to MB) without emitting a change."""
        self.memory_budget.blockSignals(True)
        self.memory_budget.setValue(max(1, round(int(budget) / MIB)))
        self.memory_budget.blockSignals(False)

    def _on_memory_budget(self) -> None:
        self.memory_budget_changed.emit(int(self.memory_budget.value()) * MIB)

    def set_spec(self, spec: dict) -> None:
        """Show a model spec (from the settings or the command line) in the form."""
        self._setting_spec = True
        try:
            self._set_spec(spec)
        finally:
            self._setting_spec = False

    def _set_spec(self, spec: dict) -> None:
        name, weights = str(spec.get("name", "")), str(spec.get("weights", "default"))
        is_custom = is_model_file(name)
        self.custom.setChecked(is_custom)
        if is_custom:
            self.custom_file.setText(name)
        elif SOURCE_NAME.match(name):
            self.search.setText(name)
        else:
            self.select_model(name)
        if weights in ("default", "none"):
            self.weights.setCurrentIndex(self.weights.findData(weights))
        else:
            self.weights.setCurrentIndex(self.weights.findData("file"))
            self.weights_file.setText(weights)
        self.input_size.setText(str(spec.get("input_size") or ""))
        self.mean.setText(str(spec.get("mean") or ""))
        self.std.setText(str(spec.get("std") or ""))
        self._wanted_device = str(spec.get("device") or "auto")
        self._select_device(self._wanted_device)

    def spec(self) -> dict:
        """What the form asks for: name, weights, device, input_size, mean, std (text)."""
        custom = self.custom.isChecked()
        if custom:
            name = self.custom_file.text().strip()
        elif self.typed_name():
            name = self.typed_name()
        else:
            item = self.models.currentItem()
            name = item.data(0, Qt.UserRole) if item is not None and not item.isHidden() else ""
        choice = self.weights.currentData()
        weights = self.weights_file.text().strip() if choice == "file" else choice
        trust = bool(choice == "file" and weights and self.trust.isChecked())
        return {"name": name, "weights": weights or "default", "trust_pickle": trust,
                "device": self.device.currentData() or "cpu",
                "input_size": self.input_size.text().strip() if custom else "",
                "mean": self.mean.text().strip() if custom else "",
                "std": self.std.text().strip() if custom else ""}

    def request_load(self) -> None:
        spec = self.spec()
        if not spec["name"]:
            self.state.report_error("Choose a model in the list, or give your own model file as path.py:factory.")
            return
        try:
            parse_size(spec["input_size"])
            parse_statistics(spec["mean"], what="Mean")
            parse_statistics(spec["std"], what="Std")
        except (ValueError, ModelError) as error:
            self.state.report_error(str(error))
            return
        self.load_requested.emit(spec)

    def _on_model_changed(self, model: Any) -> None:
        if model is None:
            self.current.setText("No model loaded")
            return
        untrained = "" if model.trained else " - untrained: random weights, predictions mean nothing"
        name = model.display_name
        if model.weights_label and model.weights_label not in name:
            name = f"{name} [{model.weights_label}]"
        self.current.setText(f"{name} on {model.device}{untrained}")
        self.current.setStyleSheet("font-weight: bold;" + ("" if model.trained else " color: #c0392b;"))
