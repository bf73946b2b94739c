"""The app model without Qt: a plain object with psygnal events, driven by a script."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Runs in a fresh interpreter: a real (random-weight) model and a real capture, every
# event recorded with its arguments, and what Qt modules the app model pulled in.
SCRIPT = textwrap.dedent("""
    import json, sys
    import torch
    from PIL import Image
    torch.manual_seed(0)
    torch.set_num_threads(1)
    from featurescope.gui.model.state import AppState
    import importlib, pkgutil
    import featurescope.gui.model as package
    modules = [info.name for info in pkgutil.iter_modules(package.__path__)]
    for name in modules:  # the whole package: every module of the app model is Qt-free
        importlib.import_module(f"featurescope.gui.model.{name}")
    from featurescope.gui.model.settings import Settings
    settings = Settings()
    settings.set_model_spec("resnet18", "default", "cpu")
    settings.set_memory_budget(1 << 20)
    remembered = [settings.model_spec()["name"], settings.memory_budget()]
    from featurescope.core.models.load import load_model
    from featurescope.core.capture.capture import capture

    events = []
    state = AppState()
    for name in ("model_changed", "image_changed", "result_changed", "layer_changed",
                 "channel_changed", "display_changed", "busy_changed", "error_reported"):
        def record(*args, name=name):
            events.append([name] + [a if isinstance(a, (str, int, bool)) or a is None
                                    else type(a).__name__ for a in args])
        getattr(state, name).connect(record)

    model = load_model("resnet18", weights="none", device="cpu", input_size=64)
    image = Image.new("RGB", (80, 60), (200, 120, 40))
    result = capture(model, image)
    layers = list(result.layers)
    steps = []
    def mark(what):
        steps.append([what, len(events)])

    state.set_model(model); mark("model")
    state.set_model(model); mark("same model")
    state.set_image(image, "cat.jpg"); mark("image")
    state.set_result(result); mark("result")
    state.set_layer(layers[1]); mark("layer 1")
    state.set_layer(layers[1]); mark("layer 1 again")
    state.set_channel(3); mark("channel 3")
    state.set_channel(3); mark("channel 3 again")
    info = state.layer_info()
    state.set_layer(layers[2]); mark("layer 2")
    channel_after_step = state.channel
    state.set_display(colormap="magma"); mark("display")
    state.set_display(colormap="magma"); mark("display again")
    state.set_busy(True, "Capturing"); mark("busy")
    state.report_error("cat.jpg is not an image."); mark("error")
    state.set_model(None); mark("no model")
    print(json.dumps({
        "events": events, "steps": steps, "layers": layers[:3],
        "info_name": info.name, "channel_after_step": channel_after_step,
        "result_after_model": state.result is None,
        "modules": modules, "remembered": remembered,
        "qt": sorted(m for m in sys.modules if m.startswith(("PySide6", "pyqtgraph", "shiboken"))),
    }))
""")


@pytest.fixture(scope="module")
def scripted():
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          env=env, cwd=str(ROOT), timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_app_model_imports_no_qt(scripted):
    assert {"settings", "state"} <= set(scripted["modules"])
    assert scripted["remembered"] == ["resnet18", 1 << 20]  # settings work without Qt
    assert scripted["qt"] == []


def test_events_come_once_per_real_change_in_order(scripted):
    layers = scripted["layers"]
    events = scripted["events"]
    steps = dict((what, count) for what, count in scripted["steps"])
    assert events[:steps["model"]] == [["model_changed", "LoadedModel"]]
    assert steps["same model"] == steps["model"]  # the same model again: nothing
    assert events[steps["same model"]:steps["image"]] == [["image_changed", "Image", "cat.jpg"]]
    # a capture that lacks the selected layer selects its first one, after the result
    assert events[steps["image"]:steps["result"]] == [["result_changed", "CaptureResult"],
                                                      ["layer_changed", layers[0]]]
    assert events[steps["result"]:steps["layer 1"]] == [["layer_changed", layers[1]]]
    assert steps["layer 1 again"] == steps["layer 1"]
    assert events[steps["layer 1 again"]:steps["channel 3"]] == [["channel_changed", 3]]
    assert steps["channel 3 again"] == steps["channel 3"]
    assert events[steps["channel 3 again"]:steps["layer 2"]] == [["layer_changed", layers[2]]]
    assert scripted["channel_after_step"] == -1  # a new layer has no selected channel yet
    assert events[steps["layer 2"]:steps["display"]] == [["display_changed", "DisplayOptions"]]
    assert steps["display again"] == steps["display"]
    assert events[steps["display again"]:steps["busy"]] == [["busy_changed", True, "Capturing"]]
    assert events[steps["busy"]:steps["error"]] == [["error_reported", "cat.jpg is not an image."]]
    assert events[steps["error"]:] == [["model_changed", None]]
    assert scripted["result_after_model"]  # the old capture went with its model


def test_layer_info_comes_from_the_capture(scripted):
    assert scripted["info_name"] == scripted["layers"][1]


def test_changing_the_state_from_another_thread_is_refused():
    from featurescope.gui.model.state import AppState

    state = AppState()
    seen, errors = [], []
    state.layer_changed.connect(seen.append)

    def worker():
        try:
            state.set_layer("conv1")
        except RuntimeError as error:
            errors.append(str(error))

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert seen == [] and state.layer == ""
    assert errors and "worker thread" in errors[0]
    state.set_layer("conv1")
    assert seen == ["conv1"]
