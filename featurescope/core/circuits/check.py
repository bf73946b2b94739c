"""Do the contributions mean anything? Switch sources off and watch the target fall.

Three numbers beside a ranking: how much the target falls when its ``count`` strongest
sources by contribution are switched off (set to zero), when its ``count`` most active
sources are (the largest mean activation on the photo: the naive guess), and when
``count`` random ones are (the mean over ``draws`` draws). If the contributions are a
faithful account, the first fall is the largest. All variants run as one batch: S's
output is replaced by a stack of masked copies and the network runs S -> L once.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional, Sequence

import numpy as np
import torch

from featurescope.core.circuits.contributions import Prepared, Target, batched_pass
from featurescope.core.circuits.graph import CLASS

# Elements of one batched pass's stack of masked copies of S's output.
_ROW_ELEMENTS = 48_000_000


@dataclass(frozen=True)
class SwitchOff:
    """One kind of switch-off: the ``channels`` set to zero (for random draws, those of
    the first draw), the target's ``value`` without them (mean over draws) and its
    ``fall`` (target before minus after; positive: the target went down)."""

    channels: list[int]
    value: float
    fall: float


@dataclass(frozen=True)
class Check:
    """The three switch-offs for one target: ``target`` is its value with every source
    on; ``count`` sources switched off each time; ``draws`` random draws."""

    target: float
    count: int
    draws: int
    top_contribution: SwitchOff
    most_active: SwitchOff
    random: SwitchOff

    @property
    def passed(self) -> bool:
        """Switching the top sources off lowered the target more than the most active
        and the random ones did."""
        return self.top_contribution.fall > max(self.most_active.fall, self.random.fall)

    def as_dict(self) -> dict:
        return asdict(self)


def switch_off_check(prepared: Prepared, source: str, target: Target, contributions: np.ndarray,
                     activations: np.ndarray, source_size: int, count: int = 5, draws: int = 8,
                     seed: int = 0) -> Check:
    """The :class:`Check` of ``target`` with sources ``source`` (contributions and mean
    activations as :func:`~featurescope.core.circuits.contributions.contributions` gives
    them): one batched pass of 2 + ``draws`` rows."""
    return switch_off_checks(prepared, source, target, [target.channel], contributions[None],
                             activations, source_size, count, draws, seed)[0]


def switch_off_checks(prepared: Prepared, source: str, target: Target, channels: Sequence[int],
                      contributions: np.ndarray, activations: np.ndarray, source_size: int,
                      count: int = 5, draws: int = 8, seed: int = 0) -> list:
    """:func:`switch_off_check` for several channels of the target's layer at once
    (``contributions`` (len(channels), C_S); ``source_size``: elements of S's output),
    every switch-off of every channel in one batch (chunked to keep memory bounded):
    a :class:`Check` per channel."""
    sources = contributions.shape[1]
    count = max(1, min(int(count), sources))
    draws = max(1, int(draws))
    rng = np.random.default_rng(seed)
    active = [int(c) for c in np.argsort(-activations, kind="stable")[:count]]
    plans, rows = [], [(None, [])]  # (target channel, channels off); row 0: nothing off
    for k, channel in enumerate(channels):
        top = [int(c) for c in np.argsort(-contributions[k], kind="stable")[:count]]
        random = [[int(c) for c in rng.choice(sources, size=count, replace=False)] for _ in range(draws)]
        plans.append((top, random, len(rows)))
        rows += [(channel, top), (channel, active)] + [(channel, r) for r in random]
    values = np.zeros(len(rows))
    before = {}
    chunk = max(1, _ROW_ELEMENTS // max(1, int(source_size)))
    for start in range(0, len(rows), chunk):
        part = rows[start:start + chunk]
        keep = torch.ones((len(part), sources))
        for r, (_channel, off) in enumerate(part):
            keep[r, off] = 0

        def masked(output, keep=keep):
            shape = (keep.shape[0], sources, *([1] * (output.dim() - 2)))
            return output[:1].detach() * keep.to(device=output.device, dtype=output.dtype).view(shape)

        layers = [] if target.layer == CLASS else [target.layer]
        with torch.no_grad():
            run = batched_pass(prepared, source, target.layer, masked, layers, grad=False)
            output = run.output if target.layer == CLASS else run.activations[target.layer]
            # row 0 switches nothing off: its value is every channel's "before"
            picked = [channel if channel is not None else channels[0] for channel, _ in part]
            got = target.values(output, torch.tensor(picked, device=output.device)).double().cpu().numpy()
            if start == 0:
                all_channels = torch.tensor(list(channels), device=output.device)
                whole = Target(target.layer, 0, target.position).values(output[:1].expand(
                    len(channels), *output.shape[1:]), all_channels)
                before = dict(zip(channels, whole.double().cpu().numpy()))
        values[start:start + len(part)] = got
    checks = []
    for channel, (top, random, first) in zip(channels, plans):
        base = float(before[channel])

        def switch(off, value, base=base) -> SwitchOff:
            return SwitchOff(off, float(value), base - float(value))

        checks.append(Check(base, count, draws, switch(top, values[first]), switch(active, values[first + 1]),
                            switch(random[0], values[first + 2:first + 2 + draws].mean())))
    return checks


def describe_check(check: Optional[Check]) -> str:
    """One line for people: how far the target fell in each case (negative: it rose)."""
    if check is None:
        return ""
    return (f"switching off {check.count} sources lowers the target ({check.target:.4g}) by "
            f"{check.top_contribution.fall:.4g} (top by contribution), {check.most_active.fall:.4g} "
            f"(most active), {check.random.fall:.4g} (random, mean of {check.draws})")
