"""The views and docks of the gui-views split, on a real (small, untrained) model and capture."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PySide6.QtCore import QPointF, Qt

from featurescope.core.render import grids
from featurescope.gui.model.state import AppState


@pytest.fixture(scope="module")
def loaded():
    from PIL import Image

    from featurescope.core.capture.capture import capture
    from featurescope.core.models.load import load_model
    from featurescope.core.resources import default_sample

    torch.manual_seed(0)
    model = load_model("resnet18", weights="none", device="cpu", input_size=64)
    result = capture(model, Image.open(default_sample()).convert("RGB"))
    return model, result


@pytest.fixture
def state(qtbot, loaded):
    model, result = loaded
    s = AppState()
    s.set_model(model)
    s.set_result(result)
    s.set_layer("conv1")
    return s


def _show(qtbot, widget, size=(900, 600)):
    qtbot.addWidget(widget)
    widget.resize(*size)
    widget.show()
    qtbot.waitExposed(widget)
    return widget


# --- channel view ----------------------------------------------------------------

def test_channel_view_shows_the_real_map_with_its_range(qtbot, state, loaded):
    from featurescope.gui.views.channel_view import ChannelView

    model, result = loaded
    view = _show(qtbot, ChannelView(state))
    conv1 = result["conv1"].numpy()
    assert view.header.text().startswith("channel 0 of 64 in conv1")
    np.testing.assert_array_equal(view.map_item.image, conv1[0])

    state.set_channel(12)
    m = conv1[12]
    np.testing.assert_array_equal(view.map_item.image, m)
    assert view.header.text().startswith("channel 12 of 64 in conv1")
    assert view.map_item.levels == pytest.approx([m.min(), m.max()])
    assert view.color_bar.levels() == pytest.approx((m.min(), m.max()))
    assert f"max {m.max():.4g}" in view.stats_label.text()
    assert f"mean {m.mean():.4g}" in view.stats_label.text()
    # the overlay: the input the model saw, and the map upsampled to its size
    np.testing.assert_array_equal(view.input_item.image, model.deprocess(result.input))
    assert view.overlay_item.image.shape == (64, 64)
    assert view.overlay_item.image.mean() == pytest.approx(m.mean(), rel=0.05, abs=1e-3)
    view.opacity_slider.setValue(25)
    assert view.overlay_item.opacity() == pytest.approx(0.25)


def test_channel_view_follows_display_options(qtbot, state, loaded):
    from featurescope.gui.views.channel_view import ChannelView

    conv1 = loaded[1]["conv1"].numpy()
    view = _show(qtbot, ChannelView(state))
    state.set_channel(3)
    state.set_display(normalize="layer")
    assert view.map_item.levels == pytest.approx([conv1.min(), conv1.max()])
    state.set_display(normalize="channel", colormap="coolwarm")
    a = np.abs(conv1[3]).max()
    assert view.map_item.levels == pytest.approx([-a, a])
    lut = grids.colormap_lut("coolwarm")[1:]
    np.testing.assert_array_equal(view.overlay_item.lut, lut)


def test_channel_view_keys_buttons_and_hover(qtbot, state, loaded):
    from featurescope.gui.views.channel_view import ChannelView

    view = _show(qtbot, ChannelView(state))
    view.activateWindow()
    qtbot.waitUntil(view.isActiveWindow)
    view.setFocus()
    qtbot.keyClick(view, Qt.Key.Key_Right)
    assert state.channel == 1
    qtbot.keyClick(view, Qt.Key.Key_N)
    assert state.channel == 2
    qtbot.keyClick(view, Qt.Key.Key_P)
    assert state.channel == 1
    qtbot.mouseClick(view.previous_button, Qt.MouseButton.LeftButton)
    assert state.channel == 0 and not view.previous_button.isEnabled()
    view.previous_channel()
    assert state.channel == 0
    state.set_channel(63)
    assert not view.next_button.isEnabled()

    m = loaded[1]["conv1"].numpy()[63]
    text = view.show_hover(view.map_item.mapToScene(QPointF(5.5, 7.5)))  # x, y
    assert text == f"y 7, x 5: {m[7, 5]:.4g}"
    # the input is 64x64 and the map 32x32 (jump 2, field centres at 0, 2, 4, ...):
    # input (14, 10) is the centre of map position (7, 5)'s receptive field
    text = view.show_hover(view.input_item.mapToScene(QPointF(10.2, 14.2)))
    assert text.endswith(f"y 7, x 5: {m[7, 5]:.4g}") and text.startswith("input (14, 10)")

    state.set_layer("maxpool")  # new layer: channel reset, shows channel 0
    assert view.header.text().startswith("channel 0 of 64 in maxpool")
    np.testing.assert_array_equal(view.map_item.image, loaded[1]["maxpool"].numpy()[0])


def test_channel_view_without_result(qtbot):
    from featurescope.gui.views.channel_view import ChannelView

    view = _show(qtbot, ChannelView(AppState()))
    assert view.map_item.image is None and "No layer" in view.header.text()
    view.next_channel()  # nothing to step through: no error


# --- filters view ---------------------------------------------------------------

@pytest.fixture
def filters():
    from featurescope.core.render import filters

    return filters


def _weight(model, name):
    return dict(model.module.named_modules())[name].weight.detach().numpy()


def test_filters_view_first_layer_is_rgb(qtbot, state, loaded, filters):
    from featurescope.gui.views.filters_view import FiltersView

    model = loaded[0]
    view = _show(qtbot, FiltersView(state))
    expected, _ = filters.filter_grid(_weight(model, "conv1"), mode="rgb")
    np.testing.assert_array_equal(view.image_item.image, expected)
    assert view.header.text() == "64 filters of 3x7x7 in conv1"
    assert view.effective_mode == "rgb"
    assert view.stack.currentWidget() is view.plots
    f, ky, kx = 0, 2, 3
    y0, x0 = view.layout_grid.tile_origin(f)
    text = view.show_hover(view.image_item.mapToScene(QPointF(x0 + kx + 0.5, y0 + ky + 0.5)))
    assert text.startswith(f"filter {f}, weight ({ky}, {kx}): R ")


def test_filters_view_deeper_layer_modes(qtbot, state, loaded, filters):
    from featurescope.gui.views.filters_view import FiltersView

    model = loaded[0]
    view = _show(qtbot, FiltersView(state))
    state.set_layer("layer1.0.conv1")
    w = _weight(model, "layer1.0.conv1")
    np.testing.assert_array_equal(view.image_item.image, filters.filter_grid(w, mode="mean")[0])
    assert view.effective_mode == "mean" and "64 input channels" in view.caption.text()
    assert not view.input_channel.isEnabled()
    view.mode.setCurrentIndex(view.mode.findData("channel"))
    view.input_channel.setValue(5)
    np.testing.assert_array_equal(view.image_item.image,
                                  filters.filter_grid(w, mode="channel", input_channel=5)[0])
    assert view.input_channel.maximum() == 63 and "input channel 5 of 64" in view.caption.text()


def test_filters_view_one_input_channel_is_not_called_depthwise(qtbot, tmp_path, filters):
    """A grey (one-channel) first layer has one weight per position like a depthwise
    layer, but it is an ordinary convolution: the caption must not say depthwise."""
    from PIL import Image

    from featurescope.core.capture.capture import capture
    from featurescope.core.models.load import load_model
    from featurescope.gui.views.filters_view import FiltersView

    (tmp_path / "grey.py").write_text(
        "import torch.nn as nn\n"
        "def Net():\n"
        "    return nn.Sequential(nn.Conv2d(1, 6, 3), nn.ReLU(), nn.Conv2d(6, 6, 3, groups=6))\n")
    model = load_model(f"{tmp_path / 'grey.py'}:Net", weights="none", device="cpu", input_size=28)
    s = AppState()
    s.set_model(model)
    s.set_result(capture(model, Image.new("RGB", (40, 40), (90, 120, 200))))
    view = _show(qtbot, FiltersView(s))
    s.set_layer("0")
    assert view.header.text() == "6 filters of 1x3x3 in 0"
    assert "depthwise" not in view.caption.text().lower() and "single input channel" in view.caption.text()
    np.testing.assert_array_equal(view.image_item.image,
                                  filters.filter_grid(_weight(model, "0"), mode="channel")[0])
    s.set_layer("2")  # groups=6: truly depthwise
    assert view.caption.text().startswith("Depthwise convolution")


def test_filters_view_pooling_has_no_filters(qtbot, state, filters):
    from featurescope.gui.views.filters_view import FiltersView

    view = _show(qtbot, FiltersView(state))
    state.set_layer("maxpool")
    assert view.stack.currentWidget() is view.message
    assert view.message.text().startswith("Pooling layers have no filters; maxpool (MaxPool2d) "
                                          "keeps the largest value of each 3x3 window")
    assert view.image_item.image is None


# --- layer info -----------------------------------------------------------------

def test_layer_info_panel_numbers(qtbot, state):
    from featurescope.gui.docks.layer_info_panel import LayerInfoPanel

    panel = _show(qtbot, LayerInfoPanel(state), (380, 600))
    text = panel.text()
    assert "out = floor((64 + 2*3 - 1*(7-1) - 1) / 2) + 1 = 32" in text
    assert "9,408" in text and "3 -> 64" in text
    fc = 3 * 64 * 64 * 64 * 32 * 32 + 64 * 32 * 32
    assert f"{fc:,}" in text
    state.set_layer("maxpool")
    assert "32x32 -> 16x16: 4x fewer positions, channels unchanged (64)." in panel.text()
    assert "no parameters" in panel.text()


# --- predictions ----------------------------------------------------------------

def test_predictions_panel_untrained(qtbot, state, loaded):
    from featurescope.gui.docks.predictions_panel import UNTRAINED_TEXT, PredictionsPanel

    panel = _show(qtbot, PredictionsPanel(state), (320, 240))
    expected = loaded[1].predictions(top=5)
    assert panel.texts() == [(p.label, f"{p.probability * 100:.1f} %") for p in expected]
    assert panel.rows[0][1].value() == round(expected[0].probability * 1000)
    assert panel.warning.isVisible() and panel.warning.text() == UNTRAINED_TEXT
    assert "resnet18 (untrained)" in panel.header.text()


TINY_NET = '''
import torch.nn as nn

def Net():
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 7))
'''


def test_predictions_panel_custom_model_without_categories(qtbot, tmp_path):
    from featurescope.core.capture.capture import capture
    from featurescope.core.models.load import load_model
    from featurescope.gui.docks.predictions_panel import PredictionsPanel

    (tmp_path / "tinynet.py").write_text(TINY_NET)
    model = load_model(f"{tmp_path / 'tinynet.py'}:Net", weights="none", device="cpu", input_size=16)
    s = AppState()
    panel = _show(qtbot, PredictionsPanel(s), (320, 240))
    s.set_model(model)
    s.set_result(capture(model, torch.rand(1, 3, 16, 16)))
    labels = [label for label, _ in panel.texts()]
    assert len(labels) == 5
    assert labels == [f"class {p.index}" for p in s.result.predictions(top=5)]


# --- display options and undo -----------------------------------------------------

def test_display_panel_writes_state_and_undoes(qtbot):
    from featurescope.gui.docks.display_panel import DisplayOptionsPanel

    s = AppState()
    panel = _show(qtbot, DisplayOptionsPanel(s), (320, 260))
    assert [panel.colormap.itemText(i) for i in range(panel.colormap.count())] == list(grids.COLORMAPS)
    panel.colormap.setCurrentText("magma")
    panel.normalize.setCurrentIndex(panel.normalize.findData("layer"))
    panel.order.setCurrentIndex(panel.order.findData("max"))
    for n in (4, 5, 6):  # spinning merges into one step
        panel.columns.setValue(n)
    panel.upscale.setValue(4)
    panel.clip.setChecked(True)
    d = s.display
    assert (d.colormap, d.normalize, d.order, d.columns, d.upscale, d.clip_percentile) == \
        ("magma", "layer", "max", 6, 4, 1.0)
    assert panel.undo_stack.count() == 6

    panel.undo_stack.undo()  # clipping off
    panel.undo_stack.undo()  # upscale back to 1
    panel.undo_stack.undo()  # columns back to auto in one step
    assert (s.display.clip_percentile, s.display.upscale, s.display.columns) == (None, 1, None)
    assert panel.columns.text() == "auto" and not panel.clip.isChecked()
    panel.undo_stack.redo()
    assert s.display.columns == 6 and panel.columns.value() == 6

    # changes from elsewhere (settings restore) show, but are not undo steps
    count = panel.undo_stack.count()
    s.set_display(colormap="gray")
    assert panel.colormap.currentText() == "gray" and panel.undo_stack.count() == count


def test_display_panel_keyboard_undo_redo(qtbot):
    from featurescope.gui.docks.display_panel import DisplayOptionsPanel

    s = AppState()
    panel = _show(qtbot, DisplayOptionsPanel(s), (320, 260))
    panel.activateWindow()
    qtbot.waitUntil(panel.isActiveWindow)
    panel.colormap.setCurrentText("plasma")
    panel.upscale.setFocus()
    qtbot.keyClick(panel.upscale, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert s.display.colormap == "viridis"
    qtbot.keyClick(panel.upscale, Qt.Key.Key_Z,
                   Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert s.display.colormap == "plasma"
    assert panel.undo_action.isEnabled() and not panel.redo_action.isEnabled()


def test_hidden_views_catch_up_when_shown(qtbot, state, loaded, filters):
    from featurescope.gui.views.channel_view import ChannelView
    from featurescope.gui.views.filters_view import FiltersView

    channel, filters_view = ChannelView(state), FiltersView(state)
    for w in (channel, filters_view):
        qtbot.addWidget(w)
    state.set_layer("layer1.0.conv2")
    state.set_channel(9)
    assert channel.map_item.image is None  # hidden (another tab): no work done yet
    channel.show()
    filters_view.show()
    np.testing.assert_array_equal(channel.map_item.image, loaded[1]["layer1.0.conv2"].numpy()[9])
    assert filters_view.header.text() == "64 filters of 64x3x3 in layer1.0.conv2"


def test_predictions_header_is_one_elided_line_and_top5_the_group_title(qtbot, state, loaded):
    from featurescope.gui.docks.predictions_panel import PredictionsPanel

    panel = _show(qtbot, PredictionsPanel(state), (240, 240))
    name = state.model.display_name
    assert panel.header.text() == name and panel.header.toolTip() == name
    assert panel.group.title() == "Top 5 classes" and name not in panel.group.title()
    # the default model's name in a dock of the usual width: one line, elided at the end
    long = "efficientnet_lite0 (embedded ImageNet)"
    panel.header.setText(long)
    line = panel.header.fontMetrics().height()
    assert panel.header.height() < 2 * line
    shown = panel.header.shown_text()
    assert shown != long and shown.endswith("…") and long.startswith(shown[:-1])
    assert panel.header.toolTip() == long
    panel.resize(600, 240)
    qtbot.waitUntil(lambda: panel.header.shown_text() == long)


def test_long_headers_wrap_instead_of_widening_the_tabs(qtbot, state):
    from featurescope.gui.views.channel_view import ChannelView
    from featurescope.gui.views.filters_view import FiltersView

    filters = _show(qtbot, FiltersView(state), (700, 500))
    filters.header.setText("512 filters of 512x3x3 in features.denseblock4.denselayer16.conv2")
    assert filters.minimumSizeHint().width() < 500  # fits the 545 px the docks leave it
    channel = _show(qtbot, ChannelView(state), (520, 500))
    state.set_channel(0)
    qtbot.waitUntil(lambda: "zeros" in channel.stats_label.text())
    text = channel.stats_label.text()
    for name in ("min", "mean", "max", "zeros", "negative"):  # never "zeros 0.0 / %"
        assert f"<span style='white-space:nowrap'>{name} " in text
