"""Drive the real MainWindow offscreen: start-up, models, images, layers, channels, errors."""
from __future__ import annotations

import time

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QGuiApplication
from PySide6.QtWidgets import QApplication, QFileDialog

from featurescope.core.render.grids import colormap_lut, feature_grid, grid_indices
from featurescope.core.resources import default_sample


def assert_grid_shows(window, layer):
    """The ImageItem holds grid_indices of ``layer``; through its lut it is feature_grid."""
    state, item = window.state, window.grid_view.image_item
    options = state.display
    assert state.layer == layer
    expected_indices, layout = grid_indices(state.result[layer].numpy(), normalize=options.normalize,
                                            order=options.order, columns=options.columns)
    np.testing.assert_array_equal(item.image, expected_indices)
    lut = colormap_lut(options.colormap)
    np.testing.assert_array_equal(item.lut, lut)
    assert tuple(item.levels) == (0, 255)
    np.testing.assert_array_equal(lut[item.image], feature_grid(state.result[layer], colormap=options.colormap,
                                                               normalize=options.normalize, order=options.order))
    assert window.grid_view.layout_.shape == expected_indices.shape


def photo(path, size=(96, 64), colour=(200, 30, 30)):
    image = Image.new("RGB", size, colour)
    image.paste((20, 20, 220), (0, 0, size[0] // 2, size[1] // 2))
    image.save(path)
    return path


def test_start_up_shows_the_cat_through_the_first_conv(window):
    state = window.state
    assert state.model.name == "efficientnet_lite0" and state.model.trained
    assert state.image_source == str(default_sample())
    first_conv = next(n for n in state.result.layers if state.result.info[n].kind == "Conv2d")
    assert state.layer == first_conv
    assert_grid_shows(window, first_conv)
    # the layer list holds every captured layer, in network order, with the current one selected
    assert window.layer_panel.layer_names() == list(state.result.layers)
    assert window.layer_panel.tree.currentItem().text(0) == first_conv
    assert "efficientnet_lite0" in window.windowTitle()
    # the preview is the picture the model sees
    np.testing.assert_array_equal(window.image_panel.preview_item.image,
                                  state.model.deprocess(state.result.input))
    assert window.tabs.tabText(0) == "Feature maps"
    assert [window.tabs.tabText(i) for i in range(3)] == ["Feature maps", "Filters", "Channel"]
    names = {d.objectName() for d in (window.layers_dock, window.model_dock, window.image_dock,
                                      window.info_dock, window.predictions_dock, window.display_dock)}
    assert len(names) == 6 and "" not in names


def test_keyboard_moves_through_layers_and_grid_follows(window, qtbot):
    layers = list(window.state.result.layers)
    tree = window.layer_panel.tree
    tree.setFocus()
    start = layers.index(window.state.layer)
    for step in range(1, 4):
        qtbot.keyClick(tree, Qt.Key_Down)
        assert_grid_shows(window, layers[start + step])
    qtbot.keyClick(tree, Qt.Key_Up)
    assert_grid_shows(window, layers[start + 2])
    qtbot.keyClick(tree, Qt.Key_PageDown)
    assert layers.index(window.state.layer) > start + 2
    assert_grid_shows(window, window.state.layer)
    # from the grid itself too
    here = layers.index(window.state.layer)
    qtbot.keyClick(window.grid_view, Qt.Key_Down)
    assert_grid_shows(window, layers[here + 1])
    # the slider sweeps to the last layer
    window.layer_panel.slider.setValue(len(layers) - 1)
    assert_grid_shows(window, layers[-1])
    assert tree.currentItem().text(0) == layers[-1]


def test_moving_back_and_forth_needs_no_forward_pass(window, qtbot, monkeypatch):
    import featurescope.core.capture.capture as capture_module

    calls = []
    real = capture_module.capture
    monkeypatch.setattr(capture_module, "capture", lambda *a, **k: calls.append(1) or real(*a, **k))
    layers = list(window.state.result.layers)
    for name in layers[:6] + layers[:6][::-1]:
        window.state.set_layer(name)
        assert_grid_shows(window, name)
    assert calls == []


def test_display_options_change_the_grid(window):
    window.state.set_display(colormap="coolwarm", normalize="layer", order="mean")
    layer = window.state.layer
    chw = window.state.result[layer]
    expected = feature_grid(chw, normalize="layer", colormap="coolwarm", order="mean")
    item = window.grid_view.image_item
    np.testing.assert_array_equal(item.lut[item.image], expected)


def test_hover_reads_out_the_value_and_click_opens_the_channel(window, qtbot):
    view = window.grid_view
    window.tabs.setCurrentIndex(0)
    qtbot.waitExposed(window)
    layout = view.layout_
    channel = min(5, layout.channels - 1)
    y0, x0 = layout.tile_origin(channel)
    y, x = layout.tile_height // 3, layout.tile_width // 2
    # zoom onto the tile so one map pixel spans several screen pixels
    view.view_box.setRange(xRange=(x0, x0 + layout.tile_width), yRange=(y0, y0 + layout.tile_height),
                           padding=0)
    QApplication.processEvents()
    scene_point = view.image_item.mapToScene(QPointF(x0 + x + 0.5, y0 + y + 0.5))
    pos = view.graphics.mapFromScene(scene_point)
    qtbot.mouseMove(view.graphics.viewport(), pos)
    value = float(window.state.result[window.state.layer][channel, y, x])
    expected = f"channel {channel}  ({y}, {x}) = {value:.4g}"
    qtbot.waitUntil(lambda: view.readout.text() == expected, timeout=3000)

    with qtbot.waitSignal(window.state.channel_changed, timeout=3000) as blocker:
        qtbot.mouseClick(view.graphics.viewport(), Qt.LeftButton, pos=pos)
    assert blocker.args == [channel]
    assert window.state.channel == channel
    assert window.tabs.currentIndex() == 2 and window.tabs.tabText(2) == "Channel"
    # fit to view shows the whole mosaic again
    window.tabs.setCurrentIndex(0)
    window.fit_action.trigger()
    (left, right), (top, bottom) = view.view_box.viewRange()
    h, w = view.image_item.image.shape
    assert left <= 0 and top <= 0 and right >= w and bottom >= h


def test_load_another_model_untrained(window, qtbot):
    panel = window.model_panel
    panel.search.setText("resnet18")
    visible = [panel.models.topLevelItem(i) for i in range(panel.models.topLevelItemCount())
               if not panel.models.topLevelItem(i).isHidden()]
    assert [item.text(0) for item in visible] == ["resnet18"]
    panel.select_model("resnet18")
    panel.weights.setCurrentIndex(panel.weights.findData("none"))
    assert panel.device.count() >= 1 and panel.device.itemData(0) == "cpu"
    qtbot.mouseClick(panel.load_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: window.state.model.name == "resnet18" and window.state.result is not None
                    and window.jobs.is_idle(), timeout=60000)
    assert not window.state.model.trained
    assert "untrained" in window.windowTitle()
    assert "untrained" in panel.current.text()
    assert window.state.layer == "conv1"
    assert_grid_shows(window, "conv1")
    assert window.layer_panel.layer_names() == list(window.state.result.layers)
    assert window.settings.model_spec()["name"] == "resnet18"


def test_open_image_through_the_dialog(window, qtbot, tmp_path, monkeypatch):
    path = photo(tmp_path / "red.png")
    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(lambda *a, **k: (str(path), "")))
    old = window.state.result
    window.open_action.trigger()
    qtbot.waitUntil(lambda: window.state.image_source == str(path) and window.state.result is not old
                    and window.jobs.is_idle(), timeout=30000)
    assert window.state.image.size == (96, 64)
    assert_grid_shows(window, window.state.layer)
    assert window.settings.recent_files()[0] == str(path.resolve())
    assert window.image_panel.recent.item(0).toolTip() == str(path.resolve())
    assert "red.png" in window.windowTitle()


# PySide6 offers only the QPoint constructor of QDragEnterEvent, and marks it deprecated.
@pytest.mark.filterwarnings("ignore:Function.*QDragEnterEvent:DeprecationWarning")
def test_drop_an_image_file_onto_the_window(window, qtbot, tmp_path):
    path = photo(tmp_path / "dropped.jpg", colour=(10, 200, 10))
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    # what a real drag does: enter (the window says it takes it), then drop
    enter = QDragEnterEvent(QPoint(200, 200), Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier)
    QApplication.sendEvent(window, enter)
    assert enter.isAccepted()
    event = QDropEvent(QPointF(200, 200), Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier)
    QApplication.sendEvent(window, event)
    assert event.isAccepted()
    qtbot.waitUntil(lambda: window.state.image_source == str(path) and window.jobs.is_idle(), timeout=30000)
    assert window.state.result is not None
    assert_grid_shows(window, window.state.layer)


def test_paste_an_image_from_the_clipboard(window, qtbot):
    from PySide6.QtGui import QColor, QImage

    image = QImage(40, 30, QImage.Format_RGB888)
    image.fill(QColor(0, 128, 255))
    QGuiApplication.clipboard().setImage(image)
    window.paste_action.trigger()
    qtbot.waitUntil(lambda: window.state.image_source == "clipboard" and window.jobs.is_idle(), timeout=30000)
    assert window.state.image.size == (40, 30)
    assert window.state.image.getpixel((5, 5)) == (0, 128, 255)


@pytest.mark.parametrize("content", [b"", b"this is not a picture", b"\x89PNG\r\n\x1a\n\x00\x00"])
def test_broken_image_is_a_sentence_and_the_old_one_stays(window, qtbot, tmp_path, content):
    bad = tmp_path / "broken.png"
    bad.write_bytes(content)
    old_result, old_source, old_array = window.state.result, window.state.image_source, \
        window.grid_view.image_item.image.copy()
    with qtbot.waitSignal(window.state.error_reported, timeout=10000) as blocker:
        window.request_image(str(bad))
    message = blocker.args[0]
    assert "broken.png" in message
    qtbot.waitUntil(window.jobs.is_idle, timeout=10000)
    assert window.banner.isVisible() and window.banner.text() == message
    assert window.statusBar().currentMessage() == message
    assert window.state.result is old_result and window.state.image_source == old_source
    np.testing.assert_array_equal(window.grid_view.image_item.image, old_array)
    # still usable: keys move through layers
    window.layer_panel.tree.setFocus()
    qtbot.keyClick(window.layer_panel.tree, Qt.Key_Down)
    assert_grid_shows(window, window.state.layer)


def test_unknown_model_is_a_sentence_and_the_old_model_stays(window, qtbot):
    old = window.state.model
    with qtbot.waitSignal(window.state.error_reported, timeout=10000) as blocker:
        window.request_model({"name": "no_such_net", "weights": "none", "device": "cpu"})
    assert "no_such_net" in blocker.args[0]
    qtbot.waitUntil(window.jobs.is_idle, timeout=10000)
    assert window.state.model is old and window.state.result is not None


def test_a_later_successful_load_clears_the_error(window, qtbot, tmp_path, wait_idle):
    bar = window.statusBar()
    # a failed model load (as a failed download would be), then a new image that works
    with qtbot.waitSignal(window.state.error_reported, timeout=10000) as blocker:
        window.request_model({"name": "no_such_net", "weights": "none", "device": "cpu"})
    qtbot.waitUntil(window.jobs.is_idle, timeout=10000)
    assert window.banner.isVisible() and bar.currentMessage() == blocker.args[0]
    window.request_image(str(photo(tmp_path / "fine.png")))
    qtbot.waitUntil(lambda: window.state.image_source.endswith("fine.png"), timeout=10000)
    wait_idle(window)
    assert not window.banner.isVisible() and bar.currentMessage() != blocker.args[0]
    # a broken image, then a model that loads
    (tmp_path / "broken.png").write_bytes(b"not a picture")
    with qtbot.waitSignal(window.state.error_reported, timeout=10000) as blocker:
        window.request_image(str(tmp_path / "broken.png"))
    qtbot.waitUntil(window.jobs.is_idle, timeout=10000)
    assert window.banner.isVisible() and bar.currentMessage() == blocker.args[0]
    with qtbot.waitSignal(window.state.model_changed, timeout=30000):
        window.request_model({"name": "efficientnet_lite0", "weights": "none", "device": "cpu"})
    wait_idle(window)
    assert not window.banner.isVisible() and bar.currentMessage() == ""


def test_cancel_a_long_job_keeps_what_was_there(window, qtbot, monkeypatch):
    from featurescope.core.models import load

    real_load = load.load_model

    def slow_load(*args, cancel=None, **kwargs):
        # a resnet18 loads in ~0.3 s on a quiet machine: the busy bar waits 400 ms, so
        # the load is held (as a download would be) until the user cancels it
        model = real_load(*args, cancel=cancel, **kwargs)
        for _ in range(600):
            if cancel is not None:
                cancel.raise_if_cancelled()
            time.sleep(0.05)
        return model

    monkeypatch.setattr(load, "load_model", slow_load)
    old_model, old_result = window.state.model, window.state.result
    window.request_model({"name": "resnet18", "weights": "none", "device": "cpu"})
    # shown once the job has run a moment (a stream of short jobs never makes a busy bar)
    qtbot.waitUntil(lambda: window.cancel_button.isVisibleTo(window)
                    and window.progress_bar.isVisibleTo(window), timeout=5000)
    qtbot.mouseClick(window.cancel_button, Qt.LeftButton)
    qtbot.waitUntil(window.jobs.is_idle, timeout=30000)
    assert window.state.model is old_model and window.state.result is old_result
    assert not window.cancel_button.isVisibleTo(window)
    assert "cancel" in window.statusBar().currentMessage().lower()


def test_settings_persist_model_options_and_layout(make_window, qtbot, settings_path, wait_idle):
    first = make_window()
    wait_idle(first)
    first.state.set_display(colormap="magma", order="max")
    # the offscreen screen is 800 px high; restoreGeometry keeps windows on the screen
    first.resize(first.width(), 760)
    first.info_dock.hide()
    first.close()
    assert settings_path.is_file()

    second = make_window(start=False)
    assert second.state.display.colormap == "magma" and second.state.display.order == "max"
    assert second.height() == 760
    assert second.info_dock.isHidden()
    assert second.settings.model_spec()["name"] == "efficientnet_lite0"


def test_close_during_a_long_job_returns_promptly(make_window, qtbot):
    window = make_window()
    window.close()  # the model load and capture are still queued or running
    assert window.jobs.is_idle()
    assert window.jobs.pool.activeThreadCount() == 0


def test_the_window_can_be_narrower_than_a_small_laptop_screen(window, qtbot):
    """Every dock and tab may shrink: `screenshot --size 1000x700` once came out 1039 px wide."""
    for name in ("Feature maps", "Filters", "Channel", "Grad-CAM", "Compare", "Examples", "Visualise"):
        window.tabs.setCurrentIndex([window.tabs.tabText(i) for i in range(window.tabs.count())].index(name))
        qtbot.wait(10)
        assert window.minimumSizeHint().width() <= 900, name
    for dock in (window.layers_dock, window.model_dock, window.image_dock, window.info_dock,
                 window.predictions_dock, window.display_dock):
        assert dock.minimumSizeHint().width() <= 240, dock.objectName()
    window.resize(900, 700)
    qtbot.waitUntil(lambda: window.width() <= 900, timeout=3000)


def test_a_long_grid_header_does_not_widen_the_tab(window, qtbot, wait_idle):
    """The 1x1 note of Lite0's pool layer once widened the grid tab by ~100 px and
    squeezed the layer list until its names were elided."""
    window.state.set_layer("stem")
    qtbot.wait(10)
    narrow = window.grid_view.minimumSizeHint().width()
    window.state.set_layer("pool")
    qtbot.waitUntil(lambda: "1x1" in window.grid_view.title.text(), timeout=10000)
    assert window.grid_view.minimumSizeHint().width() <= narrow


def test_every_view_has_a_menu_entry_and_a_ctrl_number_key(window, qtbot):
    """Nine views do not all fit a 1280 px window's tab bar (it scrolls), so the View menu
    lists each one and Ctrl+1 ... Ctrl+9 reach them."""
    titles = [window.tabs.tabText(i) for i in range(window.tabs.count())]
    view_menu = next(a.menu() for a in window.menuBar().actions() if a.text() == "&View")
    entries = {a.text(): a for a in view_menu.actions()}
    for index, title in enumerate(titles[:9]):
        action = entries[title]
        assert action.shortcut().toString() == f"Ctrl+{index + 1}"
        action.trigger()
        assert window.tabs.currentIndex() == index
