"""The Channel view's backprop view: the pattern shown is the engine's guided backprop
(or deconvnet) of the selected channel, or of its pinned position; a layer without
channels gets the engine's sentence."""
from __future__ import annotations

import numpy as np
import pytest

LAYER = "blocks.2.project"


def _open(window, qtbot, layer, channel):
    from featurescope.gui.main_window import CHANNEL_TAB

    window.state.set_layer(layer)
    window.state.set_channel(channel)
    window.tabs.setCurrentIndex(CHANNEL_TAB)
    qtbot.waitUntil(lambda: window.channel_view.isVisible())
    return window.channel_view, window.backprop_control


def test_the_pattern_is_the_engines_for_the_channel_and_the_pinned_position(window, qtbot, wait_idle):
    import featurescope as fs

    view, control = _open(window, qtbot, LAYER, 5)
    assert control.pattern is None and view.pattern is None  # off by default: the photo
    photo = view.input_item.image.copy()
    control.set_method("guided")
    qtbot.waitUntil(lambda: control.pattern is not None, timeout=60000)
    model, image = window.state.model, window.state.result.input
    expected = fs.guided_backprop(model, image, LAYER, 5)
    np.testing.assert_array_equal(view.pattern, expected.picture)
    np.testing.assert_array_equal(view.input_item.image, expected.picture)
    assert not view.overlay_item.isVisible() and view.overlay_title.text == "guided backprop of channel 5"

    # a pinned position: that unit's pattern, by the deconvnet rule
    control.set_method("deconvnet")
    view.show_position(3, 4)
    qtbot.waitUntil(lambda: control.pattern is not None and control.pattern.position == (3, 4)
                    and control.pattern.method == "deconvnet", timeout=60000)
    expected = fs.guided_backprop(model, image, LAYER, 5, position=(3, 4), method="deconvnet")
    np.testing.assert_array_equal(view.pattern, expected.picture)
    assert "at y 3, x 4" in view.overlay_title.text

    # the next channel: its own pattern (the pin stays); back to channel 5 from the cache at once
    window.state.set_channel(6)
    qtbot.waitUntil(lambda: control.pattern is not None and control.pattern.channel == 6, timeout=60000)
    window.state.set_channel(5)
    assert control.pattern is not None and (control.pattern.channel, control.pattern.position) == (5, (3, 4))
    np.testing.assert_array_equal(view.pattern, expected.picture)
    # off: the photo and the map over it come back
    control.set_method("off")
    assert view.pattern is None and view.overlay_item.isVisible()
    np.testing.assert_array_equal(view.input_item.image, photo)
    wait_idle(window)


def test_a_layer_without_channels_gets_the_engines_sentence(window, qtbot, wait_idle):
    view, control = _open(window, qtbot, LAYER, 0)
    key = (id(window.state.result), "classifier", 0, None, "guided")
    control._wanted = key
    control._submit(key)
    qtbot.waitUntil(lambda: "does not output a feature map" in control.note.text(), timeout=60000)
    assert control.pattern is None and view.pattern is None and "Traceback" not in control.note.text()
    wait_idle(window)


def test_each_example_crop_shows_its_units_pattern(window, qtbot, tmp_path, wait_idle):
    import shutil
    from pathlib import Path

    import featurescope as fs
    from featurescope.core.index.build import build_index
    from featurescope.core.io.images import load_image
    from featurescope.core.render.why_report import square_tile
    from featurescope.gui.main_window import EXAMPLES_TAB
    from featurescope.gui.views.example_crops import GAP, TILE

    folder = tmp_path / "photos"
    folder.mkdir()
    for sample in sorted((Path(__file__).resolve().parents[2] / "resources" / "samples").iterdir())[:4]:
        shutil.copy(sample, folder / sample.name)
    model = window.state.model
    index = build_index(model, folder, layers=[LAYER], top=2, batch_size=8, workers=0)
    view = window.examples_view
    window.state.set_layer(LAYER)
    window.state.set_channel(3)
    window.tabs.setCurrentIndex(EXAMPLES_TAB)
    view.set_index(index)
    qtbot.waitUntil(lambda: view.crops.count() == 2, timeout=30000)
    crops = view.crops
    assert crops.tile(0).shape == (TILE, TILE, 3)  # backprop view off: the crop alone

    window.backprop_control.set_method("guided")  # the Channel tab's selector
    qtbot.waitUntil(lambda: len(crops.patterns) == 2, timeout=60000)
    for row, example in enumerate(index.top(LAYER, 3, 2)):
        expected = fs.guided_backprop(model, load_image(example.path), LAYER, 3, position=tuple(example.position))
        top, left, bottom, right = example.input_box
        np.testing.assert_array_equal(crops.patterns[row], expected.picture[top:bottom, left:right])
        np.testing.assert_array_equal(crops.tile(row)[:, TILE + GAP:], square_tile(crops.patterns[row], TILE))
    assert crops.iconSize().width() == 2 * TILE + GAP
    window.backprop_control.set_method("off")
    assert crops.tile(0).shape == (TILE, TILE, 3) and not crops.patterns
    wait_idle(window)


def test_an_onnx_model_gets_the_engines_sentence(window, qtbot, tmp_path, monkeypatch, wait_idle):
    pytest.importorskip("onnxruntime")
    import warnings

    import torch
    from torch import nn

    import featurescope as fs

    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net.eval(), (torch.zeros(1, 3, 32, 32),), str(tmp_path / "net.onnx"), dynamo=False)
    view, control = _open(window, qtbot, LAYER, 0)
    # the work reads the state's model when it is asked for: an ONNX one gives no gradients
    monkeypatch.setattr(window.state, "model", fs.load_model(str(tmp_path / "net.onnx")))
    key = (id(window.state.result), "0", 0, None, "guided")
    control._wanted = key
    control._submit(key)
    qtbot.waitUntil(lambda: "needs gradients, which the ONNX model" in control.note.text(), timeout=60000)
    assert control.pattern is None and view.pattern is None
    monkeypatch.undo()
    wait_idle(window)
