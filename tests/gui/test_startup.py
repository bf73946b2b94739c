"""Start-up as a new user meets it: failing models, own models from the command line,
the window before torch, trusted pickles, and readouts that follow what is shown."""
from __future__ import annotations

import os
import subprocess
import sys
from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from PySide6.QtCore import QPointF

from featurescope.gui.app import open_settings as Settings

# An own model for 32x32 pictures: two convolutions, 10 classes (a CIFAR-sized net).
SMALL_NET = '''
import torch.nn as nn

def Net():
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))
'''
BROKEN_NET = '''
def Net():
    raise RuntimeError("this network cannot be built")
'''


def _idle(qtbot, window, timeout=60000):
    qtbot.waitUntil(lambda: window.jobs.is_idle() and window.state.result is not None, timeout=timeout)


def _photo(path: Path, size=(80, 60)) -> Path:
    image = Image.new("RGB", size, (200, 30, 30))
    image.paste((20, 20, 220), (0, 0, size[0] // 2, size[1] // 2))
    image.save(path)
    return path


# --- 1: a model that fails at start-up -------------------------------------------------

def test_a_model_that_fails_at_start_falls_back_to_lite0_and_keeps_its_sentence(make_window, qtbot, tmp_path):
    (tmp_path / "broken.py").write_text(BROKEN_NET)
    window = make_window(start=False)
    # the model job fails first, the image arrives after it: it must not wipe the sentence
    window.start(image=str(_photo(tmp_path / "p.png")), model=f"{tmp_path / 'broken.py'}:Net")
    _idle(qtbot, window)
    assert window.state.model.name == "efficientnet_lite0"
    assert window.state.result is not None and window.state.layer
    assert window.banner.isVisible()
    assert "this network cannot be built" in window.banner.text()
    assert window.model_jobs.model_error == window.banner.text()
    # the settings still ask for the model the user named? no: it never loaded, so not stored
    assert window.settings.model_spec()["name"] == "efficientnet_lite0"
    assert window.grid_view.image_item.image is not None  # the fallback's grid is drawn


def test_a_fallback_notice_says_so_in_the_status_bar(make_window, qtbot, tmp_path):
    window = make_window(start=False)
    messages = []
    window.statusBar().messageChanged.connect(messages.append)
    window.start(model=str(tmp_path / "gone.py") + ":Net")
    _idle(qtbot, window)
    assert any("gone.py did not load; showing efficientnet_lite0 (embedded) instead." == m for m in messages)
    assert "gone.py" in window.banner.text()


def test_a_user_model_load_that_works_takes_the_start_error_away(make_window, qtbot, tmp_path):
    (tmp_path / "small.py").write_text(SMALL_NET)
    window = make_window(start=False)
    window.start(model=str(tmp_path / "missing.py") + ":Net")
    _idle(qtbot, window)
    assert window.banner.isVisible()
    old = window.state.result
    window.request_model({"name": f"{tmp_path / 'small.py'}:Net", "weights": "none", "device": "cpu",
                          "input_size": "32", "mean": "", "std": ""})
    qtbot.waitUntil(lambda: window.state.result is not old and window.state.result is not None
                    and window.jobs.is_idle(), timeout=30000)
    assert not window.banner.isVisible()


# --- 2 and 3: own models from the command line ------------------------------------------

def test_own_model_with_input_size_from_the_command_line_is_remembered_absolute(
        make_window, qtbot, tmp_path, monkeypatch, settings_path):
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "nets.py").write_text(SMALL_NET)
    monkeypatch.chdir(folder)
    window = make_window(start=False)
    window.start(image=str(_photo(tmp_path / "p.png")), model="nets.py:Net", weights="none",
                 input_size=(32, 32), mean="0.5,0.5,0.5", std=(0.25, 0.25, 0.25))
    _idle(qtbot, window)
    assert not window.banner.isVisible(), window.banner.text()
    assert tuple(window.state.result.input.shape[-2:]) == (32, 32)
    assert tuple(window.state.result["0"].shape) == (6, 32, 32)
    spec = window.settings.model_spec()
    assert spec["name"] == f"{folder / 'nets.py'}:Net"
    assert (spec["input_size"], spec["mean"], spec["std"]) == ("32x32", "0.5,0.5,0.5", "0.25,0.25,0.25")
    window.close()

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    again = make_window(start=False)
    again.start()
    _idle(qtbot, again)
    assert not again.banner.isVisible(), again.banner.text()
    assert again.state.model.name != "efficientnet_lite0"
    assert tuple(again.state.result.input.shape[-2:]) == (32, 32)
    again.close()

    (folder / "nets.py").unlink()  # a remembered model that no longer loads
    third = make_window(start=False)
    third.start()
    _idle(qtbot, third)
    assert third.state.model.name == "efficientnet_lite0"
    assert "nets.py" in third.banner.text()


def test_run_gui_and_screenshot_pass_the_own_model_options(monkeypatch, tmp_path):
    from featurescope.cli import app as cli_app
    from featurescope.gui import app as gui_app
    from featurescope.gui import screenshot

    seen = {}
    monkeypatch.setattr(gui_app, "run_app", lambda **kwargs: seen.setdefault("gui", kwargs) and 0)
    monkeypatch.setattr(screenshot, "save_screenshot", lambda out, **kwargs: seen.setdefault("shot", kwargs) and out)
    options = dict(input_size=(32, 32), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    cli_app.run_gui(Namespace(image=None, model="nets.py:Net", weights=None, device="cpu", **options))
    assert {k: seen["gui"][k] for k in options} == options and seen["gui"]["device"] == "cpu"
    cli_app.run_screenshot(Namespace(out=str(tmp_path / "s.png"), image=None, model="nets.py:Net",
                                     weights=None, layer=None, view="grid", channel=None, size=(800, 600),
                                     position=None, compare_with=None, device="cpu", **options))
    assert {k: seen["shot"][k] for k in options} == options and seen["shot"]["device"] == "cpu"


def test_screenshot_of_a_32x32_own_model(tmp_path, qtbot):
    from featurescope.gui.screenshot import save_screenshot

    (tmp_path / "small.py").write_text(SMALL_NET)
    out = save_screenshot(tmp_path / "shot.png", image=_photo(tmp_path / "p.png"),
                          model=f"{tmp_path / 'small.py'}:Net", weights="none", device="cpu",
                          input_size=32, size=(1000, 760), view="channel", channel=5, layer="3")
    assert Image.open(out).size[0] == 1000


def test_settings_keep_absolute_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = Settings(tmp_path / "s.ini")
    settings.set_model_spec("nets.py:Net", "w.pth", "cpu")
    assert settings.model_spec()["name"] == f"{tmp_path / 'nets.py'}:Net"
    assert settings.model_spec()["weights"] == str(tmp_path / "w.pth")
    settings.set_model_spec("resnet18", "default", "cpu")
    assert (settings.model_spec()["name"], settings.model_spec()["weights"]) == ("resnet18", "default")


# --- 4: the window comes before torch ---------------------------------------------------

def test_the_window_is_on_screen_before_torch_is_imported(tmp_path):
    done = subprocess.run([sys.executable, "-m", "featurescope", "gui"], capture_output=True, text=True,
                          env=_env(tmp_path, FEATURESCOPE_STARTUP_PROBE="shown"), timeout=120)
    assert done.returncode == 0, done.stderr
    assert "featurescope-startup: shown torch=0" in done.stdout.splitlines(), (done.stdout, done.stderr)
    assert "propagateSizeHints" not in done.stderr


def _env(tmp_path, **extra):
    return dict(os.environ, QT_QPA_PLATFORM="offscreen", XDG_CONFIG_HOME=str(tmp_path / "config"),
                HOME=str(tmp_path), **extra,
                PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parents[2]),
                                            os.environ.get("PYTHONPATH", "")]))


