"""Atlas figures (issue 21): how fast its pages open, how big a unit is, what a unit costs,
and the Ray engine against the local one.

    python benchmarks/bench_atlas.py            # ~15 min on 2 cores
    python benchmarks/bench_atlas.py --quick    # smoke mode: tiny settings, no thresholds

21a a layer page of 1,280 units, DOMContentLoaded in headless Chromium from file:// (<= 1 s)
21b a unit page, likewise (<= 0.5 s)
21c site bytes per unit at the default settings (256 steps, 128 px, 9 examples; <= 200 KB)
21d seconds per unit at the default settings (Lite0, local engine): the whole-model estimate
21e units/s, Ray with 2 actors / the local engine, same units (>= 0.9; Ray's start-up apart)
Results go to benchmarks/ATLAS_RESULTS.md.
"""
from __future__ import annotations

import argparse
import datetime
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from common import Figure  # noqa: E402


def synthetic_site(out: Path, units: int) -> Path:
    """A site of one layer with ``units`` units and real JPEG pictures (not optimised: the
    figure is about the page, not the pictures)."""
    import numpy as np

    from featurescope.core.atlas.labels import UnitLabel
    from featurescope.core.atlas.site import LayerRecord, UnitRecord, write_site
    from featurescope.core.io.writers import write_jpeg

    rng = np.random.default_rng(0)
    pictures = []
    for i in range(16):  # 16 distinct files, shared by the units (sizes as real ones)
        path = f"blocks.15.project/img/p{i}.jpg"
        write_jpeg(out / path, rng.integers(0, 255, (128, 128, 3), dtype=np.uint8))
        pictures.append(path)
    records = [UnitRecord("blocks.15.project", c, UnitLabel("class-%d" % (c % 40), "class-%d" % (c % 40),
                                                             0.3, ()), 0.5,
                          {"channel": (pictures[c % 16], 1.0), "negative": (pictures[(c + 1) % 16], -1.0)},
                          [{"path": f"class-{c % 40}/{k}.jpg", "activation": 3.0, "box": [0, 0, 10, 10],
                            "crop": pictures[(c + k) % 16]} for k in range(9)])
               for c in range(units)]
    model = {"name": "efficientnet_lite0", "weights": "embedded", "trained": True, "preprocessing": {}}
    return write_site(out, model, [LayerRecord("blocks.15.project", "Conv2d", (units, 7, 7), records)])


def page_figures(units: int, rounds: int, browser: str) -> list[Figure]:
    from playwright.sync_api import sync_playwright

    site = Path(tempfile.mkdtemp(prefix="atlas-pages-"))
    try:
        synthetic_site(site, units)
        times = {"layer": [], "unit": []}
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=browser, args=["--no-sandbox"])
            page = chromium.new_page()
            for _ in range(rounds + 1):  # the first round warms the browser's caches up
                for name, path in (("layer", "blocks.15.project/index.html"), ("unit", "blocks.15.project/7.html")):
                    page.goto((site / path).as_uri(), wait_until="domcontentloaded")
                    ms = page.evaluate("performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd")
                    times[name].append(ms / 1e3)
            chromium.close()
        layer, unit = (statistics.median(times[k][1:]) for k in ("layer", "unit"))
        return [Figure("21a", f"layer page of {units} units ready (DOMContentLoaded)", f"{layer * 1e3:.0f} ms",
                       "target 1 s", layer, f"{layer:.2f} s", "<= 1 s", layer <= 1.0),
                Figure("21b", "unit page ready (DOMContentLoaded)", f"{unit * 1e3:.0f} ms", "target 0.5 s",
                       unit, f"{unit:.2f} s", "<= 0.5 s", unit <= 0.5)]
    finally:
        shutil.rmtree(site, ignore_errors=True)


def concepts(root: Path, per_kind: int) -> Path:
    sys.path.insert(0, str(HERE.parent / "tests"))
    from conftest import _concepts

    return _concepts(root, per_kind)


