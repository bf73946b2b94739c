"""Per-channel top-K over a stream of batches, and the merge of partial results.

:class:`ExampleReducer` extends the capture's :class:`TopKReducer`: besides each
channel's K best images by spatial maximum it keeps where that maximum was, the sum of
the maxima and how many images fired the channel anywhere. Images are named by a global
id (their row in the index's file table) and ties are broken by ``rank[id]`` (the rank
of the file's path), so the result does not depend on batch sizes, the order batches
arrive in or the engine: a partial of one worker merges with another's by
:func:`merge_layer`, and the outcome equals one pass over everything.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Optional

import numpy as np
import torch

from featurescope.core.capture.sinks import TopKReducer


@dataclass
class LayerTopK:
    """One layer: ``values`` (C, K) float32 (-inf where empty), ``ids`` (C, K) int64 (-1
    where empty), ``positions`` (C, K, 2) int32 (y, x), ``sums`` (C,) float64 of the
    maxima, ``positive`` (C,) int64 images whose map was > 0 somewhere, ``count`` images
    seen and ``shape`` the (H, W) of the map. ``group_sums`` (C, G) float64: the sum of
    the maxima per sub-folder (the folder's class or concept, see :mod:`.groups`), or
    None when the folder has no such layout."""

    values: np.ndarray
    ids: np.ndarray
    positions: np.ndarray
    sums: np.ndarray
    positive: np.ndarray
    count: int
    shape: tuple[int, int]
    group_sums: Optional[np.ndarray] = None

    @classmethod
    def empty(cls, channels: int, k: int, shape, groups: int = 0) -> "LayerTopK":
        return cls(np.full((channels, k), -np.inf, np.float32), np.full((channels, k), -1, np.int64),
                   np.zeros((channels, k, 2), np.int32), np.zeros(channels, np.float64),
                   np.zeros(channels, np.int64), 0, (int(shape[0]), int(shape[1])),
                   np.zeros((channels, groups), np.float64) if groups else None)


def group_sums_of(maxima: np.ndarray, groups: np.ndarray, count: int) -> np.ndarray:
    """(C, count) sums of the (C, N) ``maxima`` over the images of each group (-1: none)."""
    onehot = np.zeros((maxima.shape[1], count), np.float64)
    member = groups >= 0
    onehot[np.flatnonzero(member), groups[member]] = 1.0
    return maxima.astype(np.float64) @ onehot


def _select(values, ids, positions, rank, k):
    """The k best columns per row: largest value first, ties by smaller rank[id]."""
    keys = np.where(ids >= 0, rank[np.maximum(ids, 0)], np.iinfo(np.int64).max)
    by_rank = np.argsort(keys, axis=1, kind="stable")
    vals = np.take_along_axis(values, by_rank, 1)
    order = np.take_along_axis(by_rank, np.argsort(-vals, axis=1, kind="stable"), 1)[:, :k]
    return (np.take_along_axis(values, order, 1), np.take_along_axis(ids, order, 1),
            np.take_along_axis(positions, order[:, :, None], 1))


def merge_layer(a: LayerTopK, b: LayerTopK, rank: np.ndarray, k: int) -> LayerTopK:
    """The top-k of two partials of one layer (same channels) as if seen in one pass."""
    values, ids, positions = _select(np.concatenate([a.values, b.values], 1),
                                     np.concatenate([a.ids, b.ids], 1),
                                     np.concatenate([a.positions, b.positions], 1), rank, k)
    if values.shape[1] < k:  # pad to k columns so partials always stack
        pad = k - values.shape[1]
        values = np.concatenate([values, np.full((len(values), pad), -np.inf, np.float32)], 1)
        ids = np.concatenate([ids, np.full((len(ids), pad), -1, np.int64)], 1)
        positions = np.concatenate([positions, np.zeros((len(ids), pad, 2), np.int32)], 1)
    if a.group_sums is None or b.group_sums is None:
        group_sums = a.group_sums if b.group_sums is None else b.group_sums
    else:
        group_sums = a.group_sums + b.group_sums
    return LayerTopK(values.astype(np.float32), ids, positions.astype(np.int32), a.sums + b.sums,
                     a.positive + b.positive, a.count + b.count, a.shape, group_sums)


def merge_all(parts: dict, other: dict, rank: np.ndarray, k: int) -> dict:
    """Merge ``other`` ({layer: LayerTopK}) into ``parts`` (changed and returned)."""
    for name, layer in other.items():
        parts[name] = merge_layer(parts[name], layer, rank, k) if name in parts else layer
    return parts


class ExampleReducer(TopKReducer):
    """A capture sink keeping :class:`LayerTopK` per layer for the images of each batch.

    Call :meth:`set_batch` with the global ids of the batch's images before each forward
    pass. ``rank`` (int64 array, id -> rank of its path) breaks ties; it may grow between
    batches (:attr:`rank` is read at each batch). ``groups`` (int array, id -> sub-folder
    number, -1 for none; see :mod:`.groups`) adds per-group sums of the maxima.
    """

    def __init__(self, k: int, rank: np.ndarray, layers: Optional[Iterable[str]] = None,
                 groups: Optional[np.ndarray] = None):
        super().__init__(k, layers)
        self.rank = rank
        self.groups = groups
        self.batch_ids = np.zeros(0, np.int64)
        self.layers_topk: dict[str, LayerTopK] = {}

    def set_batch(self, ids) -> None:
        self.batch_ids = np.asarray(ids, dtype=np.int64)

    def reduce(self, name, output, start):
        n, channels, height, width = output.shape
        flat = output.reshape(n, channels, height * width)
        # amax is about 3x cheaper than max-with-indices; the position is then found only
        # for the maps that entered a top-K (at most C * k per batch, usually far fewer).
        maxima = flat.amax(dim=2).float().cpu().numpy().T  # (C, N)
        ids = np.ascontiguousarray(np.broadcast_to(self.batch_ids[None, :], maxima.shape))
        unknown = np.full(maxima.shape + (2,), -1, np.int32)
        group_count = 0 if self.groups is None else int(self.groups.max(initial=-1)) + 1
        batch = LayerTopK(maxima, ids, unknown, maxima.astype(np.float64).sum(1),
                          (maxima > 0).sum(1).astype(np.int64), n, (height, width),
                          group_sums_of(maxima, self.groups[self.batch_ids], group_count)
                          if group_count else None)
        if name not in self.layers_topk:
            self.layers_topk[name] = LayerTopK.empty(channels, self.k, (height, width), group_count)
        merged = merge_layer(self.layers_topk[name], batch, self.rank, self.k)
        rows, cols = np.nonzero((merged.positions[:, :, 0] < 0) & (merged.ids >= 0))
        if len(rows):
            where_in_batch = {int(file_id): j for j, file_id in enumerate(self.batch_ids)}
            images = torch.as_tensor([where_in_batch[int(i)] for i in merged.ids[rows, cols]],
                                     device=output.device)
            found = flat[images, torch.as_tensor(rows, device=output.device)].argmax(dim=1).cpu().numpy()
            merged.positions[rows, cols, 0] = found // width
            merged.positions[rows, cols, 1] = found % width
        self.layers_topk[name] = merged

    def result(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """As :meth:`TopKReducer.result`: (values (C, k), global ids (C, k))."""
        layer = self.layers_topk[name]
        return torch.from_numpy(layer.values), torch.from_numpy(layer.ids)

    def take(self) -> dict:
        """The partial so far ({layer: LayerTopK}), and start a new one."""
        parts, self.layers_topk = self.layers_topk, {}
        return parts
