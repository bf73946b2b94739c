"""Is the explanation true? Switch the channels it names off and watch the class fall.

For k = 1, 2, 5, 10, 20, 50 the top k channels by contribution are set to zero and the
class's probability is read again; the same for the k channels with the highest mean
activation (the obvious guess without attribution) and for k random channels (the mean
of several draws). If the attribution is right, its curve falls fastest. The area under
each curve (probability against k, trapezoids, from k = 0 to the largest k, divided by
it: the mean probability over the range) is its faithfulness score: lower is better for
the contribution ranking, and the gap to the random curve is what the attribution knows.

All the ablations are copies of one layer output, so the part of the network before the
layer runs once and the rest runs on batches of copies (core/analysis/tail.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from featurescope.core.analysis.tail import chunks, eval_mode, prepare, run_tail
from featurescope.core.errors import ModelError
from featurescope.core.progress import check, report

RANKINGS = ("top", "strongest", "random")


@dataclass
class Faithfulness:
    """Deletion curves of one attribution: ``k`` (0 first, then the ks the layer has
    channels for) and for each ranking the class's probability with that many channels
    switched off (``top``: by contribution; ``strongest``: by mean activation; ``random``:
    the mean over ``draws`` random orders). ``auc``: {ranking: area under its curve /
    largest k}; ``target``: the class."""

    layer: str
    target: int
    k: list[int]
    top: list[float]
    strongest: list[float]
    random: list[float]
    auc: dict = field(default_factory=dict)
    draws: int = 5

    def as_dict(self) -> dict:
        """The JSON block of ``featurescope why``."""
        return {"k": list(self.k), "top": list(self.top), "strongest": list(self.strongest),
                "random": list(self.random), "auc": dict(self.auc)}


def area(ks: Sequence[int], values: Sequence[float]) -> float:
    """Mean of the curve over [0, max k] (trapezoids); the value itself for one point."""
    ks = np.asarray(ks, dtype=float)
    values = np.asarray(values, dtype=float)
    if len(ks) < 2 or ks[-1] <= ks[0]:
        return float(values[0])
    return float(np.sum((values[1:] + values[:-1]) * np.diff(ks)) / 2.0 / (ks[-1] - ks[0]))


def faithfulness(model, image, layer: str, attribution, ks: Sequence[int] = (1, 2, 5, 10, 20, 50),
                 draws: int = 5, seed: int = 0, batch: int = 64, progress=None,
                 cancel=None) -> Faithfulness:
    """The deletion curves of ``attribution`` (from :func:`attribute` on the same model,
    image and layer) for ``ks``; see the module docstring. ``draws`` random orders
    (seeded by ``seed``, so the same call gives the same curve); the copies run in
    pieces of ``batch``. Raises ModelError when the attribution is for another layer or
    no k fits the layer's channels."""
    if attribution.layer != layer:
        raise ModelError(f"The attribution is for {attribution.layer!r}, not {layer!r}; "
                         "attribute the same layer first.")
    count = len(attribution.channels)
    wanted = sorted({int(k) for k in ks if 0 < int(k) <= count})
    if not wanted:
        raise ModelError(f"{layer} has {count} channels, so none of k = "
                         f"{', '.join(map(str, ks))} can be switched off.")
    k_values = [0, *wanted]
    generator = np.random.default_rng(seed)
    orders = {"top": [attribution.top(count)],
              "strongest": [[int(c) for c in np.argsort(-attribution.mean_activations, kind="stable")]],
              "random": [list(generator.permutation(count)) for _ in range(max(1, int(draws)))]}
    # One row per (ranking, order, k); row 0 is the photo untouched.
    rows = [np.ones(count, dtype=bool)]
    where = []
    for ranking in RANKINGS:
        for order in orders[ranking]:
            for k in wanted:
                keep = np.ones(count, dtype=bool)
                keep[order[:k]] = False
                rows.append(keep)
                where.append((ranking, k))
    keep_all = torch.from_numpy(np.stack(rows))
    prep = prepare(model, image, "The deletion check")
    target = attribution.target
    probabilities = []
    reference = getattr(attribution, "reference", None)
    read = None
    if reference is not None:  # a detector's box or a segmenter's region, read again
        from featurescope.core.analysis.dense_why import read_reference

        read = read_reference(reference)
        batch = min(batch, 4)  # whole detectors run per copy: a few at a time
    pieces = chunks(len(rows), batch)
    with eval_mode(prep.module), torch.no_grad():
        for done, (start, stop) in enumerate(pieces):
            check(cancel)
            report(progress, done, len(pieces), "switching channels off")
            mask = keep_all[start:stop]

            def switch_off(output, mask=mask):
                keep = mask.to(device=output.device, dtype=output.dtype)[:, :, None, None]
                return output * keep

            scores, _ = run_tail(prep, layer, switch_off, "The deletion check", grad=False, read=read)
            probabilities.append(scores.double().cpu() if read is not None else
                                 torch.softmax(scores.double(), dim=1)[:, target].cpu())
    report(progress, len(pieces), len(pieces), "switching channels off")
    probability = torch.cat(probabilities).numpy()
    curves = {ranking: {k: [] for k in wanted} for ranking in RANKINGS}
    for (ranking, k), value in zip(where, probability[1:]):
        curves[ranking][k].append(float(value))
    result = {ranking: [float(probability[0])] + [float(np.mean(curves[ranking][k])) for k in wanted]
              for ranking in RANKINGS}
    return Faithfulness(layer=layer, target=target, k=k_values, top=result["top"],
                        strongest=result["strongest"], random=result["random"],
                        auc={ranking: area(k_values, result[ranking]) for ranking in RANKINGS},
                        draws=len(orders["random"]))
