"""featurescope benchmarks: every figure a ratio measured side by side in one process.

    python benchmarks/run.py            # full run (~10 min on 2 cores), writes benchmarks/RESULTS.md
    python benchmarks/run.py --quick    # smoke mode: tiny sizes, few repeats, no thresholds

Each figure is the median over interleaved rounds of (ours / baseline in the same
round), so a busy machine slows both sides alike. CPU figures use this thread's CPU time
(torch runs single-threaded here); the export and GUI figures use the wall clock.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the repository's featurescope, without installing
sys.path.insert(0, str(HERE))

from common import Figure  # noqa: E402

GRID_SHAPES = [(64, 112, 112), (256, 56, 56), (512, 14, 14)]


def machine() -> list[str]:
    import torch
    import torchvision

    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = "unknown"
    try:
        kib = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0])
        ram = f"{kib / 2**20:.1f} GiB"
    except (OSError, IndexError, ValueError):
        pass
    load = " / ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    return [f"CPU: {cpu}, {os.cpu_count()} logical cores; RAM {ram}",
            f"OS: {platform.platform()}; Python {platform.python_version()}",
            f"torch {torch.__version__} (threads used: {torch.get_num_threads()}), "
            f"torchvision {torchvision.__version__}",
            f"CUDA: {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no CUDA device on this machine'}",
            f"load average at start (1/5/15 min): {load}"]


def table(figures: list[Figure]) -> list[str]:
    rows = ["| # | figure | ours | baseline | ratio | target | |",
            "|---|---|---|---|---|---|---|"]
    for f in figures:
        rows.append(f"| {f.number} | {f.name} | {f.ours} | {f.baseline} | {f.ratio_text} | "
                    f"{f.target or '-'} | {f.verdict} |")
    return rows


def run(quick: bool, only: set) -> list[Figure]:
    import torch

    from featurescope.core.capture.memory import tune_allocator

    tune_allocator()
    torch.set_num_threads(1)
    import bench_engine

    figures: list[Figure] = []
    want = lambda n: not only or n in only  # noqa: E731
    if want("1"):
        models = ["resnet18", "efficientnet_lite0"] if quick else ["resnet18", "vgg16", "efficientnet_lite0"]
        figures += bench_engine.capture_figures(models, 64 if quick else 224, 3 if quick else 15,
                                                seconds=0.0 if quick else 1.0)
        figures += bench_engine.batch_figures(["resnet18"], 64 if quick else 224, 16,
                                              2 if quick else 7)
    shapes = [(16, 28, 28), (64, 7, 7)] if quick else GRID_SHAPES
    if want("2"):
        figures += bench_engine.grid_figures(shapes, 3 if quick else 31, 1 if quick else 3)
    if want("3"):
        figures += bench_engine.export_figures(shapes, 3 if quick else 15)
    if want("4"):
        import bench_gui

        figures += bench_gui.layer_switch_figures("vgg16", "32" if quick else "")
    if want("5"):
        import bench_memory

        if quick:
            figures += bench_memory.memory_figures("squeezenet1_1", [64, 128])
        else:
            figures += bench_memory.memory_figures("vgg16", [224, 1024, 2048], unbudgeted_sizes=(224, 1024, 2048))
    if want("7"):
        import bench_gui

        figures += bench_gui.lane_latency_figures("resnet18", 64 if quick else 224, 3 if quick else 15)
    if want("8"):
        import bench_gui

        if quick:
            figures += bench_gui.model_cycle_figures(["resnet18", "squeezenet1_1", "own300"], 4, "64")
        else:
            figures += bench_gui.model_cycle_figures(["vgg16", "efficientnet_lite0", "resnet18", "own300"], 12)
    if want("6"):
        figures += bench_engine.gpu_figures(["resnet18"], 64 if quick else 224, 3 if quick else 15)
    if want("9"):
        import bench_startup

        figures += bench_startup.startup_figures(1 if quick else 5)
        figures += bench_startup.startup_figures(1 if quick else 5, loaded=True)
    if want("11"):
        import bench_optvis

        if quick:
            figures += bench_optvis.optvis_figures(2, 32, [0, 1], check=False)
        else:
            figures += bench_optvis.optvis_figures(64, 128, list(range(8)))
    if want("12"):
        import bench_live

        if quick:
            figures += bench_live.live_figures(["resnet18"], 64, 12, 5, rounds=1)
        else:
            figures += bench_live.live_figures(["efficientnet_lite0", "resnet18"], 224, 40, 60, rounds=5)
    if want("13"):
        import bench_layers

        figures += bench_layers.capture_all_figures(["resnet18", "efficientnet_lite0"],
                                                    64 if quick else 224, 3 if quick else 15)
        if quick:
            figures += bench_layers.memory_all_figures("squeezenet1_1", 64)
        else:
            figures += bench_layers.memory_all_figures("resnet18", 2048)
    if want("14"):
        import bench_layers

        figures += bench_layers.graph_stall_figures("resnet18" if quick else "resnet50")
    if want("19"):
        import bench_why

        figures += bench_why.why_figures(quick)
    if want("20"):
        import bench_circuits

        if quick:
            figures += bench_circuits.contribution_figures(64, 1, ranking_rounds=1)
            figures += bench_circuits.expanded_figures(sample=2, rounds=1)
        else:
            figures += bench_circuits.contribution_figures() + bench_circuits.expanded_figures()
    if quick:  # smoke mode: no thresholds
        for figure in figures:
            figure.met = None
    return figures


BOUNDS_NOTE = Path(HERE, "BOUNDS.md")


def write_results(path: Path, figures: list[Figure], quick: bool, header: list[str]) -> None:
    import os as _os

    load = " / ".join(f"{v:.2f}" for v in _os.getloadavg()) if hasattr(_os, "getloadavg") else "n/a"
    lines = ["# featurescope benchmark results", "",
             f"Run {datetime.datetime.now().isoformat(timespec='seconds')} with "
             f"`python benchmarks/run.py{' --quick' if quick else ''}`.", ""]
    lines += [f"- {item}" for item in header] + [f"- load average at end: {load}", ""]
    lines += table(figures) + [""]
    notes = [f"- {f.number} {f.name}: {note}" for f in figures for note in f.notes]
    if notes:
        lines += ["Notes:", ""] + notes + [""]
    if BOUNDS_NOTE.is_file() and not quick:
        lines += [BOUNDS_NOTE.read_text().strip(), ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke mode: tiny sizes, no thresholds")
    parser.add_argument("--out", type=Path, help="where to write the results (default "
                        "benchmarks/RESULTS.md; with --quick a file in the temp folder)")
    parser.add_argument("--only", default="", help="comma-separated figure numbers, e.g. 1,2")
    parser.add_argument("--memory-child", nargs=3, metavar=("MODEL", "SIZE", "MODE"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        import bench_memory

        model, size, mode = args.memory_child
        print(json.dumps(bench_memory.child(model, int(size), mode)))
        return 0
    out = args.out
    if out is None:
        out = Path(tempfile.gettempdir(), "featurescope-benchmarks-quick.md") if args.quick \
            else HERE / "RESULTS.md"
    elif args.quick and out.resolve() == (HERE / "RESULTS.md").resolve():
        parser.error("--quick never overwrites benchmarks/RESULTS.md; pass another --out")
    header = machine()
    only = {part.strip() for part in args.only.split(",") if part.strip()}
    figures = run(args.quick, only)
    print("\n".join(table(figures)))
    for figure in figures:
        for note in figure.notes:
            print(f"  {figure.number} {figure.name}: {note}")
    write_results(out, figures, args.quick, header)
    print(f"results written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
