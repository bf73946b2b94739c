"""Dataset-index figures: ``featurescope index`` against a plain batched inference loop.

    python benchmarks/bench_index.py            # 500 images, 2,000 for memory (~15 min on 2 cores)
    python benchmarks/bench_index.py --quick    # smoke mode: tiny folder, no thresholds

8a/8b throughput of build_index / a plain loop (same DataLoader, batch size and workers,
the model's forward with no hooks, on a model loaded separately so no taps are
installed on it), Lite0 and resnet18 on CPU, interleaved rounds, wall clock.
8c peak RSS of indexing 2,000 images / 200 images (each in a fresh process).
8d local engine vs Ray engine on the same folder (Ray's start-up timed on its own).
Results go to benchmarks/INDEX_RESULTS.md (not RESULTS.md, which run.py owns).
"""
from __future__ import annotations

import argparse
import datetime
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from common import Figure  # noqa: E402


def make_folder(folder: Path, count: int, seed: int = 0) -> Path:
    """``count`` JPEGs of varied sizes: noise, gradients, stripes; two levels of folders."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        h, w = int(rng.integers(180, 400)), int(rng.integers(180, 400))
        kind = i % 3
        if kind == 0:
            array = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        else:
            y, x = np.mgrid[0:h, 0:w]
            period = int(rng.integers(4, 40))
            base = ((x // period + (y // period if kind == 2 else 0)) % 2) * 200
            array = np.stack([base, (x * 255 // w), (y * 255 // h)], 2).astype(np.uint8)
        target = folder / f"part{i % 7}" / f"img{i:05d}.jpg"
        target.parent.mkdir(exist_ok=True)
        Image.fromarray(array).save(target, quality=90)
    return folder


def _plain_loop(name: str, folder: Path, batch: int, workers: int) -> float:
    """Images/s of the plain loop: the same DataLoader, forward with no hooks."""
    import torch

    import featurescope as fs
    from featurescope.core.index.dataset import folder_loader
    from featurescope.core.index.geometry import preprocessing_of
    from featurescope.core.index.walk import list_images

    model = fs.load_model(name, weights="default" if name == "efficientnet_lite0" else "none", device="cpu")
    items = [(i, r.path) for i, r in enumerate(list_images(folder))]
    start = time.perf_counter()
    with torch.inference_mode():
        for images, *_rest in folder_loader(folder, items, preprocessing_of(model), batch, workers):
            model.module(images)
    return len(items) / (time.perf_counter() - start)


def _indexed(model, folder: Path, batch: int, workers: int, engine: str = "local") -> float:
    from featurescope.core.index.build import build_index

    start = time.perf_counter()
    index = build_index(model, folder, batch_size=batch, workers=workers, engine=engine)
    return len(index.files["path"]) / (time.perf_counter() - start)


def throughput_figures(folder: Path, models, batch: int, workers: int, rounds: int) -> list[Figure]:
    import featurescope as fs

    figures = []
    for number, name in zip(("10a", "10b"), models):
        model = fs.load_model(name, weights="default" if name == "efficientnet_lite0" else "none", device="cpu")
        ours, plain = [], []
        for _ in range(rounds):  # interleaved: a busy machine slows both alike
            plain.append(_plain_loop(name, folder, batch, workers))
            ours.append(_indexed(model, folder, batch, workers))
        ratios = [o / p for o, p in zip(ours, plain)]
        ratio = statistics.median(ratios)
        count = len(list(folder.rglob("*.jpg")))
        figures.append(Figure(number, f"index throughput {name}, {count} images, batch {batch}, "
                              f"{workers} worker(s)", f"{statistics.median(ours):.1f} images/s",
                              f"{statistics.median(plain):.1f} images/s (plain loop)", ratio,
                              f"{ratio:.2f}x", ">= 0.85x", ratio >= 0.85,
                              [f"rounds: {', '.join(f'{r:.2f}' for r in ratios)}"]))
    return figures


def memory_child(folder: str) -> dict:
    import featurescope as fs
    from featurescope.core.index.build import build_index

    model = fs.load_model("resnet18", weights="none", device="cpu")
    index = build_index(model, folder, batch_size=32, workers=1)
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"images": index.images, "rss_kib": own, "worker_rss_kib": children}


def memory_figure(small: Path, large: Path) -> Figure:
    peaks = {}
    for folder in (small, large):
        done = subprocess.run([sys.executable, __file__, "--memory-child", str(folder)],
                              capture_output=True, text=True, check=True)
        peaks[folder] = json.loads(done.stdout.strip().splitlines()[-1])
    a, b = peaks[large], peaks[small]
    ratio = a["rss_kib"] / b["rss_kib"]
    return Figure("10c", f"peak RSS indexing {a['images']} / {b['images']} images (resnet18, all layers)",
                  f"{a['rss_kib'] / 1024:.0f} MiB", f"{b['rss_kib'] / 1024:.0f} MiB", ratio,
                  f"{ratio:.2f}x", "<= 1.2x", ratio <= 1.2,
                  [f"decoding worker peak: {a['worker_rss_kib'] / 1024:.0f} MiB vs "
                   f"{b['worker_rss_kib'] / 1024:.0f} MiB"])


def ray_figure(folder: Path, batch: int) -> Figure:
    import featurescope as fs

    model = fs.load_model("resnet18", weights="none", device="cpu")
    local = _indexed(model, folder, batch, 1)
    import ray

    start = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    startup = time.perf_counter() - start
    try:
        on_ray = _indexed(model, folder, batch, 2, engine="ray")
    finally:
        ray.shutdown()
    count = len(list(folder.rglob("*.jpg")))
    return Figure("10d", f"Ray engine (2 actors) vs local engine (1 decoding worker), {count} images, "
                  "2 cores", f"{on_ray:.1f} images/s", f"{local:.1f} images/s (local)", on_ray / local,
                  f"{on_ray / local:.2f}x", "recorded", None,
                  [f"Ray start-up (ray.init, local, 2 CPUs): {startup:.1f} s, not counted above; "
                   "actor start-up (model unpickled per actor) is counted"])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--only", default="", help="e.g. 8a,8c")
    parser.add_argument("--rounds", type=int, default=None, help="throughput rounds (default 3)")
    parser.add_argument("--memory-child", metavar="FOLDER", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    if args.memory_child:
        print(json.dumps(memory_child(args.memory_child)))
        return 0
    only = {p.strip() for p in args.only.split(",") if p.strip()}
    want = lambda n: not only or n in only  # noqa: E731
    count, rounds = (24, 1) if args.quick else (500, 3)
    rounds = args.rounds or rounds
    figures = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = make_folder(Path(tmp, "images"), count)
        if want("10a") or want("10b"):
            figures += throughput_figures(folder, ["efficientnet_lite0", "resnet18"], 32, 1, rounds)
        if want("10c"):
            small = make_folder(Path(tmp, "small"), 20 if args.quick else 200, seed=1)
            large = make_folder(Path(tmp, "large"), 200 if args.quick else 2000, seed=2)
            figures.append(memory_figure(small, large))
        if want("10d"):
            figures.append(ray_figure(folder, 16))
    if args.quick:
        for figure in figures:
            figure.met = None
    rows = ["| # | figure | ours | baseline | ratio | target | |", "|---|---|---|---|---|---|---|"]
    rows += [f"| {f.number} | {f.name} | {f.ours} | {f.baseline} | {f.ratio_text} | {f.target} | "
             f"{f.verdict} |" for f in figures]
    notes = [f"- {f.number}: {n}" for f in figures for n in f.notes]
    from run import machine

    text = "\n".join(["# featurescope index benchmark", "",
                      f"Run {datetime.datetime.now().isoformat(timespec='seconds')} with "
                      f"`python benchmarks/bench_index.py{' --quick' if args.quick else ''}`.", ""]
                     + [f"- {m}" for m in machine()] + [""] + rows + [""] + notes + [""])
    print(text)
    out = args.out or (Path(tempfile.gettempdir(), "featurescope-index-quick.md") if args.quick
                       else HERE / "INDEX_RESULTS.md")
    out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
