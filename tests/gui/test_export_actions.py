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
    assert sidecar["layer"] == state.layer and sidecar["model"]["name"] == "efficientnet_lite0"
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
    assert json.loads((tmp_path / "grid.json").read_text())["annotated"] is True


def test_export_activations_npz(window, dialogs, tmp_path, qtbot):
    target = tmp_path / "acts.npz"
    dialogs["target"] = target
    window.exports.export_activations_action.trigger()
    qtbot.waitUntil(lambda: window.jobs.is_idle() and target.exists(), timeout=30000)
    result = window.state.result
    assert json.loads((tmp_path / "acts.json").read_text())["npz"] == "acts.npz"
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


def test_cancel_export_all(window, dialogs, tmp_path, qtbot, monkeypatch):
    """Cancel while the first layer is being exported: the worker waits inside that
    layer's rendering until the Cancel button has been clicked, so the export can never
    finish first."""
    import threading

    from featurescope.core.io import export

    out = tmp_path / "cancelled"
    out.mkdir()
    dialogs["target"] = out
    reached, clicked = threading.Event(), threading.Event()
    real_render = export.render_grid

    def render_grid(chw, options):
        if not reached.is_set():
            reached.set()
            clicked.wait(30)
        return real_render(chw, options)

    monkeypatch.setattr(export, "render_grid", render_grid)
    window.exports.annotate_action.setChecked(False)
    window.exports.export_all_action.trigger()
    qtbot.waitUntil(reached.is_set, timeout=30000)
    qtbot.waitUntil(lambda: window.cancel_button.isVisibleTo(window), timeout=5000)
    window.cancel_button.click()
    clicked.set()
    qtbot.waitUntil(window.jobs.is_idle, timeout=30000)
    assert list(out.iterdir()) == []  # cancelled in the first layer: nothing at all
    assert "cancelled" in window.statusBar().currentMessage()


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
    from featurescope.core.io.writers import safe_filename

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


# --- export equals the screen; one title; Grad-CAM and comparison -------------------------


def _screen(window):
    """The grid view's picture: its ImageItem's index array through its lookup table."""
    view = window.grid_view
    return view.lut()[view.image_item.image], view.layout_


def test_exports_equal_the_screen_with_the_users_options(window, dialogs, tmp_path, qtbot):
    from featurescope.core.io.writers import safe_filename

    state, exports = window.state, window.exports
    exports.annotate_action.setChecked(False)
    state.set_layer(state.result.layers[5])
    state.set_display(colormap="plasma", normalize="layer", order="mean", columns=7,
                      clip_percentile=2.0, upscale=1)
    screen, layout = _screen(window)
    assert layout.columns == 7 and window.grid_view.shown_key[0] == state.layer
    dialogs["target"] = tmp_path / "grid.png"
    exports.export_grid_action.trigger()
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "grid.png")), screen)
    out = tmp_path / "selected"
    out.mkdir()
    dialogs["target"] = out
    exports.export_selected(layers=[state.layer])
    qtbot.waitUntil(window.jobs.is_idle, timeout=60000)
    exported = np.asarray(Image.open(out / f"{safe_filename(state.layer)}.png"))
    np.testing.assert_array_equal(exported, screen)
    meta = json.loads((out / "featurescope.json").read_text())
    assert meta["options"] == state.display.to_dict() and meta["grid"]["columns"] == 7


def test_annotated_exports_share_the_one_title(window, dialogs, tmp_path, qtbot):
    from featurescope.core.io.writers import safe_filename
    from featurescope.core.render.annotate import annotate_grid, grid_title

    state, exports = window.state, window.exports
    exports.annotate_action.setChecked(True)
    state.set_display(upscale=1, columns=None, clip_percentile=None)
    screen, layout = _screen(window)
    title = grid_title(state.layer, state.model)
    assert title.startswith(f"{state.layer} - efficientnet_lite0")
    expected = annotate_grid(screen, layout, title, upscale=1)
    dialogs["target"] = tmp_path / "grid.png"
    exports.export_grid_action.trigger()
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "grid.png")), expected)
    out = tmp_path / "selected"
    out.mkdir()
    dialogs["target"] = out
    exports.export_selected(layers=[state.layer])
    qtbot.waitUntil(window.jobs.is_idle, timeout=60000)
    annotated = out / f"{safe_filename(state.layer)}_annotated.png"
    np.testing.assert_array_equal(np.asarray(Image.open(annotated)), expected)


