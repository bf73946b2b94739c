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