def test_only_the_size_hints_message_is_silenced(tmp_path):
    # in a fresh process: pytest-qt replaces Qt's message handler inside the test run
    code = ("from PySide6.QtCore import qWarning\n"
            "from featurescope.gui.app import application\n"
            "application()\n"
            "qWarning('This plugin does not support propagateSizeHints()')\n"
            "qWarning('featurescope test: another Qt warning')\n")
    done = subprocess.run([sys.executable, "-c", code], env=_env(tmp_path), capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "propagateSizeHints" not in done.stderr
    assert "featurescope test: another Qt warning" in done.stderr


# --- 5: trusting a pickled model in the Model tab ---------------------------------------

@pytest.mark.filterwarnings("ignore:Loading whole.pt with the full unpickler")
def test_a_pickled_model_can_be_trusted_in_the_model_tab(make_window, qtbot, tmp_path, window):
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Conv2d(3, 5, 3, padding=1), torch.nn.ReLU(),
                                 torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(5, 3))
    pickled = tmp_path / "whole.pt"
    torch.save(module, pickled)
    (tmp_path / "small.py").write_text(SMALL_NET)
    panel = window.model_panel
    panel.custom.setChecked(True)
    panel.custom_file.setText(f"{tmp_path / 'small.py'}:Net")
    panel.input_size.setText("32")
    panel.weights.setCurrentIndex(panel.weights.findData("file"))
    panel.weights_file.setText(str(pickled))
    assert panel.trust.isVisibleTo(panel) and not panel.trust.isChecked()

    with qtbot.waitSignal(window.state.error_reported, timeout=30000) as blocker:
        panel.request_load()
    assert "trust_pickle" in blocker.args[0] and "Trust this file" in blocker.args[0]
    assert window.state.model.name == "efficientnet_lite0"  # the old model stays

    panel.trust.setChecked(True)
    panel.request_load()
    qtbot.waitUntil(lambda: window.state.model.name != "efficientnet_lite0" and window.jobs.is_idle()
                    and window.state.result is not None, timeout=30000)
    captured = window.state.result["0"].numpy()
    with torch.inference_mode():
        expected = module[0](window.state.result.input.cpu())[0].numpy()
    np.testing.assert_allclose(captured, expected, rtol=1e-4, atol=1e-5)
    assert window.settings.trusted_weights() == [str(pickled.resolve())]

    second = make_window(start=False)
    second.model_panel.weights.setCurrentIndex(second.model_panel.weights.findData("file"))
    second.model_panel.weights_file.setText(str(pickled))
    assert second.model_panel.trust.isChecked()


