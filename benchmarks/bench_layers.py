"""Figures 13-14 (issue 18): capturing every module, its memory, and the graph's GUI stalls.

13. capture of every module with a feature map (``layers="all"``) / plain forward, same
    input, interleaved rounds, beside the default conv/pool capture; target <= 1.5.
13b. peak RSS of a capture of every module under the 1 GiB budget / the conv+pool
    capture under the same budget, each in a fresh process (bench_memory's child), and
    the stored bytes against the budget.
14. the longest the GUI thread is unresponsive while the Graph view traces, lays out and
    draws resnet50 (a 1 ms timer on the GUI thread records the gaps between its ticks),
    collapsed as the view opens it and then fully open; target <= 50 ms.
"""
from __future__ import annotations

import copy
import os
import time

import torch

from common import Figure, interleaved, median_ms, paired_ratio

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ALL_TARGET = 1.5


def capture_all_figures(models, size: int, rounds: int) -> list[Figure]:
    from bench_engine import _model

    from featurescope.core.capture.capture import capture

    figures = []
    for name in models:
        module = _model(name)
        plain = copy.deepcopy(module)
        x = torch.randn(1, 3, size, size)

        def forward():
            with torch.inference_mode():
                return plain(x)

        every = len(capture(module, x, layers="all").layers)  # learns its clones once
        default = len(capture(module, x).layers)
        times = interleaved({"forward": forward, "default": lambda: capture(module, x),
                             "all": lambda: capture(module, x, layers="all")}, rounds, warmup=2)
        ratio = paired_ratio(times, "all", "forward")
        figure = Figure("13", f"capture every module {name} @{size}",
                        f"capture {every} modules {median_ms(times['all']):.1f} ms",
                        f"forward {median_ms(times['forward']):.1f} ms", ratio, f"{ratio:.3f}x",
                        f"<= {ALL_TARGET:.2f}", ratio <= ALL_TARGET)
        figure.notes.append(f"the default capture of {default} conv/pool layers, same rounds: "
                            f"{paired_ratio(times, 'default', 'forward'):.3f}x the forward")
        figures.append(figure)
        del module, plain
    return figures


def memory_all_figures(model_name: str, size: int) -> list[Figure]:
    from bench_memory import measure

    from featurescope.core.capture.memory import DEFAULT_MEMORY_BUDGET, format_bytes

    default = measure(model_name, size, "budget")
    every = measure(model_name, size, "budget-all")
    ratio = every["peak_kib"] / default["peak_kib"]
    held = every["stored"] <= DEFAULT_MEMORY_BUDGET
    figure = Figure("13b", f"peak RSS every module {model_name} @{size} (1 GiB budget)",
                    f"all {every['peak_kib'] / 2**20:.2f} GiB ({every['kept']}, "
                    f"{format_bytes(every['stored'])} stored)",
                    f"conv/pool {default['peak_kib'] / 2**20:.2f} GiB ({default['kept']})",
                    ratio, f"{ratio:.2f}x", "<= 1.25, stored <= budget", ratio <= 1.25 and held)
    if every["notice"]:
        figure.notes.append(every["notice"])
    return [figure]


def graph_stall_figures(model_name: str) -> list[Figure]:
    """In the real MainWindow (offscreen) with ``model_name`` loaded and captured: from
    switching to the Graph tab until it is drawn, then opening every block."""
    import tempfile
    from pathlib import Path

    from PySide6.QtCore import QTimer

    from bench_gui import _wait
    from featurescope.core.resources import default_sample
    from featurescope.gui.app import application
    from featurescope.gui.main_window import MainWindow

    app = application()
    folder = tempfile.TemporaryDirectory(prefix="featurescope-bench-")
    window = MainWindow(settings=str(Path(folder.name, "settings.ini")), start=False)
    window.resize(1280, 800)
    window.show()
    state, view = window.state, window.graph_view
    window.request_model({"name": model_name, "weights": "none", "device": "cpu"})
    window.request_image(str(default_sample()))
    _wait(app, lambda: state.result is not None and window.jobs.is_idle())
    gaps, last = [], [time.perf_counter()]

    def tick():
        now = time.perf_counter()
        gaps.append((now - last[0], now))
        last[0] = now

    where: list = []
    timer = QTimer()
    timer.setInterval(1)
    timer.timeout.connect(tick)

    def measure(action, done) -> tuple[float, float]:
        gaps.clear()
        start = time.perf_counter()
        last[0] = start
        timer.start()
        action()
        while not done():
            app.processEvents()
            time.sleep(0.0005)
        for _ in range(20):  # the paint after the scene was filled
            app.processEvents()
        timer.stop()
        worst = max(gaps, default=(0.0, start))
        where.append(f"{worst[0] * 1e3:.0f} ms gap ending {(worst[1] - start) * 1e3:.0f} ms in")
        return worst[0], time.perf_counter() - start

    # the same timer with nothing to do: what the machine's scheduler alone costs
    idle_until = []
    idle_stall, _ = measure(lambda: idle_until.append(time.perf_counter() + 1.0),
                            lambda: time.perf_counter() > idle_until[0])
    # the Graph tab opened (Qt shows and paints a tab for the first time, then the graph
    # is built); for comparison, the first switch to another tab
    tab_stall, _ = measure(lambda: window.tabs.setCurrentWidget(window.playground_view), lambda: True)
    switch_stall, _ = measure(lambda: window.tabs.setCurrentWidget(view), lambda: view.graph is not None)
    from featurescope.gui.caches import dataflow as dataflow_cache

    # building alone, the tab open: forget the traced graph and ask again
    with dataflow_cache._lock:
        dataflow_cache._cache.pop(state.model, None)
    view._model, view.graph = None, None
    first_stall, first_total = measure(lambda: view.request(None), lambda: view.graph is not None)
    nodes_before = len(view.graph.nodes)

    every_block = set(dataflow_cache.graph_for(state.model).blocks)
    open_stall, open_total = measure(lambda: view.request(every_block),
                                     lambda: len(view.graph.nodes) > nodes_before)
    window.jobs.shutdown()
    window.close()
    folder.cleanup()
    stall = max(first_stall, open_stall)
    figure = Figure("14", f"graph view {model_name}: longest GUI-thread stall",
                    f"stall {stall * 1e3:.1f} ms", f"build {first_total * 1e3:.0f} ms + open all "
                    f"{open_total * 1e3:.0f} ms", stall / (first_total + open_total),
                    f"{stall * 1e3:.1f} ms", "<= 50 ms", stall <= 0.050)
    figure.notes.append(f"opened as shown: {nodes_before} nodes (stall {first_stall * 1e3:.1f} ms); "
                        f"every block open: {len(view.graph.nodes)} nodes (stall {open_stall * 1e3:.1f} ms); "
                        f"the same timer with nothing running: longest gap {idle_stall * 1e3:.1f} ms "
                        f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores); first "
                        f"switch to the Graph tab, building included: {switch_stall * 1e3:.1f} ms, "
                        f"first switch to the Playground tab: {tab_stall * 1e3:.1f} ms; "
                        + "; ".join(where))
    return [figure]
