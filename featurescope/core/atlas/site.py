"""Writing the atlas site: ``index.html``, a page per layer, a page per unit, ``atlas.json``.

Plain HTML with one stylesheet and one small script beside it, relative links only, so
the site opens from ``file://`` (a USB stick, no server, no network) in any browser. A
unit's page lives at a stable address, ``<layer>/<channel>.html``, that a paper can link.
Pictures load lazily on layer pages (``loading="lazy"`` with fixed sizes), so a layer of
thousands of units opens at once. Every file is written atomically.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Optional
from urllib.parse import quote

from featurescope.core.atlas.assets import SCRIPT, STYLE
from featurescope.core.atlas.labels import UnitLabel
from featurescope.core.atlas.units import VARIANTS
from featurescope.core.io.writers import safe_filename, write_text

# Each caption is followed by the unit's mean activation on that picture.
CAPTIONS = {"channel": "what it looks for", "negative": "what it likes least",
            "facet-1": "another start", "facet-2": "a third start"}


@dataclass
class UnitRecord:
    """One unit as the site shows it. ``pictures``: variant -> (site-relative path or None,
    activation); ``examples``: [{"path", "activation", "box", "crop"}]; ``inputs`` /
    ``outputs``: [{"layer", "channel", "weight"}]; ``votes``: [{"label", "weight"}]."""

    layer: str
    channel: int
    label: UnitLabel
    fired: Optional[float]
    pictures: dict = field(default_factory=dict)
    examples: list = field(default_factory=list)
    inputs: list = field(default_factory=list)
    outputs: list = field(default_factory=list)
    votes: list = field(default_factory=list)

    @property
    def page(self) -> str:
        return f"{layer_folder(self.layer)}/{self.channel}.html"


@dataclass
class LayerRecord:
    name: str
    kind: str
    shape: tuple
    units: list


def layer_folder(layer: str) -> str:
    """The folder of a layer's pages: the layer's name, made safe ("relu#2" -> "relu_2")."""
    return safe_filename(layer)


def href(path: str) -> str:
    """A relative link to a site path (layer names may hold '#', which must be escaped)."""
    return quote(path, safe="/.")


def _page(title: str, depth: int, body: str, header: str) -> str:
    up = "../" * depth
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<title>{escape(title)}</title><link rel="stylesheet" href="{up}style.css">'
            f'<script src="{up}atlas.js"></script></head>\n<body><header>{header}</header>'
            f'<main>{body}</main></body></html>\n')


def _model_line(model: dict) -> str:
    prep = model.get("preprocessing", {})
    trained = "" if model.get("trained", True) else " (untrained)"
    return (f'{escape(str(model.get("name")))}{trained}, weights {escape(str(model.get("weights")))}; '
            f'input {escape(str(prep.get("input_size")))}, mean {escape(str(prep.get("mean")))}, '
            f'std {escape(str(prep.get("std")))}')


def index_page(model: dict, layers: list[LayerRecord]) -> str:
    rows = []
    for layer in layers:
        thumbs = "".join(f'<img loading="lazy" width="40" height="40" alt="" src="{href(u.pictures["channel"][0])}">'
                         for u in layer.units[:8] if u.pictures.get("channel", (None,))[0])
        rows.append(f'<tr><td><a href="{href(layer_folder(layer.name))}/index.html">{escape(layer.name)}</a></td>'
                    f'<td>{escape(layer.kind)}</td><td>{"x".join(str(s) for s in layer.shape)}</td>'
                    f'<td>{len(layer.units)}</td><td>{thumbs}</td></tr>')
    body = ('<h2>Layers, in the order the network runs them</h2><table class="layers"><tr><th>layer</th>'
            '<th>kind</th><th>output (C x H x W)</th><th>units here</th><th></th></tr>'
            + "".join(rows) + '</table><p class="meta">Machine-readable: <a href="atlas.json">atlas.json</a></p>')
    header = f'<h1>Atlas of {escape(str(model.get("name")))}</h1><div class="meta">{_model_line(model)}</div>'
    return _page(f'{model.get("name")}: atlas', 0, body, header)


def _fired(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def layer_page(model: dict, layer: LayerRecord) -> str:
    tiles = []
    for unit in layer.units:
        picture = unit.pictures.get("channel", (None, 0.0))[0]
        image = (f'<img loading="lazy" width="100" height="100" alt="" src="{href(picture.split("/", 1)[1])}">'
                 if picture else '<img width="100" height="100" alt="not drawn yet">')
        label = unit.label.label or ""
        tiles.append(f'<a class="tile" href="{unit.channel}.html" data-channel="{unit.channel}" '
                     f'data-label="{escape(label)}" data-fired="{unit.fired or 0:.4f}" '
                     f'data-selectivity="{unit.label.selectivity:.4f}">{image}'
                     f'<span>{unit.channel}{" · " + escape(label) if label else ""}</span>'
                     f'<span>fired {_fired(unit.fired)}</span></a>')
    controls = ('<div class="controls"><input id="filter" type="search" placeholder="filter: label or channel">'
                ' sort by <select id="order"><option value="channel">channel</option>'
                '<option value="fired">fired</option><option value="selectivity">selectivity</option>'
                '<option value="label">label</option></select></div>')
    header = (f'<a href="../index.html">{escape(str(model.get("name")))}</a> / <h1>{escape(layer.name)}</h1>'
              f'<div class="meta">{escape(layer.kind)}, {"x".join(str(s) for s in layer.shape)}; '
              f'{len(layer.units)} units</div>')
    return _page(f"{layer.name}: {model.get('name')}", 1, controls + f'<div class="tiles" id="tiles">{"".join(tiles)}</div>',
                 header)


def _unit_name(entry: dict) -> str:
    """A linked unit: a link when its page is on the site (``entry["page"]``), else text."""
    text = f'{escape(entry["layer"])} channel {entry["channel"]}'
    return f'<a href="../{href(entry["page"])}">{text}</a>' if entry.get("page") else text


def _unit_links(entries: list, title: str) -> str:
    if not entries:
        return ""
    items = "".join(f'<li>{_unit_name(e)} (weight {e["weight"]:+.3g})</li>' for e in entries)
    return f'<h2>{escape(title)}</h2><ul class="links">{items}</ul>'


def _example(example: dict) -> str:
    crop = example.get("crop")
    picture = (f'<img alt="" loading="lazy" src="{href(crop.split("/", 1)[1])}">' if crop
               else '<p class="missing">the file is missing or unreadable</p>')
    return (f'<figure>{picture}<figcaption>{example["activation"]:.3g}: '
            f'{escape(Path(example["path"]).name)}</figcaption></figure>')


def unit_page(model: dict, layer: LayerRecord, unit: UnitRecord, neighbours: tuple) -> str:
    pictures = "".join(
        f'<figure><img alt="{escape(CAPTIONS[name])}" src="{href(path.split("/", 1)[1])}">'
        f'<figcaption>{escape(CAPTIONS[name])}: {activation:.3g}</figcaption></figure>'
        for name, _o, _s in VARIANTS for path, activation in [unit.pictures.get(name, (None, 0.0))] if path)
    if not pictures:
        pictures = '<p class="missing">Not drawn yet: run the same atlas command again to continue.</p>'
    examples = "".join(_example(e) for e in unit.examples)
    votes = "".join(f'<li>{escape(v["label"])} ({v["weight"]:+.3g})</li>' for v in unit.votes)
    previous, following = neighbours
    nav = " ".join(link for link in (
        f'<a href="{previous}.html">&larr; channel {previous}</a>' if previous is not None else "",
        f'<a href="{following}.html">channel {following} &rarr;</a>' if following is not None else "") if link)
    body = (f'<p>{escape(unit.label.text())}; fired in {_fired(unit.fired)} of the indexed images. {nav}</p>'
            f'<h2>Feature visualisations</h2><div class="pictures">{pictures}</div>'
            + (f'<h2>Top dataset examples (cropped to what the unit sees)</h2><div class="examples">{examples}</div>'
               if examples else "")
            + _unit_links(unit.inputs, "Fed most by") + _unit_links(unit.outputs, "Feeds most")
            + (f'<h2>Classes it votes for</h2><ul class="links">{votes}</ul>' if votes else ""))
    header = (f'<a href="../index.html">{escape(str(model.get("name")))}</a> / '
              f'<a href="index.html">{escape(layer.name)}</a> / <h1>{escape(layer.name)} channel {unit.channel}</h1>')
    return _page(f"{layer.name} channel {unit.channel}: {model.get('name')}", 1, body, header)


def atlas_json(model: dict, layers: list[LayerRecord]) -> dict:
    """The site as data: paths relative to the site (example paths as the index holds them)."""
    return {"model": model, "layers": [{
        "name": layer.name, "kind": layer.kind, "shape": list(layer.shape), "page": f"{layer_folder(layer.name)}/index.html",
        "units": [{"channel": u.channel, "label": u.label.label, "best": u.label.best,
                   "selectivity": u.label.selectivity, "fired": u.fired, "page": u.page,
                   "visualization": u.pictures.get("channel", (None,))[0],
                   "visualizations": {name: {"path": path, "activation": activation}
                                      for name, (path, activation) in u.pictures.items()},
                   "examples": u.examples, "inputs": u.inputs, "outputs": u.outputs, "votes": u.votes}
                  for u in layer.units]} for layer in layers]}


def write_site(out: Path, model: dict, layers: list[LayerRecord]) -> Path:
    """Write every page and ``atlas.json`` under ``out``; the path of ``index.html``."""
    out = Path(out)
    write_text(out / "style.css", STYLE)
    write_text(out / "atlas.js", SCRIPT)
    for layer in layers:
        folder = out / layer_folder(layer.name)
        write_text(folder / "index.html", layer_page(model, layer))
        channels = [u.channel for u in layer.units]
        for i, unit in enumerate(layer.units):
            neighbours = (channels[i - 1] if i else None, channels[i + 1] if i + 1 < len(channels) else None)
            write_text(folder / f"{unit.channel}.html", unit_page(model, layer, unit, neighbours))
    write_text(out / "atlas.json", json.dumps(atlas_json(model, layers), indent=1))
    return write_text(out / "index.html", index_page(model, layers))
