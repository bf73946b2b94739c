"""Walking a circuit backwards: from a class (or a channel) down to the first layer.

Each step is a :class:`~featurescope.core.circuits.circuit.Circuit`; the next step's
target is the previous step's strongest exciting source, in the source layer. The walk
ends at a layer that nothing captured feeds (the first convolution, made from the
image's pixels) or after ``steps`` steps. Thumbnails for each channel come from the
feature-visualisation cache when the channel has been visualised there, else they
are the channel's map over the photo.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from featurescope.core.circuits.circuit import Circuit, circuit
from featurescope.core.circuits.graph import CLASS, layer_graph

# The feature-visualisation settings the app and the CLI use by default (the Visualise
# tab's picture, its atlas tiles, `featurescope visualize`): a cached picture made with
# any of them is used as a channel's thumbnail. (steps, size or None for the model's)
THUMBNAIL_SETTINGS = ((256, 128), (64, 64), (512, None), (256, None))


def walk_back(model, image, layer: str, channel: int, *, steps: Optional[int] = None, top: int = 4,
              position: Optional[tuple[int, int]] = None, weights: bool = True,
              progress=None, cancel=None) -> list[Circuit]:
    """The trail from ``channel`` of ``layer`` (or class ``channel`` when ``layer`` is
    "class") down to the first layer: one Circuit per step, each listing its ``top``
    sources. ``position`` pins the first step only (later steps explain their channel's
    mean). ``progress(done, total, text)`` after each step (total: the layers left on
    the default path); ``cancel.raise_if_cancelled()`` before each."""
    graph = layer_graph(model, (layer,))
    trail: list[Circuit] = []
    while True:
        if cancel is not None:
            cancel.raise_if_cancelled()
        step = circuit(model, image, layer, channel, position=position if not trail else None, top=top,
                       check=False, weights=weights)
        trail.append(step)
        if progress is not None:
            progress(len(trail), len(trail) + _layers_left(graph, step.source), f"{step.source}")
        if graph.default_source(step.source) is None or (steps is not None and len(trail) >= steps):
            return trail
        strongest = step.excitatory[0] if step.excitatory else step.sources[0]
        layer, channel = step.source, strongest.channel


def _layers_left(graph, layer: str) -> int:
    count = 0
    while (layer := graph.default_source(layer)) is not None and count < 10_000:
        count += 1
    return count


def cached_visualisation(model, layer: str, channel: int, cache=None) -> Optional[np.ndarray]:
    """The channel's feature visualisation from the cache ((H, W, 3) uint8), made with
    any of the default settings, or None when it was never made (nothing is computed)."""
    if layer == CLASS:
        return None
    try:
        from featurescope.core.optvis.cache import OptvisCache
        from featurescope.core.optvis.hierarchy import natural_objective
        from featurescope.core.optvis.render import image_size, settings_of
        from featurescope.core.optvis.transforms import Robustness
    except ImportError:  # pragma: no cover - optvis is part of the core install
        return None
    cache = cache or OptvisCache()
    objectives = dict.fromkeys((natural_objective(model, layer), "channel"))
    for steps, size in THUMBNAIL_SETTINGS:
        for objective in objectives:
            settings = settings_of(steps, image_size(model, size), 0, objective, Robustness(), 0.05)
            found = cache.get(model, layer, channel, settings)
            if found is not None:
                return found[0]
    return None


def map_over_photo(map_: np.ndarray, picture: Optional[np.ndarray]) -> np.ndarray:
    """A channel's (H, W) map scaled to [0, 1] and laid over the photo (the (H, W, 3)
    picture the model saw), or on its own in colour without a picture."""
    from PIL import Image

    from featurescope.core.analysis.gradcam import overlay
    from featurescope.core.render.grids import colormap_lut

    values = np.nan_to_num(np.asarray(map_, dtype=np.float32))
    low, high = float(values.min()), float(values.max())
    scaled = (values - low) / (high - low) if high > low else np.zeros_like(values)
    if picture is None:
        return colormap_lut("inferno")[1:][np.clip((scaled * 254).round(), 0, 254).astype(np.intp)]
    height, width = picture.shape[:2]
    resized = np.asarray(Image.fromarray(scaled).resize((width, height), Image.BILINEAR))
    return overlay(picture, np.clip(resized, 0, 1), "inferno", alpha=0.8)  # a thumbnail: the map first


def photo_of(model, image) -> Optional[np.ndarray]:
    """The picture the model sees for ``image`` ((H, W, 3) uint8), or None for a bare network."""
    deprocess = getattr(model, "deprocess", None)
    if deprocess is None:
        return None
    from featurescope.core.capture.inputs import as_input

    return deprocess(as_input(model, image))


def follow(model, image, path: list, *, to_first_layer: bool = True, top: int = 4, weights: bool = True,
           progress=None, cancel=None) -> list[Circuit]:
    """The trail along ``path``, a list of (layer, channel) targets a user clicked through
    (each the source of the one before), then on down to the first layer by the
    strongest exciting source when ``to_first_layer``. One Circuit per step."""
    trail: list[Circuit] = []
    for k, (layer, channel) in enumerate(path[:-1]):
        if cancel is not None:
            cancel.raise_if_cancelled()
        trail.append(circuit(model, image, layer, channel, source=path[k + 1][0], top=top, check=False,
                             weights=weights))
        if progress is not None:
            progress(len(trail), len(path), f"{layer}")
    layer, channel = path[-1]
    if not to_first_layer:
        trail.append(circuit(model, image, layer, channel, top=top, check=False, weights=weights))
        return trail
    if layer != CLASS and layer_graph(model, (layer,)).default_source(layer) is None:
        return trail  # the path already ends in a first layer
    done = len(trail)

    def shifted(step, total, text):
        if progress is not None:
            progress(done + step, done + total, text)

    return trail + walk_back(model, image, layer, channel, top=top, weights=weights, progress=shifted,
                             cancel=cancel)
