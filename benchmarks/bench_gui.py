"""Figure 4: layer switch in the real MainWindow, offscreen.

From selecting a layer in the layer list to the grid's ImageItem holding that layer's
mosaic (the signal chain is synchronous), and separately until the window has painted
(processEvents). Two passes over every layer: with the grids the app builds in the
background after a capture (its normal state a moment after the capture), and with that
cache emptied before every switch (the mosaic built on the GUI thread from the cached
activations). A forward pre-hook on the network counts forward passes while switching.
"""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from common import Figure, percentile

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def _wait(app, predicate, timeout: float = 600.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the main window did not finish its work in time")
        app.processEvents()
        time.sleep(0.005)


def layer_switch_figures(model_name: str, input_size: str) -> list[Figure]:
    from featurescope.gui.app import application

    app = application()
    from featurescope.gui.main_window import MainWindow

    with tempfile.TemporaryDirectory(prefix="featurescope-bench-") as folder:
        window = MainWindow(settings=str(Path(folder, "settings.ini")), start=False)
        window.show()
        state, view = window.state, window.grid_view
        window.request_model({"name": model_name, "weights": "none", "device": "cpu",
                              "input_size": input_size})
        from featurescope.core.resources import default_sample

        window.request_image(str(default_sample()))
        _wait(app, lambda: state.result is not None and window.jobs.is_idle())
        result = state.result
        layers = list(result.layers)
        forwards = []
        hook = state.model.module.register_forward_pre_hook(lambda *a: forwards.append(1))
        tree = window.layer_panel.tree

        def switch_all(names, cold: bool):
            held, painted = [], []
            for name in names:
                if cold:
                    view._clear_cache()
                item = tree.topLevelItem(layers.index(name))
                start = time.perf_counter()
                tree.setCurrentItem(item)  # what a click or an arrow key does
                ok = view.shown_key is not None and view.shown_key[0] == name and \
                    view.image_item.image is not None
                held.append(time.perf_counter() - start)
                app.processEvents()
                painted.append(time.perf_counter() - start)
                if not ok or state.layer != name:
                    raise RuntimeError(f"selecting {name} did not show its mosaic")
            return held, painted

        there_and_back = layers[1:] + layers[-2::-1]  # every layer, forth then back
        try:
            switch_all(layers[:3], cold=False)  # warm up Qt paths
            warm_held, warm_painted = switch_all(there_and_back, cold=False)
            cold_held, cold_painted = switch_all(there_and_back, cold=True)
        finally:
            hook.remove()
            window.close()
            app.processEvents()
    figures = []
    for label, held, painted in (("grids cached", warm_held, warm_painted),
                                 ("grid built on switch", cold_held, cold_painted)):
        median, p95 = percentile(held, 50) * 1e3, percentile(held, 95) * 1e3
        figure = Figure("4", f"layer switch {model_name} ({label})",
                        f"median {median:.1f} ms, p95 {p95:.1f} ms",
                        f"painted: median {percentile(painted, 50) * 1e3:.1f}, "
                        f"p95 {percentile(painted, 95) * 1e3:.1f} ms", None,
                        f"{len(held)} switches", "median <= 16, p95 <= 33 ms",
                        median <= 16 and p95 <= 33)
        figures.append(figure)
    figures[0].notes.append(f"forward passes while switching {2 * len(there_and_back)} times "
                            f"over {len(layers)} layers: {len(forwards)}")
    return figures


# -- Figure 7: an interactive request behind queued background work ------------------------

def lane_latency_figures(model_name: str, size: int, rounds: int, units: int = 200) -> list[Figure]:
    """Capture latency (submit to answer in the GUI thread) on an idle runner, behind
    ``units`` queued background grid units (one layer each), and behind the same units
    in one first-in-first-out lane (how the runner worked before the two lanes)."""
    import statistics

    import torch

    from featurescope.core.capture.capture import capture
    from featurescope.core.models.load import load_model
    from featurescope.core.render.options import DisplayOptions
    from featurescope.gui.app import application
    from featurescope.gui.jobs.lanes import BACKGROUND, INTERACTIVE
    from featurescope.gui.jobs.workers import JobRunner
    from featurescope.gui.views.grid_view import build_grid  # what the grid view queues

    app = application()
    model = load_model(model_name, weights="none", device="cpu", input_size=size)
    image = torch.rand(1, 3, size, size)
    result = capture(model, image)
    layers = list(result.layers)
    options = DisplayOptions()
    jobs = JobRunner()

    def grid_unit(layer):
        return lambda progress, cancel: build_grid(result, layer, options)

    background = [grid_unit(layers[i % len(layers)]) for i in range(units)]

    def one(queue_lane) -> float:
        answers = []
        if queue_lane is not None:
            started = []
            jobs.unit_started = lambda unit: started.append(1)
            jobs.submit_units("grids", background, lane=queue_lane)
            _wait(app, lambda: started)  # the worker is inside the first unit
            jobs.unit_started = None
        start = time.perf_counter()
        jobs.submit("capture", lambda progress, cancel: capture(model, image, cancel=cancel),
                    on_result=lambda r: answers.append(time.perf_counter()))
        _wait(app, lambda: answers)
        elapsed = answers[0] - start
        jobs.cancel("grids")
        _wait(app, jobs.is_idle)
        return elapsed

    times = {"idle": [], "lanes": [], "fifo": []}
    try:
        one(None)  # warm up
        for _ in range(rounds):
            times["idle"].append(one(None))
            times["lanes"].append(one(BACKGROUND))
            times["fifo"].append(one(INTERACTIVE))
    finally:
        jobs.shutdown()
    ratio = statistics.median(a / b for a, b in zip(times["lanes"], times["idle"]))
    fifo_ratio = statistics.median(a / b for a, b in zip(times["fifo"], times["idle"]))
    ms = lambda values, p: percentile(values, p) * 1e3  # noqa: E731
    figure = Figure("7", f"capture {model_name} behind {units} background grid units",
                    f"median {ms(times['lanes'], 50):.1f} ms, p95 {ms(times['lanes'], 95):.1f} ms",
                    f"idle runner: median {ms(times['idle'], 50):.1f} ms", ratio, f"{ratio:.2f}x",
                    "<= 1.5x idle", ratio <= 1.5)
    figure.notes.append(f"one lane, first in first out (the runner before the two lanes): median "
                        f"{ms(times['fifo'], 50):.0f} ms, {fifo_ratio:.1f}x idle; {rounds} rounds, "
                        f"input {size} px")
    return [figure]


# -- Figure 8: memory after cycling models in the app --------------------------------------

OWN_NET = '''
import torch.nn as nn


def net(depth={depth}):
    """A plain stack of 3x3 convolutions: {depth} captured layers."""
    layers = [nn.Conv2d(3, 16, 3, stride=4, padding=1), nn.ReLU()]
    for _ in range(depth - 1):
        layers += [nn.Conv2d(16, 16, 3, padding=1), nn.ReLU()]
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))
'''


def rss_kib() -> int:
    """Resident memory of this process now (VmRSS), in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cycle_child(names: list[str], loads: int, input_size: str) -> dict:
    """In a fresh process: the app's main window loads ``names`` in turn ``loads`` times,
    each followed by the capture of the sample image; RSS after each load."""
    import torch

    from featurescope.core.capture.memory import tune_allocator

    tune_allocator()  # as the app does at start
    torch.set_num_threads(1)
    from featurescope.gui.app import application

    app = application()
    from featurescope.core.resources import default_sample
    from featurescope.gui.main_window import MainWindow

    rss = []
    with tempfile.TemporaryDirectory(prefix="featurescope-bench-") as folder:
        window = MainWindow(settings=str(Path(folder, "settings.ini")), start=False)
        window.show()
        state = window.state
        changes, errors = [], []
        state.model_changed.connect(lambda model: changes.append(1))
        state.error_reported.connect(errors.append)
        window.request_image(str(default_sample()))
        for index in range(loads):
            name = names[index % len(names)]
            window.request_model({"name": name, "weights": "none", "device": "cpu",
                                  "input_size": input_size})
            _wait(app, lambda: errors or (len(changes) == index + 1 and window.jobs.is_idle()
                                          and state.result is not None))
            if errors:
                raise RuntimeError(errors[0])
            for tab in range(window.tabs.count()):  # as a user looks: every tab draws once
                window.tabs.setCurrentIndex(tab)
                _wait(app, window.jobs.is_idle)
            window.tabs.setCurrentIndex(0)
            for _ in range(3):
                app.processEvents()
            rss.append(rss_kib())
        window.close()
    return {"rss_kib": rss}


def model_cycle_figures(names: list[str], loads: int, input_size: str = "") -> list[Figure]:
    """The highest RSS after the first round of loads / RSS after the first load of the
    first model (the largest), each load followed by a capture and every tab drawn."""
    import json
    import subprocess
    import sys

    with tempfile.TemporaryDirectory(prefix="featurescope-bench-net-") as folder:
        own = Path(folder, "deepnet.py")
        own.write_text(OWN_NET.format(depth=300))
        names = [f"{own}:net" if n == "own300" else n for n in names]
        env = dict(os.environ, OMP_NUM_THREADS="1")
        done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--cycle-child",
                               json.dumps({"names": names, "loads": loads, "input_size": input_size})],
                              capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the model-cycle child failed:\n{done.stderr[-3000:]}")
    rss = json.loads(done.stdout.strip().splitlines()[-1])["rss_kib"]
    # the worst moment after the first round (a leak shows as growth from round to
    # round), against the first load of the largest model (listed first)
    first, worst = rss[0] / 1024, max(rss[len(names):] or rss) / 1024
    ratio = worst / first
    short = [Path(n.split(":")[0]).stem if ":" in n else n for n in names]
    figure = Figure("8", f"RSS over {loads} model loads ({', '.join(short)})",
                    f"highest after the first round: {worst:.0f} MB",
                    f"after the first load of {short[0]}: {first:.0f} MB",
                    ratio, f"{ratio:.2f}x", "<= 1.2x", ratio <= 1.2)
    figure.notes.append("RSS after each load and capture (MB): "
                        + ", ".join(f"{kib / 1024:.0f}" for kib in rss))
    return [figure]


if __name__ == "__main__":
    import json
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    if len(sys.argv) == 3 and sys.argv[1] == "--cycle-child":
        spec = json.loads(sys.argv[2])
        print(json.dumps(cycle_child(spec["names"], spec["loads"], spec["input_size"])))