def unit_figures(quick: bool) -> list[Figure]:
    import featurescope as fs
    from featurescope.core.atlas.build import build_atlas
    from featurescope.core.atlas.units import AtlasSettings
    from featurescope.core.optvis.cache import OptvisCache

    root = Path(tempfile.mkdtemp(prefix="atlas-units-"))
    try:
        model = fs.load_model("efficientnet_lite0", device="cpu")
        folder = concepts(root / "images", 2 if quick else 10)
        settings = AtlasSettings(steps=8, size=64, top=3) if quick else AtlasSettings()
        layer, channels = "blocks.5.expand", "0-7" if quick else "0-15"
        start = time.perf_counter()
        report = build_atlas(model, root / "site", images=folder, layers=[layer], channels=channels,
                             settings=settings, cache=OptvisCache(root / "cache"), workers=0)
        total = time.perf_counter() - start
        files = [p for p in (root / "site").rglob("*") if p.is_file() and p.name != "examples-index.npz"]
        per_unit = sum(p.stat().st_size for p in files) / report.units
        seconds = report.seconds / report.units
        units_in_model = sum(info.out_channels for info in model.layer_info)
        whole = units_in_model * seconds
        figures = [
            Figure("21c", "site bytes per unit at the default settings", f"{per_unit / 1e3:.0f} KB",
                   "target 200 KB", per_unit / 2e5, f"{per_unit / 1e3:.0f} KB", "<= 200 KB", per_unit <= 2e5),
            Figure("21d", f"seconds per unit, Lite0 {layer} (4 pictures x {settings.steps} steps, "
                          f"{settings.size} px)", f"{seconds:.1f} s", f"{report.units} units in {total:.0f} s",
                   None, f"{seconds:.1f} s/unit", "",
                   None, [f"Lite0 has {units_in_model} units in its {len(model.layer_info)} conv/pool layers: "
                          f"about {whole / 3600:.1f} h on this machine, {whole / 3600 / 8:.1f} h on 8 such "
                          f"workers, {whole / 3600 / 64:.2f} h on 64 (units are independent); deeper layers "
                          "cost more per step than blocks.5, so read it as a lower bound"])]
        return figures
    finally:
        shutil.rmtree(root, ignore_errors=True)


def ray_figures(quick: bool) -> list[Figure]:
    import featurescope as fs
    from featurescope.core.atlas.build import AtlasBuild
    from featurescope.core.atlas.ray_engine import run_ray
    from featurescope.core.atlas.units import AtlasSettings
    from featurescope.core.cluster import ray_session
    from featurescope.core.index.build import build_index
    from featurescope.core.optvis.cache import OptvisCache

    root = Path(tempfile.mkdtemp(prefix="atlas-ray-"))
    try:
        model = fs.load_model("efficientnet_lite0", device="cpu")
        index = build_index(model, concepts(root / "images", 2), layers=["blocks.5.expand"], top=3, workers=0)
        settings = AtlasSettings(steps=8 if quick else 64, size=64 if quick else 128, top=3)
        channels = "0-15" if quick else "0-31"
        rates = {}
        with ray_session(None, 2) as _ray:  # started once, outside the timing
            for engine in ("local", "ray", "local", "ray"):
                build = AtlasBuild(model, root / engine, index, ["blocks.5.expand"], channels, settings,
                                   OptvisCache(root / f"cache-{engine}-{len(rates)}"))
                start = time.perf_counter()
                if engine == "ray":
                    for item, images, activations in run_ray(model, build.items, settings, 2):
                        build.accept(item, images, activations)
                else:
                    import torch

                    torch.set_num_threads(2)  # the local engine as the CLI runs it: both cores
                    while not build.step():
                        pass
                rates.setdefault(engine, []).append(build.units / (time.perf_counter() - start))
        local, ray = (statistics.median(rates[k]) for k in ("local", "ray"))
        ratio = ray / local
        return [Figure("21e", "units/s, Ray with 2 actors / the local engine (both cores)",
                       f"{ray:.2f} units/s", f"{local:.2f} units/s", ratio, f"{ratio:.2f}x", ">= 0.9",
                       ratio >= 0.9, ["Ray's start-up (a few seconds) is left out: it is paid once a run"])]
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    from run import machine, table

    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        parser.error("no Chromium: apt-get install chromium")
    header = machine()
    figures = page_figures(64 if args.quick else 1280, 2 if args.quick else 5, browser)
    figures += unit_figures(args.quick)
    figures += ray_figures(args.quick)
    if args.quick:
        for figure in figures:
            figure.met = None
    lines = table(figures)
    print("\n".join(lines))
    notes = [f"- {f.number} {f.name}: {note}" for f in figures for note in f.notes]
    out = args.out or (Path(tempfile.gettempdir(), "featurescope-atlas-quick.md") if args.quick
                       else HERE / "ATLAS_RESULTS.md")
    load = " / ".join(f"{v:.2f}" for v in os.getloadavg())
    out.write_text("\n".join(["# Atlas benchmark results", "",
                              f"Run {datetime.datetime.now().isoformat(timespec='seconds')} with "
                              f"`python benchmarks/bench_atlas.py{' --quick' if args.quick else ''}`.", ""]
                             + [f"- {h}" for h in header] + [f"- load average at end: {load}", ""]
                             + lines + [""] + (["Notes:", ""] + notes + [""] if notes else [])))
    print(f"results written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
