"""Edges to shapes in one picture: visualisations of a few layers from first to last.

:func:`hierarchy_layers` picks layers spread evenly over the network's full
convolutions (depthwise ones show little on their own); :func:`strongest_channels`
ranks a layer's channels by their mean activation on a photo; :func:`hierarchy`
visualises them (through the disk cache when one is given) and :func:`poster` lays
the rows out as one labelled image.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from featurescope.core.capture.layers import CONV_TYPES
from featurescope.core.errors import OptvisError
from featurescope.core.optvis.render import Visualization, visualize
from featurescope.core.progress import check, report


# A row of 32 tiles of 128 px is a 4,500 px wide poster; more is no longer one picture
# (and 5 layers x 512 channels would run for hours and fill the cache).
MAX_PER_LAYER = 32


@dataclass
class HierarchyRow:
    layer: str
    depth: float  # 0 = first layer, 1 = last
    visualization: Visualization


def natural_objective(model, layer: str) -> str:
    """"neuron" for the network's first convolution, else "channel".

    The first convolution is linear in the image, so the mean of its map is largest for
    a flat, saturated colour: the channel objective shows only a colour. Its centre
    neuron shows what the filter detects (an edge, a colour blob, a grating)."""
    infos = list(getattr(model, "layer_info", None) or ())
    if infos and infos[0].name == layer and infos[0].kind in CONV_TYPES:
        return "neuron"
    return "channel"


def hierarchy_layers(model, count: int = 5) -> list[str]:
    """``count`` convolution layers spread evenly from the first to the last (full
    convolutions preferred over depthwise ones)."""
    infos = [info for info in model.layer_info if info.kind in CONV_TYPES]
    full = [info for info in infos if not info.groups or info.groups == 1]
    candidates = full if len(full) >= min(count, 2) else infos
    if not candidates:
        raise OptvisError(f"{model.name} has no convolution layers to visualise.")
    if len(candidates) <= count:
        return [info.name for info in candidates]
    picks = np.linspace(0, len(candidates) - 1, count).round().astype(int)
    return [candidates[i].name for i in dict.fromkeys(picks.tolist())]


def strongest_channels(model, image, layer: str, count: int) -> list[int]:
    """The ``count`` channels of ``layer`` with the largest mean activation on ``image``
    (a PIL image), strongest first."""
    from featurescope.core.capture.capture import capture

    maps = capture(model, image, layers=[layer])[layer]  # (C, H, W)
    means = maps.flatten(1).mean(1)
    return [int(c) for c in means.argsort(descending=True)[:count]]


def hierarchy(model, layers: Optional[list] = None, per_layer: int = 6, image=None, steps: int = 256,
              size=128, seed: int = 0, cache=None, progress=None, cancel=None) -> list[HierarchyRow]:
    """One row per layer of ``layers`` (default :func:`hierarchy_layers`): the
    visualisations of its ``per_layer`` strongest channels for ``image`` (a PIL image),
    or of channels 0, 1, ... without one. ``cache``: an OptvisCache (or None). The
    first convolution is shown by its centre neuron (:func:`natural_objective`)."""
    if not 1 <= int(per_layer) <= MAX_PER_LAYER:
        raise OptvisError(f"A poster shows 1 to {MAX_PER_LAYER} channels per layer, not {per_layer}.")
    from featurescope.core.optvis.render import image_size

    image_size(model, size)  # too small or too large: said before the first layer runs
    layers = list(layers) if layers else hierarchy_layers(model)
    order = {name: i for i, name in enumerate(model.layers)}
    rows = []
    for index, layer in enumerate(layers):
        check(cancel)
        info = model.find_layer_info(layer) if hasattr(model, "find_layer_info") else None
        if info is None:
            raise OptvisError(f"{layer!r} is not a layer of {model.name}.")
        count = min(per_layer, info.out_channels or per_layer)
        channels = strongest_channels(model, image, layer, count) if image is not None \
            else list(range(count))

        def sub_progress(done, total, text, index=index):
            report(progress, index * total + done, len(layers) * total, text)

        run = cache.visualize if cache is not None else visualize
        made = run(model, layer, channels, steps=steps, size=size, seed=seed,
                   objective=natural_objective(model, layer), progress=sub_progress, cancel=cancel)
        depth = order.get(layer, 0) / max(1, len(order) - 1)
        rows.append(HierarchyRow(layer, depth, made))
    return rows


def poster(rows: list[HierarchyRow], title: str = "", tile: int = 128, gap: int = 6) -> np.ndarray:
    """The rows as one (H, W, 3) uint8 picture: a label column, then the tiles."""
    from PIL import Image, ImageDraw

    columns = max(len(row.visualization) for row in rows)
    label_w, title_h = 190, (28 if title else 0)
    width = label_w + columns * (tile + gap) + gap
    height = title_h + len(rows) * (tile + gap) + gap
    canvas = Image.new("RGB", (width, height), (24, 24, 24))
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((gap, 8), title, fill=(235, 235, 235))
    for r, row in enumerate(rows):
        top = title_h + gap + r * (tile + gap)
        draw.text((gap, top + tile // 2 - 14), row.layer, fill=(235, 235, 235))
        draw.text((gap, top + tile // 2 + 2), f"depth {row.depth:.0%}", fill=(160, 160, 160))
        for c, (channel, picture) in enumerate(zip(row.visualization.channels, row.visualization.images)):
            left = label_w + gap + c * (tile + gap)
            canvas.paste(Image.fromarray(picture).resize((tile, tile), Image.BILINEAR), (left, top))
            draw.text((left + 3, top + 2), str(channel), fill=(255, 255, 255))
    return np.asarray(canvas)
