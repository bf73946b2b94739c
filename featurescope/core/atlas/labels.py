"""A unit's label from the index's sub-folders, and how selective it is.

The label is the sub-folder (class, concept) whose images excite the unit most: the
highest mean of the unit's spatial maximum over that sub-folder's images. Selectivity is
the class-selectivity index of Morcos et al. (2018), "On the importance of single
directions for generalization": (mu_max - mu_rest) / (mu_max + mu_rest), where mu_rest is
the mean of the other sub-folders' means. 0 means the unit does not prefer any
sub-folder, 1 that only one sub-folder makes it fire. Means below zero (a layer before
its ReLU) are shifted so the smallest is zero first; the index is defined for
non-negative activity.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

# Below this selectivity a unit is "selective for nothing": its best sub-folder beats the
# mean of the others by less than ~22 % (SI 0.1 <=> mu_max = 1.22 mu_rest).
NOT_SELECTIVE = 0.1


@dataclass(frozen=True)
class UnitLabel:
    """``label``: the best sub-folder, or None when the unit is selective for nothing (or
    the index has no sub-folders); ``best``: that sub-folder all the same; ``selectivity``
    in [0, 1]; ``means``: per sub-folder, the mean spatial maximum."""

    label: Optional[str]
    best: Optional[str]
    selectivity: float
    means: tuple[float, ...]

    def text(self) -> str:
        if self.best is None:
            return "no label (the folder has no sub-folders)"
        if self.label is None:
            return f"selective for nothing (best: {self.best}, selectivity {self.selectivity:.2f})"
        return f"{self.label} (selectivity {self.selectivity:.2f})"


def selectivity_index(means: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(best group per unit, class-selectivity index per unit) of (C, G) ``means``."""
    means = np.asarray(means, dtype=np.float64)
    if means.shape[1] < 2:
        return np.zeros(len(means), np.int64), np.zeros(len(means))
    shifted = means - np.minimum(means.min(axis=1, keepdims=True), 0.0)
    best = shifted.argmax(axis=1)
    top = shifted[np.arange(len(shifted)), best]
    rest = (shifted.sum(axis=1) - top) / (shifted.shape[1] - 1)
    total = top + rest
    index = np.divide(top - rest, total, out=np.zeros_like(top), where=total > 0)
    return best, index


def unit_labels(index, layer: str) -> list[UnitLabel]:
    """One :class:`UnitLabel` per channel of ``layer`` in ``index`` (an Index)."""
    means = index.group_means(layer)
    channels = index.layer_entry(layer)["channels"]
    if means is None:
        return [UnitLabel(None, None, 0.0, ()) for _ in range(channels)]
    groups = index.groups
    best, selectivity = selectivity_index(means)
    return [UnitLabel(groups[b] if s >= NOT_SELECTIVE else None, groups[b], float(s),
                      tuple(float(v) for v in row))
            for b, s, row in zip(best, selectivity, means)]
