"""Switching channels off (ablation): zero some channels of one layer during the forward
pass and see what the network predicts without them.

The zeroing is a capture sink (:class:`~featurescope.core.capture.sinks.ZeroChannels`)
that hands the rest of the network an edited copy of the layer's output, so the later
layers' maps in the returned capture are the ones the network computed without those
channels; the plain capture is untouched and pays nothing.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Optional

from featurescope.core.errors import ModelError


@dataclass
class ClassChange:
    """One class before and after: probabilities in 0..1."""

    label: str
    index: int
    before: float
    after: float

    @property
    def change(self) -> float:
        return self.after - self.before


@dataclass
class Ablation:
    """What switching ``channels`` of ``layer`` off did.

    ``before`` / ``after``: the top predictions (Prediction records) with all channels
    and with those channels zeroed; ``changes``: the classes in either top list, with
    both probabilities, the one that lost most first; ``result``: the CaptureResult of
    the ablated pass (its maps after ``layer`` show the effect; ``layer`` itself shows
    the zeroed channels); ``original``: the result it is compared with.
    """

    layer: str
    channels: list[int]
    before: list
    after: list
    changes: list[ClassChange]
    result: object
    original: object

    @property
    def top_changed(self) -> bool:
        return bool(self.before and self.after and self.before[0].index != self.after[0].index)


def _probabilities(result):
    import torch

    if result.logits is None:
        return None
    return torch.softmax(result.logits.double(), dim=0)


def ablate(model, image, layer: str, channels: Iterable[int], top: int = 5,
           original=None) -> Ablation:
    """Run ``image`` through ``model`` with ``channels`` of ``layer`` set to zero.

    ``image``: a PIL image or a (1, 3, H, W) tensor (or a CaptureResult, whose input
    is reused); ``original``: the capture without ablation if you have it (else one is
    made). Returns an :class:`Ablation` with the top-``top`` predictions before and
    after. Raises ModelError for an unknown layer or a channel it does not have, and
    for a network without class scores.
    """
    from featurescope.core.capture.capture import capture
    from featurescope.core.capture.result import CaptureResult
    from featurescope.core.capture.sinks import ZeroChannels

    if isinstance(image, CaptureResult):
        original = image if original is None else original
        image = image.input
    if original is None:
        original = capture(model, image)
        if layer not in original.info:  # a block, an activation...: asked for by name
            original = capture(model, image, layers=[layer], stop_early=False)
    model_name = getattr(model, "name", None) or original.model_name
    if layer not in original.info:
        raise ModelError(f"{model_name} has no captured layer named {layer!r}; "
                         "`featurescope layers` lists them.")
    count = original.info[layer].output_shape[0]
    wanted = sorted({int(c) for c in channels})
    bad = [c for c in wanted if not 0 <= c < count]
    if bad:
        raise ModelError(f"{layer} has channels 0 to {count - 1}; "
                         f"{', '.join(map(str, bad))} {'is' if len(bad) == 1 else 'are'} not among them.")
    if original.logits is None:
        raise ModelError(f"{model_name} gives no class scores, so switching channels off "
                         "has no predictions to compare.")
    sink = ZeroChannels(layer, wanted)
    # the edit sees only captured layers: a module outside the conv/pool set is named
    others = any(info.groups is None for info in original.info.values())
    ablated = capture(model, original.input, layers=list(original.layers) if others else None,
                      edits=[sink], memory_budget=original.memory_budget, stop_early=False)
    p_before, p_after = _probabilities(original), _probabilities(ablated)
    before, after = original.predictions(top), ablated.predictions(top)
    indices = list(dict.fromkeys([p.index for p in before] + [p.index for p in after]))
    labels = {p.index: p.label for p in before + after}
    changes = [ClassChange(labels[i], i, float(p_before[i]), float(p_after[i])) for i in indices]
    changes.sort(key=lambda c: c.change)
    return Ablation(layer, wanted, before, after, changes, ablated, original)


def strongest_channels(result, layer: str, count: int = 5,
                       region: Optional[tuple[int, int, int, int]] = None) -> list[int]:
    """The ``count`` channels of ``layer`` with the largest mean activation, over the
    whole map or over ``region`` (y0, x0, y1, x1 in map coordinates, end exclusive):
    the units to try switching off first."""
    maps = result[layer]
    if region is not None:
        y0, x0, y1, x1 = region
        maps = maps[:, y0:y1, x0:x1]
    means = maps.flatten(1).mean(dim=1)
    return [int(i) for i in means.argsort(descending=True)[:count]]