def test_export_grad_cam_writes_what_the_tab_shows(window, dialogs, tmp_path, qtbot):
    from featurescope.core.analysis.gradcam import compute_grad_cam, overlay
    from featurescope.core.io.provenance import PROVENANCE_KEYS

    state, exports = window.state, window.exports
    conv = [name for name in state.result.layers if state.result.info[name].kind == "Conv2d"][-1]
    state.set_layer(conv)
    exports.update_enabled()
    assert exports.export_gradcam_action.isEnabled()
    window.gradcam_view.opacity_slider.setValue(40)
    assert state.gradcam.opacity == 0.4  # the view writes the app model; the export reads it
    state.gradcam.set_opacity(0.4)
    dialogs["target"] = tmp_path / "cam.png"
    exports.export_gradcam_action.trigger()
    qtbot.waitUntil(lambda: window.jobs.is_idle() and (tmp_path / "cam.json").exists(), timeout=60000)
    cam = compute_grad_cam(state.model, state.result.input, conv)
    expected = overlay(state.model.deprocess(state.result.input), cam.map, colormap="inferno", alpha=0.4)
    written = np.asarray(Image.open(tmp_path / "cam.png").convert("RGB"))
    assert np.abs(written.astype(int) - expected.astype(int)).max() <= 1
    sidecar = json.loads((tmp_path / "cam.json").read_text())
    assert all(key in sidecar for key in PROVENANCE_KEYS)
    assert sidecar["class_index"] == cam.target and sidecar["layer"] == conv


def test_export_comparison_is_enabled_once_there_is_one(window, dialogs, tmp_path, qtbot):
    from featurescope.core.analysis.compare import shared_index_grids
    from featurescope.core.render.grids import colormap_lut
    from featurescope.core.resources import sample_images

    state, exports = window.state, window.exports
    exports.annotate_action.setChecked(False)
    exports.update_enabled()
    assert not exports.export_comparison_action.isEnabled()
    window.tabs.setCurrentWidget(window.compare_view)
    window.compare_view.set_image_b(str(sample_images()[-1]))
    qtbot.waitUntil(lambda: window.state.compare.comparison is not None, timeout=60000)
    qtbot.waitUntil(window.jobs.is_idle, timeout=60000)
    exports.update_enabled()
    assert exports.export_comparison_action.isEnabled()
    out = tmp_path / "compare"
    out.mkdir()
    dialogs["target"] = out
    state.set_display(colormap="gray", upscale=1)
    exports.export_comparison_action.trigger()
    qtbot.waitUntil(lambda: window.jobs.is_idle() and len(list(out.iterdir())) == 4, timeout=60000)
    comparison = window.state.compare.comparison
    pictures, _ = shared_index_grids(comparison)
    from featurescope.core.io.writers import safe_filename

    stem = safe_filename(comparison.layer)
    for key in ("a", "b", "difference"):
        written = np.asarray(Image.open(out / f"{stem}_{key}.png").convert("RGB"))
        np.testing.assert_array_equal(written, colormap_lut("gray")[pictures[key]])
    sidecar = json.loads((out / f"{stem}_compare.json").read_text())
    assert sidecar["model"]["name"] == "efficientnet_lite0"
    assert sidecar["image_b"]["name"] == sample_images()[-1].name


def test_export_all_runs_as_layer_units_that_an_opened_image_overtakes(window, dialogs, tmp_path,
                                                                        qtbot, monkeypatch):
    """Export all layers is one unit per layer in the background lane: an interactive
    request made while the first layer is written runs before the second layer."""
    import threading

    from featurescope.core.io import export

    out = tmp_path / "all"
    out.mkdir()
    dialogs["target"] = out
    order: list[str] = []
    reached, queued = threading.Event(), threading.Event()
    real_render = export.render_grid

    def render_grid(chw, options):
        order.append("layer")
        if not reached.is_set():
            reached.set()
            queued.wait(30)
        return real_render(chw, options)

    monkeypatch.setattr(export, "render_grid", render_grid)
    window.exports.annotate_action.setChecked(False)
    window.exports.export_all_action.trigger()
    qtbot.waitUntil(reached.is_set, timeout=30000)
    window.jobs.submit("image", lambda progress, cancel: order.append("image"))
    queued.set()
    qtbot.waitUntil(window.jobs.is_idle, timeout=60000)
    layers = len(window.state.result.layers)
    assert order[:3] == ["layer", "image", "layer"] and order.count("layer") == layers
    assert len(list(out.glob("*.png"))) == layers and (out / "featurescope.json").exists()
