"""The local engine: a DataLoader decodes in worker processes, this process runs the
model with an :class:`ExampleReducer` as the capture's sink, one batch at a time."""
from __future__ import annotations

from typing import Callable, Iterator, Optional

import numpy as np
import torch

from featurescope.core.capture.capture import capture_into
from featurescope.core.index.dataset import folder_loader
from featurescope.core.index.geometry import Preprocessing
from featurescope.core.index.reduce import ExampleReducer
from featurescope.core.progress import CancelToken, check


class BatchDone:
    """What one batch gave: ``ids`` (int64), ``ok`` (bool), ``reasons``, original
    ``heights`` / ``widths`` per file, and ``partial`` ({layer: LayerTopK}) for the files
    that were read."""

    def __init__(self, ids, ok, reasons, heights, widths, partial: dict):
        self.ids = np.asarray(ids, dtype=np.int64)
        self.ok = np.asarray(ok, dtype=bool)
        self.reasons = list(reasons)
        self.heights = np.asarray(heights, dtype=np.int32)
        self.widths = np.asarray(widths, dtype=np.int32)
        self.partial = partial


def run_batch(model, reducer: ExampleReducer, images: torch.Tensor, ids, ok, layers) -> dict:
    """Reduce the readable images of one batch; the partial ({layer: LayerTopK})."""
    ok = np.asarray(ok, dtype=bool)
    if ok.any():
        keep = torch.from_numpy(ok)
        reducer.set_batch(np.asarray(ids, dtype=np.int64)[ok])
        capture_into(model, images[keep] if not ok.all() else images, [reducer], layers=layers)
    return reducer.take()


def run_local(model, root, items: list[tuple[int, str]], preprocessing: Preprocessing,
              layers: list[str], k: int, rank: np.ndarray, batch_size: int, workers: int,
              cancel: Optional[CancelToken] = None,
              multiprocessing_context: Optional[str] = None,
              groups: Optional[np.ndarray] = None) -> Iterator[BatchDone]:
    """Yield one :class:`BatchDone` per batch of ``items`` ([(id, relative path)]);
    ``groups`` (id -> sub-folder number) adds per-sub-folder sums."""
    reducer = ExampleReducer(k, rank, layers, groups)
    loader = folder_loader(root, items, preprocessing, batch_size, workers, multiprocessing_context)
    iterator = iter(loader)
    try:
        for images, ids, ok, reasons, heights, widths in iterator:
            check(cancel)
            ids, ok = ids.numpy(), ok.numpy()
            partial = run_batch(model, reducer, images, ids, ok, layers)
            yield BatchDone(ids, ok, reasons, heights.numpy(), widths.numpy(), partial)
    finally:
        # Stop the worker processes now (Ctrl-C, cancel), not when the iterator is collected.
        shutdown: Optional[Callable] = getattr(iterator, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()