# --- 6: readouts that follow what is shown ---------------------------------------------

def test_the_pinned_line_follows_the_channel(window, qtbot):
    view = window.channel_view
    window.tabs.setCurrentIndex(2)
    window.state.set_channel(0)
    qtbot.waitUntil(lambda: view.channel_map is not None, timeout=3000)
    height, width = view.channel_map.shape
    y, x = height // 2, width // 3
    view.show_position(y, x)
    layer = window.state.result[window.state.layer].numpy()
    assert view.hover_label.text() == f"pinned y {y}, x {x}: {layer[0, y, x]:.4g}"
    assert layer[0, y, x] != layer[1, y, x]
    view.next_channel()
    qtbot.waitUntil(lambda: window.state.channel == 1, timeout=3000)
    assert view.hover_label.text() == f"pinned y {y}, x {x}: {layer[1, y, x]:.4g}"


def test_the_grid_hover_line_goes_with_the_image(window, qtbot, tmp_path):
    view = window.grid_view
    window.tabs.setCurrentIndex(0)
    view.fit()
    qtbot.wait(50)
    rect = view.image_item.sceneBoundingRect()
    view._on_mouse_moved((QPointF(rect.left() + 2, rect.top() + 2),))
    assert view.readout.text().startswith("channel 0")
    window.request_image(str(_photo(tmp_path / "other.png")))
    qtbot.waitUntil(lambda: window.state.image_source.endswith("other.png"), timeout=30000)
    assert view.readout.text().strip() == ""


def test_a_folder_is_refused_as_the_image(window, qtbot, tmp_path):
    title = window.grid_view.title.text()
    old_image = window.state.image
    with qtbot.waitSignal(window.state.error_reported, timeout=3000) as blocker:
        window.request_image(str(tmp_path))
    assert blocker.args == [f"{tmp_path.name} is a folder; open an image file."]
    assert window.jobs.is_idle()
    assert window.state.image is old_image
    assert window.grid_view.title.text() == title


def test_a_folder_at_start_leaves_no_promise_of_a_capture(make_window, qtbot, tmp_path):
    window = make_window(start=False)
    window.start(image=str(tmp_path))
    qtbot.waitUntil(lambda: window.state.model is not None and window.jobs.is_idle(), timeout=60000)
    assert window.state.image is None
    assert "is a folder; open an image file" in window.banner.text()
    assert "Capturing" not in window.grid_view.title.text()
    assert "open an image file" in window.grid_view.title.text()


# --- issue 9 item 8 in the app: one mean and std for a one-channel model -----------------

MNIST_NET = '''
import torch.nn as nn

def Net():
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(4 * 13 * 13, 10))
'''


def test_the_model_tab_takes_one_mean_and_std_for_a_one_channel_model(make_window, qtbot, tmp_path):
    (tmp_path / "mnist.py").write_text(MNIST_NET)
    window = make_window(start=False)
    window.request_model({"name": f"{tmp_path / 'mnist.py'}:Net", "weights": "none", "device": "cpu",
                          "input_size": "28", "mean": "0.1307", "std": "0.3081"})
    qtbot.waitUntil(lambda: window.state.model is not None and window.jobs.is_idle(), timeout=30000)
    assert not window.banner.isVisible(), window.banner.text()
    model = window.state.model
    assert model.channels == 1
    # what the model is fed: the grey photo, (value - 0.1307) / 0.3081
    grey = Image.new("L", (28, 28), 128)
    x = model.preprocess(grey.convert("RGB"))
    assert tuple(x.shape) == (1, 1, 28, 28)
    assert torch.allclose(x, torch.full_like(x, (128 / 255 - 0.1307) / 0.3081), atol=1e-3)
