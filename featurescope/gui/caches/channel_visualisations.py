"""Feature visualisations as channel thumbnails, made in the background where the cache
lacks them (the Circuits and Why views' "looks for" pictures).

One background unit per channel, so a click never waits for more than one picture, at
the Visualise tab's atlas settings: a picture made here is that channel's atlas tile
there, and the other way round (both go through the disk cache, core/optvis/cache.py).
Pictures already cached are read with core/circuits/trail.py's ``cached_visualisation``.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable

THUMB_STEPS, THUMB_SIZE = 64, 64


def visualise_missing(jobs: Any, kind: str, model: Any, layer: str, channels: Iterable[int], tag: Any,
                      on_picture: Callable[[tuple], None], label: str = "") -> None:
    """Visualise ``channels`` of ``layer`` as background request ``kind`` (a new request
    of that kind replaces the old); each picture arrives as ``on_picture((tag, channel,
    picture))`` on the GUI thread, ``tag`` telling the caller whether it still wants it;
    ``label`` names the request in the Jobs list (with its Cancel)."""
    channels = list(dict.fromkeys(int(c) for c in channels))
    if jobs is None or not channels:
        return

    def unit_for(channel: int):
        def unit(progress=None, cancel=None):
            from featurescope.core.optvis.cache import OptvisCache
            from featurescope.core.optvis.hierarchy import natural_objective

            made = OptvisCache().visualize(model, layer, [channel], steps=THUMB_STEPS, size=THUMB_SIZE,
                                           objective=natural_objective(model, layer), cancel=cancel)
            return tag, channel, made.images[0]
        return unit

    jobs.submit_units(kind, [unit_for(c) for c in channels], label=label, on_partial=on_picture,
                      on_error=lambda *_: None)
