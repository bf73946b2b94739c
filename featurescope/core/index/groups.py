"""Sub-folders as classes or concepts: the ImageFolder layout (``root/<class>/<image>``).

When every image of an indexed folder sits in a sub-folder and there are at least two of
them, the index keeps, per channel, the sum of its spatial maxima over each sub-folder's
images (``LayerTopK.group_sums``). From those a unit's label follows: the sub-folder whose
images excite it most on average (see :func:`featurescope.core.atlas.labels.unit_labels`).
Sums, not per-image values, so the index stays K values a channel for any number of images
and partials from several workers still simply add.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from featurescope.core.index.reduce import LayerTopK


def folder_groups(paths: Sequence[str]) -> list[str]:
    """The sorted sub-folder names when ``paths`` (relative, POSIX) follow the ImageFolder
    layout (every path inside a sub-folder, at least two sub-folders), else []."""
    firsts = set()
    for path in paths:
        head, slash, _rest = str(path).partition("/")
        if not slash:
            return []
        firsts.add(head)
    return sorted(firsts) if len(firsts) >= 2 else []


def group_ids(paths: Sequence[str], names: Sequence[str]) -> np.ndarray:
    """Per path, the position of its sub-folder in ``names`` (-1 when not among them)."""
    where = {name: i for i, name in enumerate(names)}
    return np.array([where.get(str(p).partition("/")[0], -1) for p in paths], dtype=np.int64)


def regroup(topk: dict[str, LayerTopK], old: Sequence[str], new: Sequence[str]) -> bool:
    """Move each layer's group sums from the columns of ``old`` to those of ``new`` (a
    superset; sub-folders new to the folder start at zero). False when that is impossible
    (a group vanished): the caller then drops the sums."""
    if not set(old) <= set(new):
        return False
    columns = [list(new).index(name) for name in old]
    for layer in topk.values():
        sums = np.zeros((layer.values.shape[0], len(new)), np.float64)
        if layer.group_sums is not None and len(old):
            sums[:, columns] = layer.group_sums
        layer.group_sums = sums
    return True
