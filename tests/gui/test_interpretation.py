"""Issue 5 in the app: receptive fields, channel statistics, Grad-CAM and compare tabs.

Everything drives the real MainWindow (efficientnet_lite0 with its embedded weights and
the cat, or resnet18 untrained) and checks the arrays the widgets hold against the
engine's own functions.
"""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication

from featurescope.core.resources import sample_images
from featurescope.gui.main_window import CHANNEL_TAB, COMPARE_TAB, GRADCAM_TAB

COFFEE = next(p for p in sample_images() if p.stem == "coffee")
ROCKET = next(p for p in sample_images() if p.stem == "rocket")
LAYER = "blocks.3.depthwise"  # lite0: a 28x28 map, a field of a few dozen pixels


def _chw(window, layer):
    value = window.state.result[layer]
    return value.numpy() if hasattr(value, "numpy") else np.asarray(value)


def _click(qtbot, plots, item, item_pos: QPointF):
    """A real mouse click on ``item_pos`` of an image item, once the layout has settled."""
    qtbot.waitUntil(lambda: plots.viewport().rect().contains(plots.mapFromScene(item.mapToScene(item_pos))))
    view_pos = plots.mapFromScene(item.mapToScene(item_pos))
    qtbot.mouseClick(plots.viewport(), Qt.MouseButton.LeftButton, pos=view_pos)


def _switch(qtbot, window, tab):
    window.tabs.setCurrentIndex(tab)
    qtbot.waitUntil(lambda: window.tabs.currentWidget().isVisible())


# --- receptive fields --------------------------------------------------------------------

def test_channel_view_draws_the_receptive_field_of_hovered_and_clicked_positions(window, qtbot, wait_idle):
    from featurescope.core.analysis.receptive import receptive_field

    window.state.set_layer(LAYER)
    _switch(qtbot, window, CHANNEL_TAB)
    view = window.channel_view
    field = receptive_field(window.state.model, LAYER)
    assert view.field == field

    view.show_hover(view.map_item.mapToScene(QPointF(9.5, 20.5)))  # x, y
    assert view.rf_position == (20, 9)
    assert view.rf_box == field.box(20, 9)
    y0, x0, y1, x1 = field.box(20, 9)
    rect = view.outlines.rf_item.rect()
    assert view.outlines.rf_item.isVisible()
    assert (rect.x(), rect.y(), rect.width(), rect.height()) == (x0, y0, x1 - x0, y1 - y0)
    assert f"{y1 - y0} x {x1 - x0} px" in view.field_label.text()

    # a click pins the position: it stays drawn when the mouse leaves both pictures
    _click(qtbot, view.plots, view.map_item, QPointF(25.5, 3.5))
    assert view.pinned == (3, 25) and view.rf_box == field.box(3, 25)
    view.show_hover(QPointF(-5000, -5000))
    assert view.rf_box == field.box(3, 25) and view.outlines.rf_item.isVisible()

    # hovering the input marks the map position centred nearest and all that see the pixel
    text = view.show_hover(view.input_item.mapToScene(QPointF(100.2, 60.2)))
    assert view.rf_position == field.position(60, 100)
    assert text.startswith("input (60, 100) -> map ")
    sy0, sx0, sy1, sx1 = view.seeing
    for y in range(field.output_shape[0]):
        for x in range(field.output_shape[1]):
            b = field.box(y, x)
            sees = b[0] <= 60 < b[2] and b[1] <= 100 < b[3]
            assert sees == (sy0 <= y < sy1 and sx0 <= x < sx1), (y, x)
    assert view.outlines.seeing_item.isVisible()

    # a new layer drops the pin
    window.state.set_layer("stem")
    assert view.pinned is None and view.field == receptive_field(window.state.model, "stem")


def test_layer_info_shows_receptive_field_dead_channels_and_histogram(window, qtbot):
    from featurescope.core.analysis.receptive import receptive_field
    from featurescope.core.analysis.stats import activation_histogram, dead_channels

    panel = window.layer_info_panel
    for layer in ("stem", LAYER, "head"):
        window.state.set_layer(layer)
        field = receptive_field(window.state.model, layer)
        text = panel.text()
        assert f"Receptive field: {field.size} x {field.size} px" in text
        assert f"jump {field.jump} px" in text
        chw = _chw(window, layer)
        dead = dead_channels(chw)
        np.testing.assert_array_equal(panel.dead, dead)
        assert f"Dead channels (never positive for this image): {len(dead)} of {chw.shape[0]}" in text
        counts, edges = activation_histogram(chw, 64)
        np.testing.assert_array_equal(panel.histogram[0], counts)
        np.testing.assert_array_equal(panel.histogram[1], edges)
        bars = panel.histogram_bars.opts
        np.testing.assert_array_equal(bars["x0"], edges[:-1])
        np.testing.assert_array_equal(bars["x1"], edges[1:])
        np.testing.assert_array_equal(bars["height"], counts)
    # head: Lite0 halves the size five times (stem + four stride-2 stages), so one step of
    # the head's map is 32 input pixels, and its field covers the whole 224 px input.
    assert field.jump == 32 and field.size >= 224


