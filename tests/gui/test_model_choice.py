"""Choosing a model loads exactly that model, and every load refreshes what shows it."""
from __future__ import annotations

from PySide6.QtCore import Qt

from featurescope.core.models.registry import CatalogueEntry
from featurescope.gui.docks.model_panel import ModelPanel
from featurescope.gui.model.state import AppState

SMALL_NET = '''
import torch.nn as nn

def Net():
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))
'''
ENTRIES = [CatalogueEntry("resnet18", "ResNet", "downloadable", "ResNet18_Weights"),
           CatalogueEntry("vgg11", "VGG", "downloadable", "VGG11_Weights"),
           CatalogueEntry("efficientnet_lite0", "EfficientNet-Lite", "embedded", "embedded")]


def panel(qtbot):
    made = ModelPanel(AppState())
    qtbot.addWidget(made)
    made.fill_choices(ENTRIES, ["cpu"])
    return made


def loads(qtbot, made, action):
    with qtbot.waitSignal(made.load_requested, timeout=2000) as blocker:
        action()
    return blocker.args[0]


def test_choosing_another_model_resets_its_weights_to_pretrained(qtbot):
    made = panel(qtbot)
    made.select_model("resnet18")
    made.weights.setCurrentIndex(made.weights.findData("none"))
    made.models.setCurrentItem(made.models.topLevelItem(1))  # the user clicks vgg11
    spec = loads(qtbot, made, made.load_button.click)
    assert (spec["name"], spec["weights"]) == ("vgg11", "default")
    # a weights file chosen for one model does not go with the next either
    made.weights.setCurrentIndex(made.weights.findData("file"))
    made.weights_file.setText("/tmp/vgg11-finetuned.pth")
    made.models.setCurrentItem(made.models.topLevelItem(0))
    assert loads(qtbot, made, made.load_button.click)["weights"] == "default"


def test_a_remembered_spec_keeps_its_weights(qtbot):
    """Filling the form from the settings (and the catalogue arriving later) is no choice."""
    made = ModelPanel(AppState())
    qtbot.addWidget(made)
    made.set_spec({"name": "resnet18", "weights": "none", "device": "cpu"})
    made.fill_choices(ENTRIES, ["cpu"])
    spec = loads(qtbot, made, made.load_button.click)
    assert (spec["name"], spec["weights"]) == ("resnet18", "none")


def test_input_size_mean_and_std_go_only_with_an_own_model_file(qtbot):
    made = panel(qtbot)
    made.custom.setChecked(True)
    made.custom_file.setText("/tmp/nets.py:Net")
    made.input_size.setText("32")
    made.mean.setText("0.5,0.5,0.5")
    spec = loads(qtbot, made, made.load_button.click)
    assert (spec["name"], spec["input_size"], spec["mean"]) == ("/tmp/nets.py:Net", "32", "0.5,0.5,0.5")
    made.models.setCurrentItem(made.models.topLevelItem(0))  # then the user picks resnet18
    spec = loads(qtbot, made, made.load_button.click)
    assert (spec["name"], spec["input_size"], spec["mean"], spec["std"]) == ("resnet18", "", "", "")


def test_timm_name_typed_in_the_search_loads_on_enter(qtbot):
    made = panel(qtbot)
    made.select_model("vgg11")
    made.search.setText("timm:resnet18")
    spec = loads(qtbot, made, lambda: qtbot.keyClick(made.search, Qt.Key_Return))
    assert spec["name"] == "timm:resnet18"
    # and Load says the same: never the model selected before the typing
    assert loads(qtbot, made, made.load_button.click)["name"] == "timm:resnet18"


def test_enter_in_the_search_loads_the_one_model_left(qtbot):
    made = panel(qtbot)
    made.search.setText("vgg")
    assert loads(qtbot, made, lambda: qtbot.keyClick(made.search, Qt.Key_Return))["name"] == "vgg11"


def test_load_with_a_filtered_out_selection_asks_for_a_model(qtbot):
    made = panel(qtbot)
    made.select_model("vgg11")
    made.search.setText("resnet")  # vgg11 hidden: Load must not load it silently
    with qtbot.waitSignal(made.state.error_reported, timeout=2000):
        made.load_button.click()


