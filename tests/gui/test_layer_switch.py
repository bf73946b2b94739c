"""A layer switch only displays: statistics come from the worker, hidden views wait."""
from __future__ import annotations

import threading

import numpy as np


def test_layer_statistics_are_computed_on_the_worker_not_on_a_switch(window, qtbot, wait_idle,
                                                                     monkeypatch):
    from featurescope.core.analysis import compare, gradcam, stats
    from featurescope.core.render import filters

    calls: dict[str, list] = {"histogram": [], "dead": [], "hidden views": []}
    real_histogram, real_dead = stats.activation_histogram, stats.dead_channels

    def histogram(*args, **kwargs):
        calls["histogram"].append(threading.current_thread())
        return real_histogram(*args, **kwargs)

    def dead(*args, **kwargs):
        calls["dead"].append(threading.current_thread())
        return real_dead(*args, **kwargs)

    def hidden(name):
        def record(*args, **kwargs):
            calls["hidden views"].append(name)
            raise AssertionError(f"{name} ran for a hidden tab")
        return record

    monkeypatch.setattr(stats, "activation_histogram", histogram)
    monkeypatch.setattr(stats, "dead_channels", dead)
    monkeypatch.setattr(compare, "compare_layer", hidden("compare_layer"))
    monkeypatch.setattr(filters, "filter_grid", hidden("filter_grid"))
    monkeypatch.setattr(gradcam, "compute_grad_cam", hidden("compute_grad_cam"))

    window.tabs.setCurrentIndex(0)
    window.request_capture()  # a fresh capture: every statistic is computed again
    wait_idle(window)
    result, panel = window.state.result, window.layer_info_panel
    layers = list(result.layers)
    # a capture's statistics follow it at most twice a second (the live-video throttle)
    qtbot.waitUntil(lambda: len(calls["histogram"]) >= len(layers), timeout=30000)
    wait_idle(window)
    assert len(calls["histogram"]) == len(layers)  # once per layer, in the background
    before = len(calls["histogram"])
    for layer in layers[::-1] + layers:
        window.state.set_layer(layer)
        counts, edges = real_histogram(result[layer], 64)
        np.testing.assert_array_equal(panel.histogram[0], counts)
        np.testing.assert_array_equal(panel.histogram[1], edges)
        np.testing.assert_array_equal(panel.dead, real_dead(result[layer]))
        assert window.grid_view.shown_key[0] == layer
    assert len(calls["histogram"]) == before  # switching computed nothing
    main = threading.main_thread()
    assert calls["histogram"] and all(t is not main for t in calls["histogram"] + calls["dead"])
    assert calls["hidden views"] == []


def test_a_layer_without_statistics_yet_shows_them_when_the_worker_has_them(window, qtbot):
    panel, state = window.layer_info_panel, window.state
    layer = state.result.layers[-1]
    panel.stats.keep_only(None)  # forget everything, as right after a capture
    state.set_layer(layer)
    assert panel.histogram is None and "computing" in panel.histogram_plot.plotItem.titleLabel.text
    qtbot.waitUntil(lambda: panel.histogram is not None, timeout=20000)
    assert "Dead channels" in panel.text()