def test_grid_orders_follow_rank_channels(window, qtbot, wait_idle):
    from featurescope.core.analysis.stats import rank_channels

    window.state.set_layer(LAYER)
    chw = _chw(window, LAYER)
    for order in ("sparsity", "mean", "max"):
        window.display_panel.order.setCurrentIndex(window.display_panel.order.findData(order))
        assert window.state.display.order == order
        qtbot.waitUntil(lambda: window.grid_view.layout_ is not None
                        and window.grid_view.shown_key is not None
                        and order in str(window.grid_view.shown_key))
        np.testing.assert_array_equal(window.grid_view.layout_.order, rank_channels(chw, order))
    # true channel numbers in the hover: the first tile is the most active channel
    first = int(rank_channels(chw, "max")[0])
    assert window.grid_view.layout_.locate(0, 0)[0] == first


# --- Grad-CAM ------------------------------------------------------------------------------

def test_gradcam_tab_equals_grad_cam_for_top_and_chosen_classes(window, qtbot, wait_idle):
    from featurescope.core.analysis.gradcam import grad_cam

    model, result = window.state.model, window.state.result
    view = window.gradcam_view
    window.state.set_layer("head")
    _switch(qtbot, window, GRADCAM_TAB)
    qtbot.waitUntil(lambda: view.cam is not None and view.cam.layer == "head")
    top = result.predictions(5)
    assert view.cam.target == top[0].index
    np.testing.assert_array_equal(view.overlay_item.image, grad_cam(model, result.input, "head"))
    assert view.class_combo.count() == 6 and not view.note.isVisible()
    assert top[0].label in view.header.text()

    # the third of the top five, from the combo
    view.class_combo.setCurrentIndex(3)
    view.class_combo.activated.emit(3)
    qtbot.waitUntil(lambda: view.cam is not None and view.cam.target == top[2].index)
    np.testing.assert_array_equal(view.overlay_item.image,
                                  grad_cam(model, result.input, "head", top[2].index))

    # any class by name, and the layer follows the selection; pooling -> the conv before
    assert view.choose_text("goldfish")
    goldfish = model.categories.index("goldfish")
    window.state.set_layer("pool")
    qtbot.waitUntil(lambda: view.cam is not None and view.cam.target == goldfish)
    assert view.layer == "head" and "nearest convolution before it, head" in view.note.text()
    np.testing.assert_array_equal(view.overlay_item.image, grad_cam(model, result.input, "head", goldfish))
    np.testing.assert_array_equal(view.layer_item.image.shape, (7, 7))
    assert not view.choose_text("no such animal") and window.state.gradcam.target == goldfish
    wait_idle(window)


def test_gradcam_that_is_zero_everywhere_says_so(window, qtbot, wait_idle):
    # For the cat, blocks.15.project has no position with positive evidence for the top
    # class (the grad-cam package agrees): a black picture needs a sentence.
    view = window.gradcam_view
    _switch(qtbot, window, GRADCAM_TAB)
    window.state.set_layer("blocks.15.project")
    qtbot.waitUntil(lambda: view.cam is not None and view.cam.layer == "blocks.15.project")
    assert not np.any(view.layer_item.image > 0)
    assert view.note.isVisible() and "zero everywhere at blocks.15.project" in view.note.text()
    window.state.set_layer("head")
    qtbot.waitUntil(lambda: view.cam is not None and view.cam.layer == "head")
    assert "zero everywhere" not in view.note.text()
    wait_idle(window)


def test_gradcam_of_an_untrained_model_says_it_means_little(window, qtbot, wait_idle):
    _switch(qtbot, window, GRADCAM_TAB)
    window.request_model({"name": "resnet18", "weights": "none", "device": "cpu", "input_size": "64"})
    qtbot.waitUntil(lambda: window.state.result is not None and window.state.result.model_name == "resnet18"
                    and window.gradcam_view.cam is not None, timeout=60000)
    assert "untrained" in window.gradcam_view.note.text() and "mean little" in window.gradcam_view.note.text()
    assert window.state.gradcam.target is None  # a new network starts at its top class
    wait_idle(window)


# --- compare -------------------------------------------------------------------------------

def _assert_compare_matches(window, view):
    from featurescope.core.analysis.compare import compare_layer, shared_index_grids

    layer = window.state.layer
    expected = compare_layer(window.state.result, view.compare.result_b, layer)
    got = view.compare.comparison
    for name in ("a", "b", "difference", "channel_similarity", "channel_levels"):
        np.testing.assert_array_equal(getattr(got, name), getattr(expected, name))
    assert got.shared_levels == expected.shared_levels and got.similarity == expected.similarity
    pictures, _ = shared_index_grids(expected)
    for key, item in view.items.items():
        np.testing.assert_array_equal(item.image, pictures[key])
    np.testing.assert_array_equal(view.worst_first, expected.most_different_channels())
    assert f"similarity {expected.similarity:.3f}" in view.header.text()


