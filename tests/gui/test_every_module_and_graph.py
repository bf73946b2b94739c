"""Every module in the layer list, "show after activation", and the Graph view."""
from __future__ import annotations

import numpy as np
import torch


def _pick(window, qtbot, wait_idle, layer):
    window.state.set_layer(layer)
    qtbot.waitUntil(lambda: window.grid_view.shown_key is not None
                    and window.state.layer == layer, timeout=60000)


def test_every_module_switch_lists_and_shows_blocks(window, qtbot, wait_idle):
    panel, state = window.layer_panel, window.state
    default = panel.layer_names()
    assert "stem_act" not in default and "blocks.0" not in default
    panel.every_module.setChecked(True)
    qtbot.waitUntil(lambda: "blocks.2" in (state.result.layers if state.result else []), timeout=60000)
    wait_idle(window)
    names = panel.layer_names()
    assert {"stem_bn", "stem_act", "blocks.2", "blocks"} <= set(names) and set(default) <= set(names)
    _pick(window, qtbot, wait_idle, "blocks.2")
    assert window.grid_view.shown_key[0] == "blocks.2"
    assert "MBConvBlock" in window.grid_view.title.text()
    assert "MBConvBlock" in window.layer_info_panel.text()
    _pick(window, qtbot, wait_idle, "stem_act")
    assert "activation" in window.layer_info_panel.text()
    panel.every_module.setChecked(False)
    qtbot.waitUntil(lambda: "blocks.2" not in state.result.layers, timeout=60000)
    wait_idle(window)
    assert panel.layer_names() == default


def test_after_activation_shows_what_the_next_layer_receives(window, qtbot, wait_idle):
    state, grid = window.state, window.grid_view
    module = state.model.module
    seen = {}
    handle = module.stem_act.register_forward_hook(lambda m, i, o: seen.setdefault("act", o.clone()))
    try:
        with torch.no_grad():
            module(state.result.input)
    finally:
        handle.remove()
    window.display_panel.after_activation.setChecked(True)
    qtbot.waitUntil(lambda: "stem_act" in state.result.layers, timeout=60000)
    wait_idle(window)
    assert "stem_act" not in window.layer_panel.layer_names()  # the list stays conv/pool
    qtbot.waitUntil(lambda: bool(window.overview_strip.tiles), timeout=60000)
    assert "stem_act" not in [t.layer for t in window.overview_strip.tiles]  # and the strip too
    state.set_layer("blocks.0.project")
    _pick(window, qtbot, wait_idle, "stem")
    qtbot.waitUntil(lambda: grid.shown_layer == "stem_act", timeout=60000)  # traced on the worker
    assert "after BatchNorm2d + ReLU6 (stem_act)" in grid.title.text()
    # the grid is the activation module's own output, captured by an independent hook
    from featurescope.core.render.grids import grid_indices
    from featurescope.core.render.options import grid_arguments

    expected, _layout = grid_indices(seen["act"][0].numpy(), **grid_arguments(state.display))
    np.testing.assert_array_equal(grid.image_item.image, expected)
    torch.testing.assert_close(state.result["stem_act"], seen["act"][0])
    # a convolution whose batch norm feeds no activation keeps its own output
    _pick(window, qtbot, wait_idle, "blocks.0.project")
    assert grid.shown_layer == "blocks.0.project" and "no activation follows" in grid.title.text()
    window.display_panel.after_activation.setChecked(False)
    _pick(window, qtbot, wait_idle, "stem")
    assert grid.shown_layer == "stem" and "after" not in grid.title.text()


def test_graph_view_draws_highlights_and_selects(window, qtbot, wait_idle):
    from featurescope.core.graph.dataflow import block_of

    view, state = window.graph_view, window.state
    window.tabs.setCurrentWidget(view)
    qtbot.waitUntil(lambda: view.graph is not None, timeout=60000)
    assert view.layout_ is not None and set(view._boxes) == {n.id for n in view.graph.nodes}
    assert view._highlighted == block_of(view.graph, state.layer)
    view.node_clicked("stem_bn")  # not a conv/pool layer: the list switches to every module
    assert state.every_module and state.layer == "stem_bn"
    qtbot.waitUntil(lambda: "stem_bn" in state.result.layers, timeout=60000)
    wait_idle(window)
    assert state.layer == "stem_bn" and view._highlighted == "stem_bn"
    blocks = [n for n in view.graph.nodes if n.is_block]
    assert blocks
    before = len(view.graph.nodes)
    view.node_double_clicked(blocks[-1].id)
    qtbot.waitUntil(lambda: len(view.graph.nodes) > before, timeout=60000)
    assert blocks[-1].label in view.expanded
