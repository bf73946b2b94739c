"""The Why view in the real main window: the ranked channels and deletion curves it shows
are the engine's, and a click opens the channel in the Channel tab."""
from __future__ import annotations

import numpy as np
import pytest

from featurescope.gui.main_window import CHANNEL_TAB


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    """The channels' feature visualisations are made into a cache of the test's own."""
    monkeypatch.setenv("FEATURESCOPE_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_why_view_shows_the_engines_ranking_and_curves_and_opens_a_channel(window, qtbot, wait_idle):
    from featurescope.core.analysis.attribution import attribute
    from featurescope.core.analysis.faithfulness import faithfulness

    view = window.why_view
    window.state.set_layer("head")
    window.tabs.setCurrentWidget(view)
    qtbot.waitUntil(lambda: view.answer is not None and view.answer.attribution.layer == "head",
                    timeout=60000)
    model, result = window.state.model, window.state.result
    expected = attribute(model, result.input, "head")
    found = view.answer.attribution
    assert found.target == result.predictions(1)[0].index
    np.testing.assert_allclose(found.channels, expected.channels, rtol=1e-5, atol=1e-6)
    shown = [view.for_list.item(i).data(256) for i in range(view.for_list.count())]  # UserRole
    assert shown == expected.top(12)
    against = [view.against_list.item(i).data(256) for i in range(view.against_list.count())]
    assert against and all(expected.channels[c] < 0 for c in against)
    assert not view.for_list.item(0).icon().isNull()  # the thumbnails are there
    # The curves are the deletion check's.
    curves = faithfulness(model, result.input, "head", expected)
    x, y = view.curves["top"].getData()
    np.testing.assert_allclose(y, curves.top, atol=1e-6)
    assert list(x) == list(range(len(curves.k)))
    assert f"AUC {curves.auc['random']:.3f}" in view.legend.getLabel(view.curves["random"]).text
    assert "Switching off the top 50 channels" in view.verdict.text()

    # Another class, from the top five; then integrated gradients.
    second = result.predictions(5)[1].index
    view.class_combo.setCurrentIndex(2)
    view.class_combo.activated.emit(2)
    qtbot.waitUntil(lambda: view.answer is not None and view.answer.attribution.target == second,
                    timeout=60000)
    view.set_method("integrated_gradients")
    qtbot.waitUntil(lambda: view.answer is not None
                    and view.answer.attribution.method == "integrated_gradients", timeout=60000)
    found = view.answer.attribution
    assert found.target == second
    assert abs(found.channels.sum() - (found.logit - found.baseline_logit)) < 0.01 * abs(found.logit - found.baseline_logit)

    # A click opens the channel in the Channel tab.
    item = view.for_list.item(1)
    channel = item.data(256)
    view.for_list.itemClicked.emit(item)
    assert window.tabs.currentIndex() == CHANNEL_TAB and window.state.channel == channel
    window.jobs.cancel("why_optvis")  # the channels' visualisations, still being made
    wait_idle(window)


def test_a_layer_without_channels_gets_a_sentence(window, qtbot, wait_idle):
    # (the classifier is no layer the app lists; asked for it anyway, the view says why not)
    view = window.why_view
    window.tabs.setCurrentWidget(view)
    key = ("classifier",)
    view._wanted = key
    view._submit(key, window.state.model, window.state.result, "classifier", None, "grad_x_act")
    qtbot.waitUntil(lambda: "does not output a feature map" in view.header.text(), timeout=60000)
    assert view.answer is None and view.for_list.count() == 0
    wait_idle(window)


def test_gradcam_view_method_selector_shows_that_methods_map(window, qtbot, wait_idle):
    from featurescope.core.analysis.gradcam import grad_cam
    from featurescope.gui.main_window import GRADCAM_TAB

    view = window.gradcam_view
    window.state.set_layer("head")
    window.tabs.setCurrentIndex(GRADCAM_TAB)
    qtbot.waitUntil(lambda: view.cam is not None and view.cam.layer == "head", timeout=60000)
    index = view.method_combo.findData("layercam")
    view.method_combo.setCurrentIndex(index)
    view.method_combo.activated.emit(index)
    qtbot.waitUntil(lambda: view.cam is not None and view.cam.method == "layercam", timeout=60000)
    model, result = window.state.model, window.state.result
    np.testing.assert_array_equal(view.overlay_item.image, grad_cam(model, result.input, "head", method="layercam"))
    assert view.header.text().startswith("Layer-CAM of ")
    wait_idle(window)
