"""File > Build atlas... in the real window: a folder with sub-folders is indexed and drawn
in the background, the site written, Cancel writes what is done, and the site opens in
the browser."""
from __future__ import annotations

import json

from featurescope.core.atlas.units import AtlasSettings
from featurescope.gui.widgets.atlas_dialog import AtlasRequest

SMALL = AtlasSettings(steps=2, size=32, top=2)


def test_build_an_atlas_from_a_folder_in_the_background(window, qtbot, tmp_path, concept_folder, monkeypatch):
    folder = concept_folder(tmp_path / "images", per_kind=2)
    layer = window.state.model.layers[0]
    statuses = []
    monkeypatch.setattr(window.atlas, "show_status", statuses.append)
    window.atlas.build(AtlasRequest(str(folder), [layer], "0-2", 2, str(tmp_path / "site")), SMALL)
    qtbot.waitUntil(lambda: window.atlas.site is not None, timeout=120000)
    data = json.loads((tmp_path / "site" / "atlas.json").read_text())
    assert [unit["channel"] for unit in data["layers"][0]["units"]] == [0, 1, 2]
    assert data["model"]["index"]["groups"] == ["blobs", "rings", "stripes"]
    assert any(text.startswith("Atlas: ") and "units/s" in text for text in statuses)  # progress
    opened = []
    monkeypatch.setattr("featurescope.gui.atlas_actions.QDesktopServices.openUrl",
                        lambda url: opened.append(url.toLocalFile()) or True)
    assert window.atlas.open_action.isEnabled()
    window.atlas.open_action.trigger()
    assert opened == [str(tmp_path / "site" / "index.html")]


def test_cancel_stops_the_atlas_and_writes_what_is_done(window, qtbot, tmp_path, concept_folder, monkeypatch):
    folder = concept_folder(tmp_path / "images", per_kind=1)
    layer = window.state.model.layers[0]
    statuses = []
    monkeypatch.setattr(window.atlas, "show_status", statuses.append)
    # once the first piece is drawn, cancel: the rest of the 32 units are not drawn
    window.atlas.build(AtlasRequest(str(folder), [layer], "all", 2, str(tmp_path / "site")), SMALL)
    qtbot.waitUntil(lambda: any(t.startswith("Atlas: ") for t in statuses), timeout=120000)
    window.atlas.cancel()
    qtbot.waitUntil(lambda: window.atlas.site is not None, timeout=60000)
    assert any("Atlas stopped" in t for t in statuses)
    data = json.loads((tmp_path / "site" / "atlas.json").read_text())
    units = data["layers"][0]["units"]
    assert len(units) == window.state.model.layer_info[0].out_channels
    assert 0 < sum(1 for u in units if u["visualization"]) < len(units)


def test_labels_from_sub_folders_show_in_the_examples_tab_and_the_channel_header(
        window, qtbot, tmp_path, concept_folder):
    from featurescope.core.atlas.labels import unit_labels

    folder = concept_folder(tmp_path / "images", per_kind=2)
    view = window.examples_view
    view.workers = 0
    layer = window.state.model.layers[3]
    window.state.set_layer(layer)
    view.build(str(folder), str(tmp_path / "concepts.fsindex"), top=2, batch_size=4)
    qtbot.waitUntil(lambda: not view.building and view.index is not None, timeout=120000)
    assert window.state.index is view.index
    labels = unit_labels(view.index, layer)
    labelled = [c for c, unit in enumerate(labels) if unit.label]
    assert labelled, "the concepts should give some unit a label"
    c = labelled[0]
    view.redraw()  # the tab draws itself when shown; the list is what is checked here
    assert view.channel_list.item(c).text().endswith(f"{labels[c].label} ({labels[c].selectivity:.2f})")
    window.state.set_channel(c)
    window.channel_view.redraw()  # drawn when shown (TabPage); the header is what is checked
    assert f"; {labels[c].label} (selectivity {labels[c].selectivity:.2f})" in window.channel_view.header.text()
