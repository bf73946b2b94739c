"""Issue 13 in the app: the arithmetic panel, the overview strip, the playground and
switching channels off, checked against the engine's own functions on Lite0 and the cat."""
from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QPointF, Qt

from featurescope.gui.main_window import ABLATION_TAB, CHANNEL_TAB, PLAYGROUND_TAB


def _switch(qtbot, window, tab):
    window.tabs.setCurrentIndex(tab)
    qtbot.waitUntil(lambda: window.tabs.currentWidget().isVisible())


def _click(qtbot, plots, item, item_pos: QPointF):
    qtbot.waitUntil(lambda: plots.viewport().rect().contains(plots.mapFromScene(item.mapToScene(item_pos))))
    qtbot.mouseClick(plots.viewport(), Qt.MouseButton.LeftButton, pos=plots.mapFromScene(item.mapToScene(item_pos)))


def test_clicking_a_first_layer_position_shows_its_arithmetic(window, qtbot):
    from featurescope.core.analysis.arithmetic import explain_position

    window.state.set_layer("stem")
    _switch(qtbot, window, CHANNEL_TAB)
    window.state.set_channel(3)
    view, panel = window.channel_view, window.arithmetic_panel
    assert not panel.isVisible()
    _click(qtbot, view.plots, view.map_item, QPointF(60.5, 40.5))  # x, y
    qtbot.waitUntil(lambda: panel.explanation is not None and panel.isVisible(), timeout=30000)
    e = panel.explanation
    assert (e.layer, e.channel, e.y, e.x) == ("stem", 3, 40, 60)
    assert e.value == pytest.approx(float(view.channel_map[40, 60]), rel=1e-4)  # the value on screen
    reference = explain_position(window.state.model, window.state.result, "stem", 3, 40, 60)
    assert np.array_equal(panel.window_grid.values, reference.window[0])
    assert np.array_equal(panel.kernel_grid.values, reference.kernel[0])
    assert np.allclose(panel.products_grid.values, reference.window[0] * reference.kernel[0])
    assert panel.patch_grid.isVisible() and panel.patch_grid.colours.shape == (3, 3, 3)
    assert "equals the captured activation" in panel.steps.text()
    panel.channel_spin.setValue(2)  # the blue input channel
    assert np.array_equal(panel.kernel_grid.values, reference.kernel[2])

    # at the bottom edge the window hangs over TF "same" padding (one row, after)
    view.show_position(111, 0)
    qtbot.waitUntil(lambda: panel.explanation.y == 111, timeout=30000)
    assert panel.explanation.padded[2].all() and panel.window_grid.text_at(2, 0) == "0 pad"
    # another channel: the panel follows
    window.state.set_channel(4)
    qtbot.waitUntil(lambda: panel.explanation.channel == 4, timeout=30000)
    assert panel.explanation.matches
    window.state.set_layer("blocks.0.depthwise")
    assert not panel.isVisible()


def test_depthwise_one_by_one_and_pooling_panels(window, qtbot):
    _switch(qtbot, window, CHANNEL_TAB)
    view, panel = window.channel_view, window.arithmetic_panel
    window.state.set_layer("blocks.1.depthwise")
    window.state.set_channel(5)
    view.show_position(7, 9)
    qtbot.waitUntil(lambda: panel.explanation is not None and panel.explanation.layer == "blocks.1.depthwise",
                    timeout=30000)
    assert panel.explanation.input_channels == [5] and not panel.patch_grid.isVisible()
    assert not panel.channel_spin.isVisible() and panel.explanation.matches

    window.state.set_layer("blocks.1.project")  # 1x1: one product per input channel, as rows
    view.show_position(2, 3)
    qtbot.waitUntil(lambda: panel.explanation.layer == "blocks.1.project", timeout=30000)
    e, table = panel.explanation, panel.products_table
    n = len(e.input_channels)
    assert n == 96 and table.isVisible() and table.rowCount() == n
    assert not panel.window_grid.isVisible() and not panel.products_grid.isVisible()
    products = [float(table.item(row, 3).text()) for row in range(n)]
    assert all(abs(a) >= abs(b) for a, b in zip(products, products[1:]))  # the strongest first
    first = list(e.input_channels).index(table.shown_order()[0])
    assert products[0] == pytest.approx(float(e.window.reshape(n)[first] * e.kernel.reshape(n)[first]),
                                        rel=1e-3, abs=1e-6)
    assert float(table.item(n - 1, 4).text()) == pytest.approx(e.total, rel=1e-3, abs=1e-4)

    window.state.set_layer("pool")
    view.show_position(0, 0)
    qtbot.waitUntil(lambda: panel.explanation.layer == "pool", timeout=30000)
    assert panel.explanation.operation == "average" and not panel.kernel_grid.isVisible()
    assert panel.explanation.matches


