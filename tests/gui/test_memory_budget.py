"""The capture memory budget in the app: layers left out come back when selected."""
from __future__ import annotations

import numpy as np

from featurescope.core.render.grids import grid_indices

BUDGET = 2 << 20  # 2 MiB: efficientnet_lite0 at 224 px needs ~26 MiB as float32


def test_layers_left_out_by_a_tiny_budget_come_back_when_selected(make_window, settings_path,
                                                                  qtbot, wait_idle, tmp_path):
    from featurescope.core.capture.capture import capture
    from featurescope.gui.app import open_settings as Settings

    settings = Settings(settings_path)
    settings.set_memory_budget(BUDGET)
    settings.sync()
    window = make_window()
    wait_idle(window)
    state, view = window.state, window.grid_view
    result = state.result
    assert result.missing and result.memory_budget == BUDGET
    assert state.layer in result  # the selected layer is kept first
    assert result.notice and window.statusBar().currentMessage() == result.notice
    assert window.model_panel.memory_budget.value() == 16  # the smallest the field shows (MB)
    # the background grids skip what the budget left out
    assert view._cache and all(key[0] in result for key in view._cache)

    missing = result.missing[-1]
    with qtbot.waitSignal(state.result_changed, timeout=30000):
        state.set_layer(missing)
        assert view.image_item.image is None and "memory budget" in view.title.text()
    wait_idle(window)
    assert state.layer == missing and missing in state.result
    options = state.display
    expected, _ = grid_indices(state.result[missing].numpy(), normalize=options.normalize,
                               order=options.order, columns=options.columns)
    np.testing.assert_array_equal(view.image_item.image, expected)
    full = capture(state.model, state.image)[missing].numpy()
    np.testing.assert_allclose(state.result[missing].numpy(), full, rtol=2e-3, atol=2e-3)


    # exporting a layer the budget left out captures it for the export
    left_out = [name for name in state.result.layers if name in state.result.missing][:2]
    assert left_out
    window.exports.export_selected(folder=tmp_path / "out", layers=left_out)
    qtbot.waitUntil(window.jobs.is_idle, timeout=30000)
    assert not window.banner.isVisible()
    with np.load(tmp_path / "out" / "activations.npz") as npz:
        assert sorted(npz.files) == sorted(left_out + ["input"])

def test_the_budget_field_captures_again_under_the_new_budget(make_window, settings_path,
                                                              qtbot, wait_idle):
    from featurescope.gui.app import open_settings as Settings

    settings = Settings(settings_path)
    settings.set_memory_budget(BUDGET)
    settings.sync()
    window = make_window()
    wait_idle(window)
    assert window.state.result.missing
    field = window.model_panel.memory_budget
    field.setValue(4096)
    with qtbot.waitSignal(window.state.result_changed, timeout=30000):
        field.editingFinished.emit()
    wait_idle(window)
    assert window.settings.memory_budget() == 4096 << 20
    assert window.state.result.complete and window.state.result.notice == ""

