"""The Visualise tab: live preview, cancel, the cache, the atlas, the feature map beside it,
and a sentence for a network without gradients."""
from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("FEATURESCOPE_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def open_tab(window, qtbot, layer="blocks.8.project", steps=6, size=32, atlas=(2, 16)):
    from featurescope.gui.main_window import VISUALIZE_TAB

    view = window.visualize_view
    view.steps_spin.setValue(steps)
    view.size_spin.setValue(size)
    view.atlas_steps, view.atlas_size = atlas
    window.state.set_layer(layer)
    window.tabs.setCurrentIndex(VISUALIZE_TAB)
    assert window.jobs.is_idle()  # nothing runs before it is asked for
    qtbot.mouseClick(view.again_button, Qt.LeftButton)
    return view


def test_channel_preview_feature_map_and_cache(window, qtbot, cache_dir):
    view = open_tab(window, qtbot)
    view.follow_box.setChecked(True)  # asked: each channel selected gets visualised
    window.state.set_channel(3)
    qtbot.waitUntil(lambda: view.shown_key is not None and view.shown_key[2] == 3, timeout=60000)
    assert view.previews >= 1 and not view.from_cache
    shown = view.vis_item.image
    assert shown.shape == (32, 32, 3) and shown.dtype == np.uint8 and shown.std() > 1
    # beside it, the same channel's feature map for the photo
    expected = window.state.result["blocks.8.project"][3].numpy()
    np.testing.assert_array_equal(view.map_item.image, expected)
    # another channel, then back: the second look comes from the disk cache, same pixels
    window.state.set_channel(5)
    qtbot.waitUntil(lambda: view.shown_key[2] == 5, timeout=60000)
    window.state.set_channel(3)
    qtbot.waitUntil(lambda: view.shown_key[2] == 3, timeout=60000)
    assert view.from_cache and view.previews == 0
    np.testing.assert_array_equal(view.vis_item.image, shown)


def test_atlas_fills_in_and_a_click_selects_a_channel(window, qtbot, cache_dir):
    view = open_tab(window, qtbot, layer="stem", steps=2, size=16)
    assert not view.atlas_done
    qtbot.mouseClick(view.atlas_button, Qt.LeftButton)
    count = window.state.layer_info().out_channels
    qtbot.waitUntil(lambda: len(view.atlas_done) == count, timeout=120000)
    assert "32 of 32" in view.atlas_label.text()
    step = view.atlas_size + 2
    target = min(count - 1, view._atlas_columns + 2)
    row, column = divmod(target, view._atlas_columns)
    tile = view.atlas_item.image[row * step:row * step + view.atlas_size,
                                 column * step:column * step + view.atlas_size]
    assert tile.std() > 1  # a picture, not the empty grey
    channel = view.atlas_channel_at(column * step + 3, row * step + 3)
    assert channel == target
    # readable: a tile is drawn at least at its own size (480 fitted tiles were 7 px once)
    (left, right), _ = view.atlas_box.viewRange()
    assert view.atlas_box.width() / (right - left) >= 0.99
    view.state.set_channel(channel)
    assert view.channel_spin.value() == channel and view.atlas_marker.isVisible()


def test_cancel_keeps_the_preview_and_says_so(window, qtbot, cache_dir):
    view = open_tab(window, qtbot, steps=5000, size=24)
    view.follow_box.setChecked(True)
    window.state.set_channel(1)
    qtbot.waitUntil(lambda: view.previews >= 1, timeout=60000)
    qtbot.mouseClick(view.cancel_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: "Cancelled" in view.note.text(), timeout=30000)
    assert view.vis_item.image is not None and view.shown_key is None


def test_a_network_without_gradients_gets_a_sentence(qtbot, cache_dir, tmp_path):
    from featurescope.core.models.load import load_model
    from featurescope.gui.jobs.workers import JobRunner
    from featurescope.gui.model.state import AppState
    from featurescope.gui.views.visualize_view import VisualizeView

    source = tmp_path / "frozen.py"
    source.write_text(  # a wrapped runtime, say: its forward runs without autograd
        "import torch\nfrom torch import nn\n\nclass Frozen(nn.Module):\n"
        "    def __init__(self):\n        super().__init__()\n"
        "        self.body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3))\n\n"
        "    def forward(self, x):\n        with torch.no_grad():\n            return self.body(x)\n\n"
        "def make():\n    return Frozen()\n")
    model = load_model(f"{source}:make", weights="none", device="cpu")
    state, jobs = AppState(), JobRunner()
    view = VisualizeView(state, jobs=jobs, atlas_steps=1, atlas_size=16)
    qtbot.addWidget(view)
    view.steps_spin.setValue(2)
    view.size_spin.setValue(16)
    view.show()
    try:
        state.set_model(model)
        state.set_layer(model.layers[-1])
        view.start()
        view.start_atlas()
        qtbot.waitUntil(lambda: "gives no gradients" in view.note.text(), timeout=30000)
        qtbot.waitUntil(lambda: "gives no gradients" in view.atlas_label.text(), timeout=30000)
    finally:
        jobs.shutdown()


def test_hierarchy_rows_follow_the_photo(window, qtbot, cache_dir):
    from featurescope.core.optvis.hierarchy import strongest_channels

    view = open_tab(window, qtbot, layer="stem", steps=2, size=16)
    view.lower_tabs.setCurrentIndex(1)
    view.start_hierarchy(["stem", "blocks.8.project", "head"], per_layer=3)
    qtbot.waitUntil(lambda: len(view.hierarchy_rows) == 3, timeout=120000)
    assert [r.layer for r in view.hierarchy_rows] == ["stem", "blocks.8.project", "head"]
    head = view.hierarchy_rows[2].visualization
    assert head.channels == strongest_channels(window.state.model, window.state.image, "head", 3)
    assert view.hierarchy_item.image.shape[0] >= 3 * 48


def test_cancel_means_stopped_and_go_on_continues_from_that_step(window, qtbot, cache_dir):
    view = open_tab(window, qtbot, steps=400, size=24)
    qtbot.waitUntil(lambda: view.previews >= 2, timeout=60000)
    qtbot.mouseClick(view.cancel_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: "Cancelled at step" in view.note.text(), timeout=30000)
    stopped = view._stopped_step(view.key_now())
    assert stopped >= 2 * 8
    # another layer, another channel: nothing starts again (it used to restart)
    layers = list(window.state.result.layers)
    window.state.set_layer(layers[layers.index(window.state.layer) - 1])
    window.state.set_channel(2)
    qtbot.wait(200)
    assert window.jobs.is_idle() and view.wanted_key is None and not view.follow_box.isChecked()
    # back, and Visualise: it goes on from the step it stopped at, not from step 0
    window.state.set_layer("blocks.8.project")
    window.state.set_channel(0)
    steps = []
    window.jobs.job_progress.connect(lambda _rid, done, _total, _text: steps.append(done))
    qtbot.mouseClick(view.again_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: bool(steps), timeout=30000)
    assert steps[0] == stopped + 1
    view.cancel()
    qtbot.waitUntil(window.jobs.is_idle, timeout=30000)


def test_a_visualisation_does_not_follow_the_selection_unless_asked(window, qtbot, cache_dir):
    view = open_tab(window, qtbot, steps=4, size=16)
    qtbot.waitUntil(lambda: view.shown_key is not None, timeout=60000)
    window.state.set_channel(4)
    qtbot.wait(100)
    assert window.jobs.is_idle() and view.shown_key[2] == 0
    assert view.vis_item.image is None and "press Visualise" in view.vis_label.text
    window.state.set_channel(0)  # back: its picture is there again
    assert view.vis_item.image is not None


def test_build_atlas_shows_in_the_jobs_list_with_progress_and_cancel(window, qtbot, cache_dir):
    view = open_tab(window, qtbot, layer="stem", steps=200, size=16, atlas=(400, 16))
    view.cancel()
    qtbot.waitUntil(window.jobs.is_idle, timeout=30000)
    qtbot.mouseClick(view.atlas_button, Qt.LeftButton)
    jobs_list = window.job_status.jobs_list
    assert [t for t in jobs_list.labels() if t.startswith("Atlas of stem")]
    assert view.atlas_cancel_button.isEnabled()
    row = next(iter(jobs_list.rows.values()))
    qtbot.waitUntil(lambda: row[1].value() >= 1, timeout=120000)
    assert row[1].maximum() == 4 and len(view.atlas_done) >= 8  # 32 channels: 4 batches of 8
    row[2].click()  # Cancel in the jobs list
    assert row[0].text().startswith("Cancelling")
    qtbot.waitUntil(window.jobs.is_idle, timeout=60000)
    assert "cancelled at" in view.atlas_label.text() and not view.atlas_cancel_button.isEnabled()
    layers = list(window.state.result.layers)
    window.state.set_layer(layers[1])  # the next layer: no atlas starts by itself
    qtbot.wait(100)
    assert window.jobs.is_idle() and jobs_list.labels() == []


def test_the_hierarchy_build_is_in_the_jobs_list_and_its_cancel_stops_it(window, qtbot, cache_dir):
    view = open_tab(window, qtbot, layer="stem", steps=200, size=32)
    view.lower_tabs.setCurrentIndex(1)
    layers = ["stem", "blocks.4.project", "blocks.8.project", "head"]
    view.start_hierarchy(layers, per_layer=3)
    jobs = window.jobs
    qtbot.waitUntil(lambda: any(r.label.startswith("Hierarchy of 4 layers") for r in jobs.running()),
                    timeout=30000)
    request = next(r for r in jobs.running() if r.label.startswith("Hierarchy"))
    jobs.cancel_request(request.id)
    qtbot.waitUntil(lambda: "cancelled" in view.hierarchy_label.text(), timeout=60000)
    qtbot.waitUntil(jobs.is_idle, timeout=60000)
    assert len(view.hierarchy_rows) < len(layers)  # it stopped, and stays stopped
    qtbot.wait(300)
    assert len(view.hierarchy_rows) < len(layers) and jobs.running() == []


def test_a_visualisation_that_does_not_beat_a_photo_says_so(window, qtbot, cache_dir):
    view = open_tab(window, qtbot, layer="stem", steps=1, size=32)
    window.state.set_channel(0)
    qtbot.mouseClick(view.again_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: view.shown_key is not None and view.shown_key[2] == 0, timeout=60000)
    # one step from noise (then from the best sample photo) cannot beat that photo: the
    # picture is not passed off as what the channel looks for
    import re

    text = view.vis_label.text
    assert text.startswith("no picture found"), text
    reached, photo = (float(v) for v in re.findall(r"(-?[\d.]+(?:e-?\d+)?) does not beat a sample photo's (-?[\d.]+(?:e-?\d+)?)", text)[0])
    assert reached <= photo
    assert "no useful gradient" in view.note.text() and "more steps" in view.note.text()