def test_overview_strip_has_every_layer_and_selects_on_click(window, qtbot):
    strip = window.overview_strip
    qtbot.waitUntil(lambda: len(strip.tiles) == len(window.state.result.layers), timeout=30000)
    assert [t.layer for t in strip.tiles] == window.state.result.layers
    sides = [side for _x, side in strip.boxes]
    assert sides[0] > sides[-1]  # the shrinking is drawn
    x, side = strip.boxes[10]
    qtbot.mouseClick(strip.canvas, Qt.MouseButton.LeftButton, pos=QPoint(int(x + side / 2), 60))
    assert window.state.layer == strip.tiles[10].layer
    strip.set_reduction("mean")
    qtbot.waitUntil(lambda: strip.tiles and strip.tiles[0].channel == -1, timeout=30000)
    assert np.allclose(strip.tiles[0].map, window.state.result[strip.tiles[0].layer].mean(0).numpy())


def test_overview_size_labels_never_overlap_and_each_size_gets_one(window, qtbot):
    # ResNet's strip: conv1 alone at 112, then 56, 28, 14, 7 and the 1x1 pool; the
    # tiles as the strip lays them out, the labels measured in the strip's own font
    from types import SimpleNamespace

    from PySide6.QtGui import QFontMetrics

    from featurescope.core.analysis.overview import tile_side
    from featurescope.gui.views.overview_strip import GAP, LARGEST, SMALLEST, size_labels

    sizes = [112] + [56] * 5 + [28] * 5 + [14] * 5 + [7] * 5 + [1]
    tiles = [SimpleNamespace(shape=(64, s, s)) for s in sizes]
    boxes, x = [], GAP
    for s in sizes:
        side = tile_side(s, 224, LARGEST, SMALLEST)
        boxes.append((x, side))
        x += side + GAP
    metrics = QFontMetrics(window.overview_strip.canvas.font())
    labels = size_labels(boxes, tiles, metrics.horizontalAdvance)
    assert [text for _x, text in labels] == ["112x112", "56x56", "28x28", "14x14", "7x7", "1x1"]
    for (x0, text0), (x1, _) in zip(labels, labels[1:]):
        assert x0 + metrics.horizontalAdvance(text0) < x1, (text0, x0, x1)
    assert labels[1][0] > boxes[1][0]  # "56x56" waited for room after the 112 tile
    # and the strip is wide enough for its last label, "1x1" under a small pooling tile
    strip = window.overview_strip
    qtbot.waitUntil(lambda: len(strip.tiles) == len(window.state.result.layers), timeout=30000)
    last_x, last_text = size_labels(strip.boxes, strip.tiles, metrics.horizontalAdvance)[-1]
    assert strip.canvas.width() >= last_x + metrics.horizontalAdvance(last_text)


