"""The Ray engine: the same reduction as the local engine, on Ray Data.

The driver hands Ray the file list (ids and paths); a pool of actors, each holding the
model, reads and decodes its files, runs them through the model with an
:class:`ExampleReducer` and returns that batch's partial top-K; the driver merges the
partials as they arrive. What crosses the network is file paths one way and top-K
records (K values, ids and positions per channel, plus per-channel sums) the other; the
images are read where the actor runs (so the folder must be visible there at the same
path: a shared file system), and activations never leave the actor.

``address`` (or RAY_ADDRESS) joins an existing cluster; without one a local Ray is
started for the run and shut down after it (its start-up takes a few seconds).
"""
from __future__ import annotations

import logging
import pickle
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from featurescope.core.cluster import import_ray, ray_session
from featurescope.core.index.geometry import Preprocessing
from featurescope.core.index.local import BatchDone
from featurescope.core.progress import CancelToken, check


class IndexActor:
    """Holds the model; one call reads, decodes and reduces one batch of files."""

    def __init__(self, module, root: str, preprocessing: Preprocessing, layers, k: int,
                 rank: np.ndarray, threads: int = 1, groups: Optional[np.ndarray] = None):
        import torch

        from featurescope.core.index.geometry import PreprocessTransform
        from featurescope.core.index.reduce import ExampleReducer

        torch.set_num_threads(max(1, int(threads)))
        if not isinstance(module, torch.nn.Module):  # an ObjectRef: one copy per node
            import ray

            module = ray.get(module)
        self.module = module.to("cpu").eval()
        self.root = Path(root)
        self.transform = PreprocessTransform(preprocessing)
        self.shape = (preprocessing.channels, *preprocessing.crop)
        self.layers = list(layers)
        self.reducer = ExampleReducer(k, rank, layers, groups)

    def __call__(self, batch: dict) -> dict:
        import torch

        from featurescope.core.index.dataset import decode
        from featurescope.core.index.local import run_batch

        ids = np.asarray(batch["id"], dtype=np.int64)
        decoded = [decode(self.root, str(path), self.transform, self.shape) for path in batch["path"]]
        images = torch.stack([d[0] for d in decoded])
        ok = np.array([d[1] for d in decoded], dtype=bool)
        partial = run_batch(self.module, self.reducer, images, ids, ok, self.layers)
        record = (ids, ok, [d[2] for d in decoded], [d[3] for d in decoded], [d[4] for d in decoded],
                  partial)
        return {"record": np.array([pickle.dumps(record, protocol=pickle.HIGHEST_PROTOCOL)], dtype=object)}


def run_ray(model, root, items: list[tuple[int, str]], preprocessing: Preprocessing,
            layers: list[str], k: int, rank: np.ndarray, batch_size: int, workers: int,
            cancel: Optional[CancelToken] = None, address: Optional[str] = None,
            num_cpus: Optional[int] = None, groups: Optional[np.ndarray] = None) -> Iterator[BatchDone]:
    """Yield one :class:`BatchDone` per batch, as the Ray actors finish them."""
    import_ray()  # a missing Ray is said at once, even for a folder with nothing new
    if not items:
        return
    with ray_session(address, workers, num_cpus) as ray:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        logging.getLogger("ray.data").setLevel(logging.ERROR)
        context.execution_options.preserve_order = True
        module_ref = ray.put(model.module)
        dataset = ray.data.from_items([{"id": i, "path": p} for i, p in items],
                                      override_num_blocks=max(1, min(len(items) // batch_size + 1, 64)))
        reduced = dataset.map_batches(
            IndexActor, batch_size=batch_size, batch_format="numpy",
            fn_constructor_args=(module_ref, str(root), preprocessing, list(layers), int(k), rank, 1,
                                 groups),
            compute=ray.data.ActorPoolStrategy(size=max(1, int(workers))), num_cpus=1)
        for row in reduced.iter_rows():
            check(cancel)
            ids, ok, reasons, heights, widths, partial = pickle.loads(row["record"])
            yield BatchDone(ids, ok, reasons, heights, widths, partial)

