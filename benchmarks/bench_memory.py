"""Figure 5: peak RSS of a capture vs a plain forward pass, each in a fresh process."""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

from common import Figure

HERE = Path(__file__).resolve().parent


def peak_rss_kib() -> int:
    """Peak resident memory of this process in KiB: VmHWM from /proc (Linux), else
    ru_maxrss. On Linux ru_maxrss survives fork + exec, so a child started by this big
    benchmark process would report the parent's peak; VmHWM belongs to the new image."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def child(model_name: str, size: int, mode: str) -> dict:
    """Run in a fresh subprocess: load, run once (plain / capture / capture without a
    budget), report the peak RSS (KiB) before and after."""
    import torch

    from featurescope.core.capture.capture import capture
    from featurescope.core.capture.memory import DEFAULT_MEMORY_BUDGET, tune_allocator
    from featurescope.core.models.load import load_model

    tune_allocator()  # as the app does at start
    torch.set_num_threads(1)
    model = load_model(model_name, weights="none", device="cpu")
    x = torch.randn(1, 3, size, size)
    _ = model.layer_info  # the app has it from loading
    before = peak_rss_kib()
    notice, kept = "", None
    if mode == "plain":
        with torch.inference_mode():
            model.module(x)
    else:
        budget = DEFAULT_MEMORY_BUDGET if mode.startswith("budget") else None
        # "budget-all": every module with a feature map (issue 18), not only conv/pool
        result = capture(model, x, layers="all" if mode.endswith("-all") else None, memory_budget=budget)
        notice = result.notice
        kept = f"{len(result.layers) - len(result.missing)}/{len(result.layers)} {str(result.storage_dtype)[6:]}"
    peak = peak_rss_kib()
    stored = result.stored_bytes if mode != "plain" else 0
    return {"before_kib": before, "peak_kib": peak, "notice": notice, "kept": kept, "stored": stored}


def measure(model_name: str, size: int, mode: str) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, str(HERE / "run.py"), "--memory-child", model_name,
                           str(size), mode], capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"memory child {model_name} {size} {mode} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def memory_figures(model_name: str, sizes, unbudgeted_sizes=()) -> list[Figure]:
    figures = []
    for size in sizes:
        plain = measure(model_name, size, "plain")
        runs = [("budget", measure(model_name, size, "budget"))]
        if size in unbudgeted_sizes:
            runs.append(("unlimited", measure(model_name, size, "unlimited")))
        for mode, run in runs:
            ratio = run["peak_kib"] / plain["peak_kib"]
            target = "<= 1.5" if size == max(sizes) and mode == "budget" else ""
            figure = Figure(
                "5", f"peak RSS {model_name} @{size} ({'1 GiB budget' if mode == 'budget' else 'no budget'})",
                f"capture {run['peak_kib'] / 2**20:.2f} GiB ({run['kept']})",
                f"forward {plain['peak_kib'] / 2**20:.2f} GiB", ratio, f"{ratio:.2f}x",
                target, (ratio <= 1.5) if target else None)
            if run["notice"]:
                figure.notes.append(run["notice"])
            figures.append(figure)
    return figures
