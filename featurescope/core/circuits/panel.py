"""What the Circuits view shows for one target, computed off the GUI thread (plain data).

The view (gui/views/circuits_view.py) only presents it: numpy pictures and plain records
cross from the worker to the GUI thread, nothing else. The engine is imported inside
:func:`compute`, so importing this module costs no torch import.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

LISTED = 8  # sources shown per side
CLASS = "class"  # core.circuits.graph.CLASS; importing that module here would pull in torch,
# and the view imports this module when the window is built


@dataclass
class Row:
    """One listed source: channel, contribution, mean activation and its pictures."""

    channel: int
    contribution: float
    activation: float
    map_rgb: np.ndarray
    visualisation: Optional[np.ndarray]
    kernel_rgb: Optional[np.ndarray]


@dataclass
class Shown:
    """What the worker computed for one target (plain data for the GUI thread)."""

    key: tuple
    layer: str
    channel: int
    source: str
    value: float
    total: float
    label: Optional[str]
    excite: list
    inhibit: list
    check: str
    sources: list  # the layers that may be chosen as the source


def compute(model, image, layer: str, channel: int, source: Optional[str], key: tuple, kernel_side: int = 56,
            progress=None, cancel=None) -> Shown:
    """What the Circuits view shows for one target (run on the worker): the circuit and
    its check, the ``LISTED`` strongest sources each way with their maps over the photo,
    cached visualisations and expanded-weight kernels (``kernel_side`` px). ``key`` is
    handed back so the view can drop stale answers."""
    from featurescope.core.circuits.check import describe_check
    from featurescope.core.circuits.circuit import circuit
    from featurescope.core.circuits.expanded import expanded_weights
    from featurescope.core.circuits.graph import layer_graph
    from featurescope.core.circuits.picture import kernel_picture
    from featurescope.core.circuits.trail import cached_visualisation, map_over_photo, photo_of
    from featurescope.core.errors import ModelError

    found = circuit(model, image, layer, channel, source=source, top=None, weights=False)
    if cancel is not None:
        cancel.raise_if_cancelled()
    order = np.argsort(-found.contributions, kind="stable")
    excite = [int(i) for i in order[:LISTED] if found.contributions[i] > 0]
    inhibit = [int(i) for i in order[::-1][:LISTED] if found.contributions[i] < 0]
    kernels = {}
    if layer != CLASS and excite + inhibit:
        try:
            weights = expanded_weights(model, layer, found.source, channels=[channel], sources=excite + inhibit)[0]
            kernels = {i: kernel_picture(weights[k].numpy(), kernel_side) for k, i in enumerate(excite + inhibit)}
        except ModelError:
            kernels = {}
    picture = photo_of(model, image)

    def row(i: int) -> Row:
        return Row(i, float(found.contributions[i]), float(found.activations[i]),
                   map_over_photo(found.maps[i], picture), cached_visualisation(model, found.source, i),
                   kernels.get(i))

    graph = layer_graph(model)
    upstream = graph.upstream(layer) if layer != CLASS else set(graph.order)
    sources = [name for name in graph.order if name in upstream]
    return Shown(key, layer, channel, found.source, found.value, found.total, found.label,
                 [row(i) for i in excite], [row(i) for i in inhibit], describe_check(found.check), sources)
