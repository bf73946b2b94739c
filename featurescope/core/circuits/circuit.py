"""``fs.circuit``: which channels of an earlier layer build one channel, on one photo.

For a target channel c of layer L (or a class), the channels of a source layer S
(default: the captured layer that feeds L most directly) ranked by their
contribution (core/circuits/contributions.py), those that excite c and those that
inhibit it, each with its mean activation, its map on the photo and its expanded
weight to c (core/circuits/expanded.py); and the switch-off check
(core/circuits/check.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from featurescope.core.circuits.check import Check, switch_off_check
from featurescope.core.circuits.contributions import Target, contributions, prepare
from featurescope.core.circuits.graph import CLASS
from featurescope.core.errors import ModelError


@dataclass(frozen=True)
class Source:
    """One source channel: its ``contribution`` to the target (positive: it excites the
    target, negative: it inhibits it), its mean ``activation`` on the photo, and its
    ``expanded_weight`` to the target, a (kh, kw) float32 array (None where the
    target has no local link to the source: a class score)."""

    channel: int
    contribution: float
    activation: float
    expanded_weight: Optional[np.ndarray] = None

    def as_dict(self) -> dict:
        return {"channel": self.channel, "contribution": self.contribution, "activation": self.activation}


@dataclass
class Circuit:
    """What builds channel ``channel`` of ``layer`` on one photo, seen from ``source``.

    ``sources``: the ``top`` source channels with the largest contribution in size,
    strongest first (every channel when ``top`` was None); ``excitatory`` /
    ``inhibitory`` split them by sign. ``value``: the target (the channel's mean
    activation, its value at ``position``, or the class score); ``total``: the sum of
    all contributions. ``contributions`` / ``activations``: (C_S,) arrays over every
    source channel; ``maps``: (C_S, H, W) the source layer's output; ``check``: the
    switch-off check or None; ``notes``: why something could not be computed.
    """

    layer: str
    channel: int
    source: str
    position: Optional[tuple[int, int]]
    value: float
    sources: list[Source]
    contributions: np.ndarray
    activations: np.ndarray
    maps: np.ndarray
    check: Optional[Check] = None
    label: Optional[str] = None  # the class name, for a class target
    notes: list[str] = field(default_factory=list)

    @property
    def total(self) -> float:
        return float(self.contributions.sum())

    @property
    def excitatory(self) -> list[Source]:
        return sorted((s for s in self.sources if s.contribution > 0), key=lambda s: -s.contribution)

    @property
    def inhibitory(self) -> list[Source]:
        return sorted((s for s in self.sources if s.contribution < 0), key=lambda s: s.contribution)

    def as_dict(self) -> dict:
        """The JSON the CLI prints: layer, channel, source, sources, check (and more)."""
        result = {"layer": self.layer, "channel": self.channel, "source": self.source,
                  "position": list(self.position) if self.position is not None else None,
                  "value": self.value, "total": self.total,
                  "sources": [s.as_dict() for s in self.sources],
                  "check": self.check.as_dict() if self.check is not None else None}
        if self.label is not None:
            result["label"] = self.label
        return result


def circuit(model, image, layer: str, channel: int, source: Optional[str] = None,
            position: Optional[tuple[int, int]] = None, top: Optional[int] = 8, check: bool = True,
            weights: bool = True) -> Circuit:
    """The channels of ``source`` that build ``channel`` of ``layer`` on ``image``.

    ``model``: a LoadedModel (or an nn.Module in eval mode with a tensor ``image``);
    ``image``: a PIL image or a (1, C, H, W) tensor; ``layer``: a layer name as
    ``featurescope layers`` prints it, or ``"class"`` for class ``channel`` of the
    output; ``source``: an earlier layer (default: the one that feeds ``layer`` most
    directly, looking through depthwise and pooling layers); ``position``: (y, x) in
    ``layer``'s map to explain one value instead of the channel's mean; ``top``: how
    many sources to list (None: all); ``check``: also switch the top 5 sources off
    (and 5 most active, 5 random) and measure the fall; ``weights``: also compute
    the expanded weights. Raises ModelError (one sentence) for a model without
    gradients, unknown layers or channels, or a source that does not feed the layer.
    """
    prepared, source = prepare(model, image, layer, source)
    target = Target(layer, int(channel), None if position is None else (int(position[0]), int(position[1])))
    found = contributions(prepared, source, target)
    order = np.argsort(-np.abs(found.contributions), kind="stable")
    if top is not None:
        order = order[:max(0, int(top))]
    kernels, notes = None, []
    if weights and layer != CLASS and len(order):
        from featurescope.core.circuits.expanded import expanded_weights

        try:  # impulses for the listed sources only
            kernels = expanded_weights(model, layer, source, channels=[target.channel],
                                       sources=[int(i) for i in order])[0].numpy()
        except ModelError as error:
            notes.append(str(error))
    listed = [Source(int(i), float(found.contributions[i]), float(found.activations[i]),
                     None if kernels is None else kernels[k]) for k, i in enumerate(order)]
    checked = switch_off_check(prepared, source, target, found.contributions, found.activations,
                               found.maps.size) if check else None
    label = None
    if layer == CLASS:
        categories = getattr(model, "categories", None)
        label = categories[target.channel] if categories and target.channel < len(categories) else None
    return Circuit(layer, target.channel, source, target.position, found.value, listed, found.contributions,
                   found.activations, found.maps, checked, label, notes)
