"""Building an atlas: the index, the labels, every unit's pictures, the site.

:func:`build_atlas` is the one entry point (the CLI's ``featurescope atlas``, the app's
*File > Build atlas...*, the tests and the benchmark all call it). It is resumable: the
index continues from its file, the pictures come from the feature-visualisation cache,
crops already on the site are kept, and the pages are written again (they are cheap).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from featurescope.core.atlas.labels import unit_labels
from featurescope.core.atlas.links import unit_links
from featurescope.core.atlas.site import LayerRecord, UnitRecord, layer_folder, write_site
from featurescope.core.atlas.units import AtlasSettings, VARIANTS, missing_work, render_item, store_item
from featurescope.core.errors import FeaturescopeError, IndexFileError
from featurescope.core.io.writers import make_folder, write_jpeg
from featurescope.core.progress import CancelToken, ProgressCallback, check, report

INDEX_NAME = "examples-index.npz"  # the index an atlas built from --images keeps in its site


class AtlasError(FeaturescopeError):
    """An atlas that cannot be built as asked (one sentence)."""


@dataclass
class AtlasReport:
    """``site``: the site's index.html; ``units``: units on the site; ``rendered``:
    pictures drawn by this run (the rest came from the cache); ``seconds``: time spent
    drawing; ``index``: the index file used."""

    site: Path
    units: int
    rendered: int
    seconds: float
    index: Optional[Path]

    @property
    def units_per_second(self) -> float:
        return self.rendered / len(VARIANTS) / self.seconds if self.seconds > 0 else 0.0


def choose_channels(spec, count: int, layer: str) -> list[int]:
    """``spec`` ("all", "0-63", "3,9", a list) as the channels of a ``count``-channel layer
    (ranges clipped to the layer, so "0-63" works for smaller layers too)."""
    if spec is None or (isinstance(spec, str) and spec.strip().lower() == "all"):
        return list(range(count))
    from featurescope.core.optvis.render import parse_channels

    chosen = [c for c in parse_channels(spec) if 0 <= c < count]
    if not chosen:
        raise AtlasError(f"{layer} has {count} channels (0 to {count - 1}); none of {spec!r} is among them.")
    return sorted(set(chosen))


def _open_or_build_index(model, out: Path, index, images, layers, top, engine, workers, ray_address,
                         progress, cancel):
    from featurescope.core.index.build import build_index
    from featurescope.core.index.store import open_index

    if index is not None:
        opened = open_index(index)
        why = opened.matches_model(model)
        if why:
            raise IndexFileError(why)
        return opened
    if images is None:
        return None
    return build_index(model, images, layers=layers, top=top, engine=engine, workers=workers,
                       output=out / INDEX_NAME, ray_address=ray_address, progress=progress, cancel=cancel)


def _layers_of(model, index, layers) -> list[str]:
    known = index.layers
    if not layers:
        return known
    missing = [name for name in layers if name not in known]
    if missing:
        raise AtlasError(f"The index holds no layer {missing[0]!r}; index it too (featurescope index "
                         "--layers) or leave it out.")
    return list(layers)


def _site_picture(out: Path, cache, model, layer: str, channel: int, name: str, settings) -> tuple:
    """Copy one cached picture into the site as a JPEG; (site path, activation) or (None, 0)."""
    from featurescope.core.atlas.units import cache_settings

    hit = cache.get(model, layer, channel, cache_settings(model, settings, name))
    if hit is None:
        return None, 0.0
    relative = f"{layer_folder(layer)}/img/{channel}-{name}.jpg"
    target = out / relative
    if not target.is_file():
        write_jpeg(target, hit[0])
    # the negative objective is minus the mean: the site shows the mean the unit reached
    return relative, -float(hit[1]) if name == "negative" else float(hit[1])


def _examples(out: Path, index, layer: str, channel: int, top: int, crops: dict) -> list[dict]:
    from featurescope.core.index.sheet import example_crop

    found = []
    for example in index.top(layer, channel, top):
        relative = f"{layer_folder(layer)}/img/{channel}-ex{example.rank}.jpg"
        target = out / relative
        if not target.is_file():
            try:
                crop = example_crop(example)
                crop.thumbnail((160, 160))
                write_jpeg(target, np.asarray(crop.convert("RGB")))
            except FeaturescopeError:
                relative = None  # moved or broken since indexing: the page says so
        found.append({"path": crops.get(example.path, example.path), "activation": example.activation,
                      "box": list(example.box), "crop": relative})
    return found


class AtlasBuild:
    """An atlas in steps, for callers that interleave it with other work (the app draws
    one piece per background unit); :func:`build_atlas` is the plain loop.

    ``index``: an opened Index; the other arguments as for :func:`build_atlas`.
    :meth:`step` draws the next piece here, :meth:`accept` takes one drawn elsewhere
    (Ray), :meth:`write` writes the site with whatever is drawn so far.
    """

    def __init__(self, model, out, index, layers=None, channels="all",
                 settings: AtlasSettings = AtlasSettings(), cache=None, links=unit_links):
        from featurescope.core.optvis.cache import OptvisCache

        self.model, self.out, self.index, self.settings, self.links = model, Path(out), index, settings, links
        self.cache = cache if cache is not None else OptvisCache()
        self.plan = [(layer, choose_channels(channels, index.layer_entry(layer)["channels"], layer))
                     for layer in _layers_of(model, index, layers)]
        self.units = sum(len(c) for _l, c in self.plan)
        self.items = missing_work(self.cache, model, self.plan, settings)
        self.total = sum(len(item.channels) for item in self.items)  # pictures to draw
        self.done = 0
        self.seconds = 0.0
        self._next = 0
        self._started = time.monotonic()
        self.extra: dict = {}  # (layer, channel) -> {"inputs", "outputs", "votes"}
        self._to_link = list(self.plan) if links is not None else []

    @property
    def finished(self) -> bool:
        return self.done >= self.total

    def step(self, progress: Optional[ProgressCallback] = None, cancel: Optional[CancelToken] = None) -> bool:
        """Draw the next piece, or once all are drawn link the next layer's units to the
        network (:func:`~featurescope.core.atlas.links.unit_links`); True when all is done."""
        if self._next < len(self.items):
            item = self.items[self._next]
            self._next += 1
            self.accept(item, *render_item(self.model, item, self.settings, cancel), progress)
        elif self._to_link:
            layer, channels = self._to_link.pop(0)
            report(progress, self.done, self.total, f"linking {layer} to the layers around it")
            self.extra.update(self.links(self.model, [(layer, channels)]))
        return self._next >= len(self.items) and not self._to_link

    def accept(self, item, images, activations, progress: Optional[ProgressCallback] = None) -> None:
        """Keep one drawn piece (in the cache) and count it."""
        store_item(self.cache, self.model, item, self.settings, images, activations)
        self.done += len(item.channels)
        self.seconds = time.monotonic() - self._started
        report(progress, self.done, self.total, self.progress_text())

    def progress_text(self) -> str:
        rate = self.done / len(VARIANTS) / self.seconds if self.seconds > 0 else 0.0
        left = (self.total - self.done) / len(VARIANTS) / rate if rate > 0 else 0.0
        return f"{rate:.2f} units/s, {int(left // 60)} min {int(left % 60)} s left"

    def write(self) -> Path:
        """Write every page and atlas.json with what is drawn so far; index.html's path."""
        return _write(self.out, self.model, self.index, self.plan, self.settings, self.cache, self.extra)

    def report(self, site: Path) -> AtlasReport:
        return AtlasReport(site, self.units, self.done, self.seconds, getattr(self.index, "path", None))


