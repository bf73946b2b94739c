"""The order of the prediction rows while a live video plays.

Ranked strictly, two classes a few tenths of a point apart swap rows on every frame and
the panel flickers. Here a class keeps its row from the last frame unless the one below
it now beats it by more than ``margin``: what the rows show is still the top-k, and no
row is ever more than ``margin`` out of its rank.
"""
from __future__ import annotations

from typing import Sequence

LIVE_MARGIN = 0.02  # two percentage points


def steady_order(previous: Sequence[int], ranked: Sequence[tuple[int, float]],
                 margin: float = LIVE_MARGIN) -> list[int]:
    """The class indices of ``ranked`` ((index, probability), best first), with the
    classes that were shown before (``previous``, top row first) kept in their old order
    where the newer ranking differs by at most ``margin``; new classes come after them in
    rank order and move up like any other."""
    probability = dict(ranked)
    order = [i for i in previous if i in probability]
    order += [i for i, _ in ranked if i not in order]
    # insertion sort: a row moves above the one before it only when it beats it clearly
    for position in range(1, len(order)):
        moving = order[position]
        slot = position
        while slot > 0 and probability[moving] > probability[order[slot - 1]] + margin:
            order[slot] = order[slot - 1]
            slot -= 1
        order[slot] = moving
    return order
