"""A detector's boxes and a segmenter's classes in the predictions panel, over the photo,
and as the Grad-CAM view's target (real widgets, offscreen)."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from featurescope.gui.model.state import AppState


@pytest.fixture(scope="module")
def ssdlite():
    from featurescope.core.models.load import load_model

    return load_model("ssdlite320_mobilenet_v3_large", weights="none", input_size=160, device="cpu")


@pytest.fixture(scope="module")
def photo():
    rng = np.random.default_rng(3)
    return Image.fromarray(rng.integers(0, 255, (120, 200, 3), dtype=np.uint8))


def _state_with(model, photo, layers=None):
    from featurescope.core.capture.capture import capture

    state = AppState()
    state.set_model(model)
    state.set_image(photo, "photo.png")
    layers = layers or [model.layers[0], model.layers[-1]]
    state.set_result(capture(model, photo, layers=layers, stop_early=False))
    return state


def test_predictions_panel_lists_boxes_and_the_photo_draws_them(qtbot, ssdlite, photo):
    from featurescope.gui.docks.image_panel import ImagePanel
    from featurescope.gui.docks.predictions_panel import PredictionsPanel

    state = _state_with(ssdlite, photo)
    panel = PredictionsPanel(state)
    image = ImagePanel(state)
    for widget in (panel, image):
        qtbot.addWidget(widget)
        widget.resize(360, 420)
        widget.show()
    state.set_result(state.result)  # the image panel draws on a result
    # random weights: no box reaches 0.5, and the panel says what the best one scores
    assert panel.dense_group.isVisible() and not panel.group.isVisible()
    assert panel.dense_texts() == [] and "No box scores 0.50 or more (the best scores" in panel.dense_note.text()
    assert image.dense_overlay.box_items == []
    state.set_score_threshold(0.0)
    assert panel.threshold.value() == 0.0
    texts = panel.dense_texts()
    dense = state.result.dense
    assert len(texts) == 20 and texts[0].startswith("box 0: " + ssdlite.categories[dense.labels[0]])
    # every listed box is drawn, the best 8 labelled (a small picture stays readable)
    assert len(image.dense_overlay.box_items) == 20 and len(image.dense_overlay.label_items) == 8
    # the best box is drawn last (on top) where the detector put it, in input pixels
    rect = image.dense_overlay.box_items[-1].rect()
    x0, y0, x1, y1 = dense.boxes[0]
    assert (rect.left(), rect.top()) == pytest.approx((x0, y0), abs=1e-3)
    assert rect.right() == pytest.approx(max(x1, x0 + 0.5), abs=1e-3)
    # pixels: the boxes change the preview
    plain = image.preview.grab().toImage()
    state.set_score_threshold(1.0)
    assert image.dense_overlay.box_items == []
    assert image.preview.grab().toImage() != plain
    # clicking a box makes it Grad-CAM's target, drawn thicker
    state.set_score_threshold(0.0)
    panel._dense_chosen(panel.dense_list.item(3))
    assert state.gradcam.target == 3 and panel.dense_list.item(3).isSelected()
    widths = [item.pen().widthF() for item in image.dense_overlay.box_items]
    assert sorted(widths)[-1] == 3.5 and widths.count(3.5) == 1


def test_segmenter_classes_and_mask(qtbot, photo):
    from featurescope.core.models.load import load_model
    from featurescope.gui.docks.image_panel import ImagePanel
    from featurescope.gui.docks.predictions_panel import PredictionsPanel

    model = load_model("lraspp_mobilenet_v3_large", weights="none", input_size=96, device="cpu")
    state = _state_with(model, photo)
    panel = PredictionsPanel(state)
    image = ImagePanel(state)
    qtbot.addWidget(panel)
    qtbot.addWidget(image)
    state.set_result(state.result)
    texts = panel.dense_texts()
    assert texts and texts[0].endswith("%") and not panel.threshold_row.isVisibleTo(panel)
    mask = image.dense_overlay.mask_item.image
    assert mask is not None and mask.shape == (96, 96, 4)


def test_grad_cam_view_explains_a_chosen_box(qtbot, ssdlite, photo):
    from featurescope.gui.views.gradcam_view import GradCamView

    state = _state_with(ssdlite, photo, ["backbone.features.1.0.1.0"])
    state.set_score_threshold(0.0)
    view = GradCamView(state)
    qtbot.addWidget(view)
    view.resize(700, 500)
    view.show()
    state.set_layer("backbone.features.1.0.1.0")
    state.gradcam.set_target(2)
    qtbot.waitUntil(lambda: view.cam is not None and view.cam.target == 2, timeout=30000)
    assert "box 2 (chosen box, score" in view.header.text()
    assert view.class_combo.itemText(0) == "best box"
    assert view.class_combo.findData(2) > 0
    # the explained box is drawn over the map, where the detector put it
    assert len(view.box_overlay.box_items) == 1
    x0, y0 = state.result.dense.boxes[2][:2]
    rect = view.box_overlay.box_items[0].rect()
    assert (rect.left(), rect.top()) == pytest.approx((x0, y0), abs=1e-3)


def test_why_view_explains_the_box_clicked(qtbot, photo, monkeypatch):
    import functools

    from featurescope.core.analysis import faithfulness
    from featurescope.core.models.load import load_model
    from featurescope.gui.views.why_view import WhyView

    # a whole detector runs per switched-off copy: one k and one random draw keep this quick
    monkeypatch.setattr(faithfulness, "faithfulness",
                        functools.partial(faithfulness.faithfulness, ks=(1,), draws=1))

    model = load_model("fasterrcnn_resnet50_fpn", weights="none", input_size=96, device="cpu")
    layer = "backbone.fpn.layer_blocks.0.0"
    state = _state_with(model, photo, [layer])
    state.set_layer(layer)
    state.set_score_threshold(0.0)
    view = WhyView(state)
    qtbot.addWidget(view)
    view.resize(800, 600)
    view.show()
    assert view.class_combo.itemText(0) == "best box" and view.class_combo.findData(1) > 0
    state.gradcam.set_target(1)  # as a click in the predictions panel does
    assert view.target == 1
    qtbot.waitUntil(lambda: view.answer is not None, timeout=120000)
    assert view.header.text().startswith("Why box 1, '")
    assert view.answer.attribution.target == 1 and view.for_list.count() > 0