def build_atlas(model, out, *, index=None, images=None, layers=None, channels="all",
                settings: AtlasSettings = AtlasSettings(), engine: str = "local",
                workers: Optional[int] = None, ray_address: Optional[str] = None, cache=None,
                links=unit_links, progress: Optional[ProgressCallback] = None,
                cancel: Optional[CancelToken] = None) -> AtlasReport:
    """Write the atlas of ``model`` (a LoadedModel) under the folder ``out``.

    ``index``: an index file; or ``images``: a folder, indexed first into
    ``out/examples-index.npz`` (resumed when it exists). ``layers``: layer names
    (default the index's layers); ``channels``: "all", "0-63", ...; ``settings``: steps,
    size, seed and examples per unit; ``engine``: "local" or "ray" (``workers`` actors,
    ``ray_address`` for a cluster). ``cache``: an OptvisCache (default the app's).
    ``links(model, plan) -> {(layer, channel): {"inputs", "outputs", "votes"}}`` adds
    the units that feed each unit, those it feeds and the classes it votes for (default
    :func:`~featurescope.core.atlas.links.unit_links`; None leaves them out). ``progress`` counts
    pictures (four a unit) with units/s and time left; ``cancel`` stops between pieces
    (the site is written with what is done, then Cancelled is raised). Returns an
    :class:`AtlasReport`. Raises AtlasError, IndexFileError, OptvisError, ModelError.
    """
    from featurescope.core.index.build import default_workers

    if engine not in ("local", "ray"):
        raise AtlasError(f"{engine!r} is not an engine; choose local or ray.")
    if index is None and images is None:
        raise AtlasError("An atlas needs dataset examples: give an index (--index) or a folder of images (--images).")
    out = Path(out).expanduser()
    make_folder(out)
    opened = _open_or_build_index(model, out, index, images, layers, settings.top, engine,
                                  workers if workers is not None else default_workers(), ray_address,
                                  progress, cancel)
    build = AtlasBuild(model, out, opened, layers, channels, settings, cache, links)
    report(progress, 0, build.total, f"{build.units} units, {build.total} pictures to draw")
    try:
        if engine == "ray":
            from featurescope.core.atlas.ray_engine import run_ray

            for item, images_, activations in run_ray(model, build.items, settings, workers or 2,
                                                       ray_address, cancel):
                build.accept(item, images_, activations, progress)
            build.items = build.items[:0]  # all drawn there: the steps below only link
        while not build.step(progress, cancel):
            check(cancel)
    finally:
        # also when stopped: the site shows what is done, and the same command continues
        site = build.write()
    return build.report(site)


