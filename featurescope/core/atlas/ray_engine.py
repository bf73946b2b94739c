"""The atlas's pictures on Ray: a pool of actors, each holding the model, draws pieces of
units (:class:`~featurescope.core.atlas.units.WorkItem`); only the finished pictures (a
few uint8 images and activations a piece) come back to the driver, which puts them into
the cache. Every unit is independent, so N actors draw about N times as fast; the same
seed gives the same pictures as the local engine (a channel's start depends only on its
own seed)."""
from __future__ import annotations

from typing import Iterator, Optional

from featurescope.core.atlas.units import AtlasSettings, WorkItem, render_item
from featurescope.core.progress import CancelToken, check


class AtlasActor:
    """Holds the model; :meth:`render` draws one piece."""

    def __init__(self, model, settings: AtlasSettings, threads: int = 1):
        import torch

        torch.set_num_threads(max(1, int(threads)))
        self.model = model
        self.settings = settings

    def render(self, item: WorkItem):
        images, activations = render_item(self.model, item, self.settings)
        return item, images, activations


def run_ray(model, items: list[WorkItem], settings: AtlasSettings, workers: int,
            address: Optional[str] = None, cancel: Optional[CancelToken] = None) -> Iterator[tuple]:
    """Yield (item, images, activations) per piece as the actors finish them."""
    from featurescope.core.cluster import ray_session

    if not items:
        return
    with ray_session(address, workers) as ray:
        from ray.util import ActorPool

        remote = ray.remote(num_cpus=1)(AtlasActor)
        model_ref = ray.put(model)
        pool = ActorPool([remote.remote(model_ref, settings) for _ in range(max(1, int(workers)))])
        for result in pool.map_unordered(lambda actor, item: actor.render.remote(item), items):
            check(cancel)
            yield result
