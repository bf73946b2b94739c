"""Every export through patched dialogs: files really written, readable, and equal to the engine's."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QFileDialog, QMessageBox

from featurescope.core.render.grids import feature_grid


@pytest.fixture
def dialogs(monkeypatch):
    """Patch the file dialogs and the overwrite question; record what was asked."""
    asked = {"save": [], "folder": [], "question": [], "answer": QMessageBox.Yes}

    def save(parent, title, start, filters, *rest):
        asked["save"].append(start)
        return str(asked["target"]), filters

    def folder(parent, title, start, *rest):
        asked["folder"].append(start)
        return str(asked["target"])

    def question(parent, title, text, *rest):
        asked["question"].append(text)
        return asked["answer"]

    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(save))
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", staticmethod(folder))
    monkeypatch.setattr(QMessageBox, "question", staticmethod(question))
    return asked


def test_export_grid_png_and_sidecar_then_overwrite_only_when_asked(window, dialogs, tmp_path):
    exports, state = window.exports, window.state
    exports.annotate_action.setChecked(False)
    state.set_display(colormap="magma", upscale=2)
    target = tmp_path / "grid.png"
    dialogs["target"] = target
    exports.export_grid_action.trigger()
    png = np.asarray(Image.open(target).convert("RGB"))
    np.testing.assert_array_equal(png, feature_grid(state.result[state.layer], colormap="magma", upscale=2))
    sidecar = json.loads((tmp_path / "grid.json").read_text())
    assert sidecar["layer"] == state.layer and sidecar["model"] == "efficientnet_lite0"
    assert sidecar["options"]["colormap"] == "magma" and sidecar["options"]["upscale"] == 2
    assert sorted(sidecar["channel_order"]) == list(range(state.result[state.layer].shape[0]))
    assert dialogs["question"] == []
    # the dialog starts in the folder used last time
    exports.export_grid_action.trigger()
    assert dialogs["save"][-1].startswith(str(tmp_path))

    # exists: asked; "No" leaves the file alone, "Yes" replaces it
    dialogs["answer"] = QMessageBox.No
    target.write_bytes(b"keep me")
    exports.export_grid_action.trigger()
    assert dialogs["question"] and target.read_bytes() == b"keep me"
    dialogs["answer"] = QMessageBox.Yes
    exports.annotate_action.setChecked(True)
    exports.export_grid_action.trigger()
    annotated = np.asarray(Image.open(target).convert("RGB"))
    assert annotated.shape[0] > png.shape[0]  # a title bar above the grid
    assert json.loads((tmp_path / "grid.json").read_text())["options"]["annotated"] is True


def test_export_activations_npz(window, dialogs, tmp_path, qtbot):
    target = tmp_path / "acts.npz"
    dialogs["target"] = target
    window.exports.export_activations_action.trigger()
    qtbot.waitUntil(lambda: window.jobs.is_idle() and target.exists(), timeout=30000)
    result = window.state.result
    with np.load(target) as data:
        assert set(data.files) == set(result.layers) | {"input"}
        np.testing.assert_array_equal(data[result.layers[3]], result[result.layers[3]].numpy())
        np.testing.assert_array_equal(data["input"], result.input.numpy())


def test_export_all_layers_in_the_background(window, dialogs, tmp_path, qtbot):
    out = tmp_path / "all"
    out.mkdir()
    dialogs["target"] = out
    window.exports.annotate_action.setChecked(False)
    busy = []
    window.jobs.busy_changed.connect(lambda b, label: busy.append(label))
    window.exports.export_all_action.trigger()
    qtbot.waitUntil(window.jobs.is_idle, timeout=60000)
    assert any(label.startswith("Exporting") for label in busy)
    result = window.state.result
    pngs = sorted(out.glob("*.png"))
    assert len(pngs) == len(result.layers)
    assert (out / "activations.npz").is_file() and (out / "featurescope.json").is_file()
    assert "Wrote" in window.statusBar().currentMessage()
    # again: asked before overwriting, then forced
    dialogs["answer"] = QMessageBox.Yes
    window.exports.export_all_action.trigger()
    qtbot.waitUntil(window.jobs.is_idle, timeout=60000)
    assert len(dialogs["question"]) == 1 and "more already exist" in dialogs["question"][0]
    assert not window.banner.isVisible()
    assert "Wrote" in window.statusBar().currentMessage()


def test_cancel_export_all(window, dialogs, tmp_path, qtbot):
    out = tmp_path / "cancelled"
    out.mkdir()
    dialogs["target"] = out
    window.exports.export_all_action.trigger()
    assert window.cancel_button.isVisibleTo(window)
    window.cancel_button.click()
    qtbot.waitUntil(window.jobs.is_idle, timeout=30000)
    written = list(out.glob("*.png"))
    assert len(written) < len(window.state.result.layers)
    assert not list(out.glob("*.tmp*"))


def test_copy_grid_to_clipboard(window):
    state = window.state
    state.set_display(upscale=1)
    window.exports.annotate_action.setChecked(False)
    window.exports.copy_action.trigger()
    image = QGuiApplication.clipboard().image()
    expected = feature_grid(state.result[state.layer], colormap=state.display.colormap)
    assert (image.height(), image.width()) == expected.shape[:2]
    pixel = image.pixelColor(expected.shape[1] // 3, expected.shape[0] // 3)
    assert (pixel.red(), pixel.green(), pixel.blue()) == tuple(expected[expected.shape[0] // 3, expected.shape[1] // 3])


def _click(qtbot, tree, row, modifier=Qt.NoModifier):
    item = tree.topLevelItem(row)
    tree.scrollToItem(item)
    qtbot.mouseClick(tree.viewport(), Qt.LeftButton, modifier, tree.visualItemRect(item).center())


def test_export_selected_layers_annotated_in_one_go(window, dialogs, tmp_path, qtbot):
    """Journey 4: pick five layers with Ctrl/Shift-click, export their annotated grids."""
    from featurescope.core.io.export import safe_filename

    state, tree, panel = window.state, window.layer_panel.tree, window.layer_panel
    layers = list(state.result.layers)
    _click(qtbot, tree, 0)
    _click(qtbot, tree, 2, Qt.ShiftModifier)  # 0, 1, 2
    _click(qtbot, tree, 6, Qt.ControlModifier)
    _click(qtbot, tree, 4, Qt.ControlModifier)  # the current layer is the last clicked
    assert state.layer == layers[4] and window.grid_view.shown_key[0] == layers[4]
    chosen = [layers[i] for i in (0, 1, 2, 4, 6)]
    assert panel.selected_layers() == chosen
    assert window.exports.export_selected_action in tree.actions()  # right-click menu

    out = tmp_path / "five"
    out.mkdir()
    dialogs["target"] = out
    window.exports.annotate_action.setChecked(True)
    state.set_display(colormap="magma", upscale=2)
    busy = []
    window.jobs.busy_changed.connect(lambda b, label: busy.append(label))
    window.exports.export_selected_action.trigger()
    qtbot.waitUntil(window.jobs.is_idle, timeout=60000)
    assert "Exporting 5 layers to five" in busy
    names = sorted(p.name for p in out.glob("*.png"))
    assert len(names) == 10 and sum(n.endswith("_annotated.png") for n in names) == 5
    grid = np.asarray(Image.open(out / f"{safe_filename(layers[6])}.png").convert("RGB"))
    sidecar = json.loads((out / "featurescope.json").read_text())
    assert [record["name"] for record in sidecar["layers"]] == chosen
    with np.load(out / "activations.npz") as npz:
        assert sorted(npz.files) == sorted(chosen + ["input"])
        np.testing.assert_array_equal(npz[layers[6]], state.result[layers[6]].numpy())
    np.testing.assert_array_equal(grid, feature_grid(state.result[layers[6]], colormap="magma", upscale=2))

    # plain arrows still move one layer at a time, and the selection follows
    tree.setFocus()
    qtbot.keyClick(tree, Qt.Key_Down)
    assert state.layer == layers[5] and panel.selected_layers() == [layers[5]]