def test_a_catalogue_model_never_gets_the_own_files_input_size(window, qtbot, tmp_path, wait_idle):
    (tmp_path / "nets.py").write_text(SMALL_NET)
    made = window.model_panel
    made.custom.setChecked(True)
    made.custom_file.setText(f"{tmp_path / 'nets.py'}:Net")
    made.input_size.setText("32")
    made.mean.setText("0.5,0.5,0.5")
    old = window.state.model
    made.load_button.click()
    qtbot.waitUntil(lambda: window.state.model is not old, timeout=60000)
    wait_idle(window)
    assert tuple(window.state.result.input.shape[-2:]) == (32, 32)
    made.search.setText("resnet18")
    made.select_model("resnet18")
    made._on_model_chosen(made.models.currentItem())  # what a click in the list does
    assert made.spec()["weights"] == "default" and not made.custom.isChecked()
    made.weights.setCurrentIndex(made.weights.findData("none"))  # tests never download
    old = window.state.model
    made.load_button.click()
    qtbot.waitUntil(lambda: window.state.model is not old or window.banner.isVisible(), timeout=60000)
    assert not window.banner.isVisible(), (window.banner.text(), made.spec())
    wait_idle(window)
    assert window.state.model.name == "resnet18"
    assert tuple(window.state.result.input.shape[-2:]) == (224, 224)
    assert window.settings.model_spec()["input_size"] == ""


def test_reloading_at_another_input_size_refreshes_the_layer_shapes(window, qtbot, tmp_path, wait_idle):
    (tmp_path / "nets.py").write_text(SMALL_NET)
    shapes = {}
    for size in (32, 64):
        old = window.state.model
        window.request_model({"name": f"{tmp_path / 'nets.py'}:Net", "weights": "none",
                              "device": "cpu", "input_size": str(size), "mean": "", "std": ""})
        qtbot.waitUntil(lambda: window.state.model is not old, timeout=60000)
        wait_idle(window)
        tree = window.layer_panel.tree
        shapes[size] = tree.topLevelItem(0).text(2)
    assert shapes == {32: "6×32×32", 64: "6×64×64"}


def test_the_overview_strip_forgets_the_old_model_at_once(window, qtbot):
    strip = window.overview_strip
    qtbot.waitUntil(lambda: bool(strip.tiles), timeout=30000)
    seen = []  # what the strip holds when the new model is announced (it listens first)
    window.state.model_changed.connect(lambda _model: seen.append(len(strip.tiles)))
    window.request_model({"name": "resnet18", "weights": "none", "device": "cpu"})
    qtbot.waitUntil(lambda: bool(seen), timeout=60000)
    assert seen == [0]


def test_the_hover_readout_goes_with_a_layer_change(window, qtbot):
    grid = window.grid_view
    layers = list(window.state.result.layers)
    grid.readout.setText(grid.readout_text((0, 0, 0)))
    assert grid.readout.text().startswith("channel 0")
    window.state.set_layer(layers[layers.index(window.state.layer) + 1])
    assert grid.readout.text().strip() == ""


def test_a_new_model_takes_the_hierarchy_text_of_the_old_one(qtbot):
    from featurescope.gui.views.visualize_hierarchy import HIERARCHY_TEXT
    from featurescope.gui.views.visualize_view import VisualizeView

    state = AppState()
    view = VisualizeView(state)
    qtbot.addWidget(view)
    view.hierarchy_label.setText("From edges to shapes: 5 layers of resnet18")
    state.set_model(object())
    assert view.hierarchy_label.text() == HIERARCHY_TEXT


def test_exports_read_the_grad_cam_choice_and_image_b_from_the_app_model():
    """No widget holds them: the Qt-free app model does (exports read it, views show it)."""
    import inspect

    from featurescope.gui import export_actions

    state = AppState()
    state.gradcam.set_target(281)
    state.gradcam.set_opacity(0.3)
    assert (state.gradcam.target, state.gradcam.opacity) == (281, 0.3)
    state.compare.set_image_b("picture", "/photos/b.png", result="capture", model="net")
    state.compare.forget_model("another net")
    assert state.compare.image_b == "picture" and state.compare.result_b is None
    source = inspect.getsource(export_actions)
    for widget_read in ("getattr(view", '"gradcam_view"', '"compare_view"', "window.compare_view",
                        "opacity_slider"):
        assert widget_read not in source