def test_playground_applies_the_kernel_and_finds_look_alikes(window, qtbot):
    from featurescope.core.analysis.playground import apply_kernel, grey, preset, similar_filters

    _switch(qtbot, window, PLAYGROUND_TAB)
    view = window.playground_view
    view.preset_combo.setCurrentText("Sobel y")
    assert np.array_equal(view.kernel(), preset("Sobel y"))
    view.stride_spin.setValue(2)
    view.pool_combo.setCurrentText("average")
    picture = grey(np.asarray(window.state.model.deprocess(window.state.result.input)))
    expected = apply_kernel(picture, preset("Sobel y"), 2, view.padding_spin.value(), 1, "average", 2, 2)
    assert np.allclose(view.output.convolved, expected.convolved)
    assert np.allclose(view.output.pooled, expected.pooled)
    assert np.allclose(view.conv_item.image, expected.convolved)
    assert expected.conv_formula in view.formula.text()
    found = similar_filters(window.state.model, preset("Sobel y"), top=len(view.similar))
    assert [f.channel for f in view.similar] == [f.channel for f in found]

    view.size_combo.setCurrentText("5x5")
    assert view.kernel().shape == (5, 5) and np.array_equal(view.kernel(), preset("Sobel y", 5))
    view.cells[0][0].setValue(3.0)  # an edit makes it the student's own
    assert view.preset_combo.currentText() == "(your own)" and view.kernel()[0, 0] == 3.0
    view.dilation_spin.setValue(4)
    view.padding_spin.setValue(0)
    view.stride_spin.setValue(1)
    assert view.output.convolved.shape[0] == 224 - 4 * 4  # floor((224 - 16 - 1) / 1) + 1


def test_switching_channels_off_matches_ablate(window, qtbot):
    from featurescope.core.analysis.ablate import ablate, strongest_channels

    window.state.set_layer("blocks.10.project")
    _switch(qtbot, window, ABLATION_TAB)
    view = window.ablation_view
    view.strongest_spin.setValue(20)
    view.tick_strongest()
    result = window.state.result
    assert view.checked() == sorted(strongest_channels(result, "blocks.10.project", 20))
    view.run_ablation()
    qtbot.waitUntil(lambda: view.ablation is not None, timeout=60000)
    reference = ablate(window.state.model, result, "blocks.10.project", view.checked())
    assert [(p.index, round(p.probability, 6)) for p in view.ablation.after] == \
        [(p.index, round(p.probability, 6)) for p in reference.after]
    assert view.table.rowCount() == len(reference.changes)
    assert view.table.item(0, 0).text() == max(reference.changes, key=lambda c: c.before).label
    assert view.later_combo.currentText() == "blocks.11.expand"
    assert view.after_item.image is not None and "changed most" in view.maps_note.text()
    window.state.set_layer("stem")
    assert view.ablation is None


def test_max_pooling_panel_outlines_the_winner(window, qtbot, wait_idle):
    window.request_model({"name": "resnet18", "weights": "none", "device": "cpu", "input_size": "64"})
    qtbot.waitUntil(lambda: window.state.model is not None and window.state.model.name == "resnet18",
                    timeout=60000)
    wait_idle(window)
    _switch(qtbot, window, CHANNEL_TAB)
    window.state.set_layer("maxpool")
    window.state.set_channel(7)
    panel = window.arithmetic_panel
    window.channel_view.show_position(0, 5)
    qtbot.waitUntil(lambda: panel.explanation is not None and panel.explanation.layer == "maxpool",
                    timeout=30000)
    e = panel.explanation
    assert e.operation == "max" and e.kernel_size == (3, 3) and not panel.kernel_grid.isVisible()
    c, i, j = e.winner
    assert panel.window_grid.highlight == (i, j)
    assert e.value == float(np.nanmax(e.window)) == pytest.approx(float(window.state.result["maxpool"][7, 0, 5]))
    assert e.padded[0].all()  # the top row is padding (-inf for max pooling)
    assert panel.window_grid.text_at(0, 0) == "pad"