def _write(out, model, index, plan, settings, cache, extra: dict) -> Path:
    entries = {layer.name: layer for layer in getattr(model, "layer_info", [])}
    records, folder = [], str(index.folder) + "/"
    crops = {}  # absolute example path -> the path as the index holds it
    for path in index.files["path"]:
        crops[folder + str(path)] = str(path)
    for layer, channels in plan:
        labels = unit_labels(index, layer)
        fired = index.fired_fraction(layer) if index.images else None
        units = []
        for channel in channels:
            pictures = {name: _site_picture(out, cache, model, layer, channel, name, settings)
                        for name, _o, _s in VARIANTS}
            unit = UnitRecord(layer, channel, labels[channel], None if fired is None else float(fired[channel]),
                              {k: v for k, v in pictures.items() if v[0]},
                              _examples(out, index, layer, channel, settings.top, crops),
                              **extra.get((layer, channel), {}))
            units.append(unit)
        info = entries.get(layer)
        entry = index.layer_entry(layer)
        shape = tuple(info.output_shape) if info else (entry["channels"], *entry["shape"])
        records.append(LayerRecord(layer, info.kind if info else "", shape, units))
    on_site = {(u.layer, u.channel): u.page for record in records for u in record.units}
    for record in records:  # link only to units that have a page here
        for unit in record.units:
            for entry in (*unit.inputs, *unit.outputs):
                entry["page"] = on_site.get((entry["layer"], entry["channel"]))
    return write_site(out, _model_record(model, index), records)


def _model_record(model, index) -> dict:
    return {"name": model.name, "display_name": model.display_name, "weights": str(model.weights_label),
            "trained": bool(model.trained), "preprocessing": {
                "input_size": list(model.input_size), "mean": list(model.mean), "std": list(model.std)},
            "index": {"folder": str(index.folder), "images": index.images, "complete": index.complete,
                      "groups": index.groups}}
