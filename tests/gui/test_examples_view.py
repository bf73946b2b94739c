"""The Examples tab in the real window: build in the background with progress and cancel,
top crops per channel, dead channels marked, another model's index named, a crop opened
in the Channel tab with its position pinned."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image
from PySide6.QtCore import QEvent, QPointF
from PySide6.QtWidgets import QApplication, QFileDialog

from featurescope.core.index.store import open_index

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "core"))
from test_index import make_folder  # noqa: E402


def _built(qtbot, view, folder, output, **kwargs):
    view.workers = 0  # decoding in the worker thread: no processes spawned in tests
    view.build(str(folder), str(output), **kwargs)
    assert view.building
    qtbot.waitUntil(lambda: not view.building and view.index is not None, timeout=120000)
    return view.index


def _photos_indexed(window, qtbot, tmp_path):
    """The Examples view with an index of a small folder (top 3) built for layer 5."""
    from featurescope.gui.main_window import EXAMPLES_TAB

    folder = make_folder(tmp_path / "photos")
    view = window.examples_view
    window.tabs.setCurrentIndex(EXAMPLES_TAB)
    layer = window.state.model.layers[5]
    window.state.set_layer(layer)
    index = _built(qtbot, view, folder, tmp_path / "photos.fsindex", top=3, batch_size=4)
    return view, layer, index


def test_build_show_hover_and_open_an_example(window, qtbot, tmp_path):
    from featurescope.gui.main_window import CHANNEL_TAB

    view, layer, index = _photos_indexed(window, qtbot, tmp_path)
    assert index.complete and index.images == 11 and len(index.skipped) == 3
    assert open_index(tmp_path / "photos.fsindex").complete
    assert not view.notice.isVisible()  # built with the loaded model

    # the selected layer's channels are listed; the first channel's crops are shown
    assert view.channel_list.count() == index.topk[layer].values.shape[0]
    qtbot.waitUntil(lambda: view.crops.count() == 3)
    assert [e.path for e in view.examples] == [e.path for e in index.top(layer, 0, 3)]

    # hovering another channel shows its examples
    view.channel_list.itemEntered.emit(view.channel_list.item(4))
    qtbot.waitUntil(lambda: view.shown_channel == 4 and view.examples == index.top(layer, 4, 3))
    # moving on towards the crops crosses other rows: channel 4's crops stay
    view.channel_list.itemEntered.emit(view.channel_list.item(5))
    view.channel_list.itemEntered.emit(view.channel_list.item(6))
    QApplication.sendEvent(view.channel_list.viewport(), QEvent(QEvent.Type.Leave))
    qtbot.wait(400)
    assert view.shown_channel == 4

    # a crop opens its image with the layer and channel selected and the position pinned
    best = index.top(layer, 4, 3)[0]
    view.open_example(0)
    assert window.tabs.currentIndex() == CHANNEL_TAB
    qtbot.waitUntil(lambda: window.state.image_source == best.path and window.state.result is not None
                    and window.channel_view.pinned == best.position, timeout=60000)
    assert window.state.layer == layer and window.state.channel == 4
    # the pinned position is where the channel's map is largest on that image
    fmap = window.state.result[layer][4].numpy()
    assert fmap[best.position] == np.float32(fmap.max()) or abs(fmap[best.position] - fmap.max()) < 1e-4


def test_dead_channels_are_marked_and_another_models_index_is_named(window, qtbot, tmp_path):
    from featurescope.core.index.build import build_index
    from featurescope.core.models.load import load_model
    from featurescope.gui.main_window import EXAMPLES_TAB

    folder = tmp_path / "few"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (70, 90, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    other = load_model("resnet18", weights="none", device="cpu", input_size=64)
    index = build_index(other, folder, layers=["conv1", "layer1.0.conv1"], top=2, workers=0)
    index.topk["conv1"].positive[[1, 5]] = 0  # as if channels 1 and 5 never fired
    view = window.examples_view
    window.tabs.setCurrentIndex(EXAMPLES_TAB)
    window.state.set_layer(window.state.model.layers[0])
    view.set_index(index)
    assert view.notice.isVisible()
    assert "resnet18 (untrained)" in view.notice.text() and "efficientnet_lite0" in view.notice.text()
    assert "no layer" in view.header.text()  # Lite0's layer is not in this index
    assert view.channel_list.count() == 0

    window.state.set_model(other)  # the index's own model: the sentence goes
    assert not view.notice.isVisible()
    window.state.set_layer("conv1")
    qtbot.waitUntil(lambda: view.channel_list.count() == 64)
    assert view.dead_rows() == index.dead_channels("conv1") == [1, 5]


def test_cancel_keeps_what_was_read_and_the_next_build_resumes(window, qtbot, tmp_path):
    from featurescope.gui.main_window import EXAMPLES_TAB

    folder = tmp_path / "many"
    folder.mkdir()
    rng = np.random.default_rng(3)
    for i in range(40):
        Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(folder / f"{i:02d}.png")
    view = window.examples_view
    view.workers = 0
    window.tabs.setCurrentIndex(EXAMPLES_TAB)
    output = tmp_path / "many.fsindex"
    view.build(str(folder), str(output), top=2, batch_size=2)
    qtbot.waitUntil(lambda: view.progress.value() >= 4, timeout=60000)
    assert view.progress.text().endswith("of 40 images")  # images, not batches
    view.cancel_build()
    assert view.progress_text.text().startswith("Cancelling") and not view.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: not view.building, timeout=60000)
    partial = open_index(output)
    read = int((partial.files["state"] != 0).sum())
    assert not partial.complete and 0 < read < 40
    assert "not finished" in view.index_label.text()

    index = _built(qtbot, view, folder, output, top=2, batch_size=8)
    assert index.complete and index.images == 40


def test_hovering_a_channel_of_the_feature_grid_shows_its_examples(window, qtbot, tmp_path):
    from featurescope.core.index.build import build_index

    folder = tmp_path / "few"
    folder.mkdir()
    for i in range(4):
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (60, 80, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    layer = window.state.model.layers[2]
    window.state.set_layer(layer)
    index = build_index(window.state.model, folder, layers=[layer], top=3, workers=0)
    view = window.examples_view
    view.set_index(index)
    # the grid says which channel the mouse is on (the first tile: channel 0)
    grid = window.grid_view
    window.tabs.setCurrentIndex(0)
    qtbot.waitUntil(lambda: grid.image_item.image is not None, timeout=30000)
    grid.fit()
    rect = grid.image_item.sceneBoundingRect()
    with qtbot.waitSignal(grid.channel_hovered, timeout=3000) as hovered:
        grid._on_mouse_moved((QPointF(rect.left() + 2, rect.top() + 2),))
    assert hovered.args == [0]
    qtbot.waitUntil(lambda: "channel 0" in view.preview_text, timeout=30000)
    grid.channel_hovered.emit(7)
    qtbot.waitUntil(lambda: "channel 7" in view.preview_text, timeout=30000)
    source = view.preview_text.split('src="')[1].split('"')[0]
    from urllib.parse import unquote, urlparse

    with Image.open(unquote(urlparse(source).path)) as strip:
        assert strip.width == 3 * (72 + 4) + 4  # the three crops side by side
    window.grid_view.channel_hovered.emit(-1)
    assert view.preview_text == ""


def test_the_index_goes_to_the_data_folder_never_into_the_photos(window, qtbot, tmp_path, monkeypatch):
    from featurescope.core.index.walk import default_index_path

    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(3):
        Image.new("RGB", (40, 30), (60 * i, 20, 90)).save(folder / f"{i}.png")
    view = window.examples_view
    view.workers = 0
    data = tmp_path / "data"
    monkeypatch.setattr(view, "data_folder", lambda: data)
    asked = {}

    def save_dialog(_parent, _title, start, _filter):
        asked["start"] = start
        return start, ""

    monkeypatch.setattr(QFileDialog, "getExistingDirectory", staticmethod(lambda *a, **k: str(folder)))
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(save_dialog))
    view.build_index_dialog()
    qtbot.waitUntil(lambda: not view.building, timeout=60000)
    assert asked["start"] == str(default_index_path(folder, data))
    assert Path(asked["start"]).parent == data / "indexes" and Path(asked["start"]).is_file()
    assert sorted(p.name for p in folder.iterdir()) == ["0.png", "1.png", "2.png"]
    other = tmp_path / "elsewhere" / "photos"
    assert default_index_path(other, data) != default_index_path(folder, data)  # same name, own file


def test_a_deleted_or_edited_example_is_named_not_drawn_as_a_plain_tile(window, qtbot, tmp_path):
    view, layer, index = _photos_indexed(window, qtbot, tmp_path)
    best = index.top(layer, 2, 3)
    Path(best[0].path).unlink()  # deleted since indexing
    Image.new("RGB", (40, 30), (0, 0, 0)).save(best[1].path)  # replaced by another picture
    view.show_channel(2)
    qtbot.waitUntil(lambda: view.shown_channel == 2 and view.crops.count() == 3, timeout=30000)
    captions = [view.crops.item(i).text() for i in range(3)]
    assert captions[0].startswith("#1 missing") and captions[1].startswith("#2 changed")
    assert "missing" not in captions[2] and "changed" not in captions[2]
    assert "2 of 3 examples changed since indexing" in view.header.text()
    assert Path(best[0].path).name in view.header.text()
