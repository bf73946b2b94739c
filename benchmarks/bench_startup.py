"""Figure 7: cold start of the app, beside the import of torch + torchvision.

Each round starts, one after the other, a fresh ``python -c "import torch, torchvision"``
(the baseline: what any torch app pays before it can compute) and a fresh
``python -m featurescope gui`` offscreen with throwaway settings and
FEATURESCOPE_STARTUP_PROBE=grid, which prints a line when the window is first on screen
and one when the first feature grid is drawn. Times are wall clock from the start of
each process, read in this process as the lines arrive.

Targets: the window on screen within 1.5 s; the first grid within the torch +
torchvision import plus 1.0 s (the model, the image and the capture of efficientnet_lite0
on the cat in that second).

9c/9d are the same, measured while a second process burns one core the whole time (as
another program or a test run does on a laptop): the import it is compared with pays the
same load in the same round, so the margin stays a fair figure; the targets are the same.
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import Figure

ROOT = Path(__file__).resolve().parent.parent
SHOWN_TARGET_S = 1.5
GRID_MARGIN_S = 1.0


def _env(home: str) -> dict:
    return dict(os.environ, QT_QPA_PLATFORM="offscreen", XDG_CONFIG_HOME=str(Path(home, "config")),
                HOME=home, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))


def torch_import_s(env: dict) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch, torchvision"], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300)
    return time.perf_counter() - start


def app_start_s(env: dict, timeout: float = 300.0) -> tuple[float, float, bool]:
    """(seconds to the window on screen, seconds to the first grid, torch imported at show)."""
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "featurescope", "gui"], cwd=str(ROOT),
                             env=dict(env, FEATURESCOPE_STARTUP_PROBE="grid"), text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    shown = grid = float("nan")
    torch_at_show = True
    try:
        for line in child.stdout:
            now = time.perf_counter() - start
            if line.startswith("featurescope-startup: shown"):
                shown, torch_at_show = now, line.strip().endswith("torch=1")
            elif line.startswith("featurescope-startup: grid"):
                grid = now
            if now > timeout:
                break
        child.wait(timeout=max(1.0, timeout - (time.perf_counter() - start)))
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    if grid != grid:  # nan: the app never drew a grid
        raise RuntimeError("featurescope gui did not draw a grid; run it by hand to see why")
    return shown, grid, torch_at_show


def _burner() -> subprocess.Popen:
    """A second process that keeps one core busy until it is killed."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def startup_figures(rounds: int, loaded: bool = False) -> list[Figure]:
    """Figures 9a/9b, or with ``loaded`` 9c/9d: the same beside a CPU-burning process."""
    burner = _burner() if loaded else None
    try:
        return _startup_figures(rounds, loaded)
    finally:
        if burner is not None:
            burner.kill()
            burner.wait()


def _startup_figures(rounds: int, loaded: bool) -> list[Figure]:
    with tempfile.TemporaryDirectory(prefix="featurescope-bench-start-") as home:
        env = _env(home)
        torch_import_s(env)  # warm the disk cache for both sides
        app_start_s(env)
        imports, shows, grids, torch_early = [], [], [], 0
        for _ in range(rounds):
            imports.append(torch_import_s(env))
            shown, grid, early = app_start_s(env)
            shows.append(shown)
            grids.append(grid)
            torch_early += early
    base, shown, grid = (statistics.median(v) for v in (imports, shows, grids))
    margins = [g - i for g, i in zip(grids, imports)]  # paired, same round
    margin = statistics.median(margins)
    notes = [f"{rounds} rounds; import torch+torchvision {min(imports):.2f}-{max(imports):.2f} s, "
             f"window {min(shows):.2f}-{max(shows):.2f} s, first grid {min(grids):.2f}-{max(grids):.2f} s"]
    if torch_early:
        notes.append(f"torch was already imported when the window showed in {torch_early} of {rounds} rounds")
    ids, under = ("9c", "9d") if loaded else ("9a", "9b"), (", a second process burning a core" if loaded else "")
    return [
        Figure(ids[0], f"cold start: window on screen{under}", f"{shown:.2f} s",
               f"import torch+torchvision {base:.2f} s",
               shown / base, f"{shown / base:.2f}x", f"<= {SHOWN_TARGET_S} s",
               shown <= SHOWN_TARGET_S and not torch_early, notes),
        Figure(ids[1], f"cold start: first feature grid (efficientnet_lite0, cat){under}", f"{grid:.2f} s",
               f"import torch+torchvision {base:.2f} s", grid / base,
               f"import + {margin:.2f} s", f"import + {GRID_MARGIN_S} s", margin <= GRID_MARGIN_S),
    ]


if __name__ == "__main__":
    for loaded in (False, True):
        for figure in startup_figures(int(sys.argv[1]) if len(sys.argv) > 1 else 3, loaded):
            print(figure)
