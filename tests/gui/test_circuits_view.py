"""The Circuits tab: the ranking follows the selection, a click walks back, the trail exports."""
from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("FEATURESCOPE_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def open_tab(window, qtbot, layer, channel):
    view = window.circuits_view
    window.state.set_layer(layer)
    window.state.set_channel(channel)
    window.tabs.setCurrentIndex(window.tabs.indexOf(view))
    qtbot.waitUntil(lambda: view.shown is not None and view.shown.key[3] == (layer, channel), timeout=120000)
    return view


def test_ranking_matches_the_engine_and_a_click_walks_back(window, qtbot, cache_dir):
    import featurescope as fs

    view = open_tab(window, qtbot, "blocks.2.project", 5)
    shown = view.shown
    expected = fs.circuit(window.state.model, window.state.image, "blocks.2.project", 5, top=None,
                          check=False, weights=False)
    assert shown.source == expected.source == "blocks.2.expand"
    top = np.argsort(-expected.contributions)[:len(shown.excite)]
    assert [row.channel for row in shown.excite] == [int(i) for i in top]
    assert all(row.contribution > 0 for row in shown.excite)
    assert all(row.contribution < 0 for row in shown.inhibit)
    assert view.excite_table.rowCount() == len(shown.excite) > 0
    assert view.excite_table.item(0, 3).text() == str(shown.excite[0].channel)
    assert shown.excite[0].kernel_rgb is not None and shown.excite[0].map_rgb.ndim == 3
    assert "switching off 5 sources" in view.check_label.text()
    # what the sources look for: visualised in the background, one cell at a time
    qtbot.waitUntil(lambda: shown.excite[0].visualisation is not None, timeout=120000)
    assert view.excite_table.item(0, 1).icon().isNull() is False
    window.jobs.cancel("circuit_optvis")

    # a click on the strongest source makes it the target: the selection follows, the
    # trail grows by one crumb
    first = shown.excite[0].channel
    view._source_clicked(view.excite_table, 0)
    assert (window.state.layer, window.state.channel) == ("blocks.2.expand", first)
    qtbot.waitUntil(lambda: view.shown.key[3] == ("blocks.2.expand", first), timeout=120000)
    assert view.crumbs == [("blocks.2.project", 5), ("blocks.2.expand", first)]
    assert "blocks.2.project channel 5" in view.trail_label.text()
    # the first crumb leads back
    view._crumb_clicked("0")
    assert view.crumbs == [("blocks.2.project", 5)]
    assert (window.state.layer, window.state.channel) == ("blocks.2.project", 5)


def test_class_start_and_trail_export(window, qtbot, cache_dir, tmp_path):
    view = open_tab(window, qtbot, "blocks.1.project", 2)
    out = tmp_path / "trail.png"
    view.export_trail(str(out))
    qtbot.waitUntil(lambda: "Trail written" in view.note.text(), timeout=180000)
    from PIL import Image

    with Image.open(out) as picture:  # blocks.1.project -> ... -> stem: a few rows
        assert picture.height > 3 * 96 and picture.width > 400
    view.start_from_class()
    top = int(window.state.result.logits.argmax())
    qtbot.waitUntil(lambda: view.shown.key[3] == ("class", top), timeout=120000)
    assert view.shown.source == "head" and view.shown.label
    assert view.trail_label.text().startswith("Trail: <b>class")


def test_a_first_layer_says_nothing_feeds_it_and_keeps_no_rows_of_the_previous_channel(window, qtbot, cache_dir):
    view = open_tab(window, qtbot, "blocks.1.project", 2)
    assert view.excite_table.rowCount() > 0
    window.state.set_layer("stem")
    window.state.set_channel(3)
    qtbot.waitUntil(lambda: "Nothing captured feeds stem" in view.note.text(), timeout=120000)
    assert view.header.text() == "stem channel 3"  # no "ranking its inputs..." left behind
    assert view.excite_table.rowCount() == view.inhibit_table.rowCount() == 0
    window.jobs.cancel("circuit_optvis")
