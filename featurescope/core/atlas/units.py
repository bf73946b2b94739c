"""The pictures of an atlas's units: which are missing, and rendering a piece of them.

Every unit gets :data:`VARIANTS`: the channel objective (its main picture and its tile),
the negative objective (what it likes least) and two more starts of the channel objective
(facets: other images that drive it as well). Pictures live in the feature-visualisation
cache (:class:`~featurescope.core.optvis.cache.OptvisCache`), under the same settings the
Visualise tab uses, so the atlas and the app share their work and an interrupted atlas
continues where it stopped.

Work is cut into :class:`WorkItem` pieces (one layer, up to :data:`CHUNK` channels, one
variant), each rendered by :func:`render_item` with no state: the local engine calls it
in a loop and the Ray engine on actors; a channel's picture depends only on its own seed
(``param.seeds_for``), not on the other channels of its piece, so both engines give the
same pictures.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

# (name, objective, seed offset): the channel objective first (the unit's tile).
VARIANTS = (("channel", "channel", 0), ("negative", "negative", 0),
            ("facet-1", "channel", 1), ("facet-2", "channel", 2))
CHUNK = 8  # channels a piece: optvis's own batch, so a piece is one optimisation


@dataclass(frozen=True)
class AtlasSettings:
    """How the units are drawn: Adam ``steps``, image ``size`` (side in pixels, None for
    the model's input size), base ``seed``, ``top`` dataset examples per unit."""

    steps: int = 256
    size: Optional[int] = 128
    seed: int = 0
    top: int = 9


@dataclass(frozen=True)
class WorkItem:
    layer: str
    channels: tuple[int, ...]
    variant: str  # a name in VARIANTS


def variant(name: str) -> tuple[str, int]:
    """(objective, seed offset) of a variant's name."""
    for known, objective, offset in VARIANTS:
        if known == name:
            return objective, offset
    raise KeyError(name)


def cache_settings(model, settings: AtlasSettings, name: str) -> dict:
    """The optvis cache's settings for one variant (the key the Visualise tab uses too)."""
    from featurescope.core.optvis.render import LEARNING_RATE, image_size, settings_of
    from featurescope.core.optvis.transforms import Robustness

    objective, offset = variant(name)
    return settings_of(settings.steps, image_size(model, settings.size), settings.seed + offset,
                       objective, Robustness(), LEARNING_RATE)


def missing_work(cache, model, plan: list[tuple[str, list[int]]], settings: AtlasSettings) -> list[WorkItem]:
    """The pieces still to render for ``plan`` ([(layer, channels)]): only channels whose
    picture is not in ``cache`` yet."""
    items = []
    for name, _objective, _offset in VARIANTS:
        keys = cache_settings(model, settings, name)
        for layer, channels in plan:
            todo = [c for c in channels if not cache.has(model, layer, c, keys)]
            items += [WorkItem(layer, tuple(todo[i:i + CHUNK]), name) for i in range(0, len(todo), CHUNK)]
    # the main pictures of every layer first: a stopped atlas already shows every tile
    order = {name: i for i, (name, _o, _s) in enumerate(VARIANTS)}
    return sorted(items, key=lambda item: order[item.variant])


def render_item(model, item: WorkItem, settings: AtlasSettings, cancel=None) -> tuple[np.ndarray, np.ndarray]:
    """((n, H, W, 3) uint8 images, (n,) activations reached) for one piece."""
    from featurescope.core.optvis.render import visualize

    objective, offset = variant(item.variant)
    made = visualize(model, item.layer, list(item.channels), steps=settings.steps, size=settings.size,
                     seed=settings.seed + offset, objective=objective, cancel=cancel)
    return made.images, made.activations


def store_item(cache, model, item: WorkItem, settings: AtlasSettings, images, activations) -> None:
    keys = cache_settings(model, settings, item.variant)
    for channel, image, activation in zip(item.channels, images, activations):
        cache.put(model, item.layer, channel, keys, np.asarray(image), float(activation))