def test_compare_tab_with_b_from_the_open_dialog(window, qtbot, wait_idle, monkeypatch):
    from PySide6.QtWidgets import QFileDialog

    from featurescope.core.capture.capture import capture
    from featurescope.core.io.images import load_image

    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(lambda *a, **k: (str(COFFEE), "")))
    window.state.set_layer(LAYER)
    _switch(qtbot, window, COMPARE_TAB)
    view = window.compare_view
    assert view.compare.comparison is None and "Choose image B" in view.header.text()
    qtbot.mouseClick(view.open_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: view.compare.comparison is not None, timeout=30000)
    assert view.source_label.text() == "Image B: coffee.png"
    own = capture(window.state.model, load_image(COFFEE))
    np.testing.assert_array_equal(view.compare.result_b[LAYER].numpy(), own[LAYER].numpy())
    _assert_compare_matches(window, view)

    window.state.set_layer("stem")  # the comparison follows the layer
    qtbot.waitUntil(lambda: view.compare.comparison is not None and view.compare.comparison.layer == "stem")
    _assert_compare_matches(window, view)

    # a new model: B is captured again with it
    window.request_model({"name": "resnet18", "weights": "none", "device": "cpu", "input_size": "64"})
    qtbot.waitUntil(lambda: view.compare.comparison is not None and view.compare.comparison.layer == "conv1", timeout=60000)
    assert view.compare.result_b.model_name == "resnet18" and view.compare.result_b["conv1"].shape[1:] == (32, 32)
    _assert_compare_matches(window, view)
    wait_idle(window)


def test_compare_tab_takes_b_from_a_drop_and_a_sample(window, qtbot, wait_idle):
    window.state.set_layer("stem")
    _switch(qtbot, window, COMPARE_TAB)
    view = window.compare_view
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(ROCKET))])
    enter = QDragEnterEvent(view.rect().center(), Qt.DropAction.CopyAction, mime,
                            Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(view, enter)
    assert enter.isAccepted()
    drop = QDropEvent(QPointF(view.rect().center()), Qt.DropAction.CopyAction, mime,
                      Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(view, drop)
    assert drop.isAccepted()
    qtbot.waitUntil(lambda: view.compare.comparison is not None and view.compare.source_b == str(ROCKET), timeout=30000)
    _assert_compare_matches(window, view)
    assert window.state.image_source != str(ROCKET)  # A stays the cat

    index = view.sample_combo.findText("coffee")
    view.sample_combo.setCurrentIndex(index)
    view.sample_combo.activated.emit(index)
    qtbot.waitUntil(lambda: view.compare.source_b == str(COFFEE) and window.jobs.is_idle(), timeout=30000)
    _assert_compare_matches(window, view)


def test_compare_views_are_equal_linked_and_show_thumbnails(window, qtbot, wait_idle):
    window.state.set_layer("stem")
    _switch(qtbot, window, COMPARE_TAB)
    view = window.compare_view
    view.set_image_b(str(COFFEE))
    qtbot.waitUntil(lambda: view.compare.comparison is not None, timeout=30000)
    wait_idle(window)
    for columns in (3, 2):
        view._arrange(columns)
        qtbot.waitUntil(lambda: len({(round(b.width()), round(b.height()))
                                     for b in view.boxes.values()}) == 1, timeout=5000)
        sizes = {(round(b.width()), round(b.height())) for b in view.boxes.values()}
        assert sizes.pop()[0] > 0.25 * view.plots.width()
        # the mosaics are drawn at the same size on screen, filling a cell's width or height
        def shown():
            return {tuple(round(v) for v in item.mapRectToScene(item.boundingRect()).getRect()[2:])
                    for item in view.items.values()}
        qtbot.waitUntil(lambda: len(shown()) == 1, timeout=5000)
        box = view.boxes["a"]
        assert max(a / b for a, b in zip(shown().pop(), (box.width(), box.height()))) > 0.9
    # pan one: all three follow
    view.boxes["b"].translateBy(x=10, y=5)
    ranges = np.array([box.viewRange() for box in view.boxes.values()])
    np.testing.assert_allclose(ranges[1:], ranges[[0, 0]], atol=1e-6)
    assert view.boxes["a"].viewRange()[0][0] < -1  # moved from the fit
    # thumbnails of what the model sees for A and B
    for key in ("a", "b"):
        pixmap = view.thumbnails[key].pixmap()
        assert pixmap is not None and not pixmap.isNull() and pixmap.height() == 56
