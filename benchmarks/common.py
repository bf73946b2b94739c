"""Timing helpers shared by the benchmark figures: interleaved runs, paired ratios."""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Callable, Optional


@dataclass
class Figure:
    """One row of the results table."""

    number: str
    name: str
    ours: str  # what was measured, with its time
    baseline: str
    ratio: Optional[float]  # ours / baseline (or baseline / ours for "x faster" rows)
    ratio_text: str
    target: str = ""
    met: Optional[bool] = None
    notes: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        return "-" if self.met is None else ("met" if self.met else "MISSED")


def clock(wall: bool) -> Callable[[], float]:
    """The timer: wall clock, or this thread's CPU time (user + system, page faults
    included), which other processes on a shared 2-core machine cannot inflate."""
    return time.perf_counter if wall else time.thread_time


def interleaved(candidates: dict[str, Callable[[], object]], rounds: int, warmup: int = 1,
                wall: bool = False) -> dict[str, list[float]]:
    """Run every candidate once per round, in turn, ``rounds`` times (after ``warmup``
    untimed rounds); seconds per run for each. Results are dropped before the next run,
    as the app drops the previous capture when the next one arrives."""
    now = clock(wall)
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for index in range(warmup + rounds):
        for name, fn in candidates.items():
            start = now()
            result = fn()
            elapsed = now() - start
            del result
            if index >= warmup:
                times[name].append(elapsed)
    return times


def paired_ratio(times: dict[str, list[float]], ours: str, baseline: str) -> float:
    """Median over rounds of ours / baseline measured in the same round."""
    return statistics.median(a / b for a, b in zip(times[ours], times[baseline]))


def median_ms(values: list[float]) -> float:
    return statistics.median(values) * 1e3


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of ``values``."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-p * len(ordered) // 100))))
    return ordered[rank - 1]
