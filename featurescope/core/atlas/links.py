"""What links a unit to the rest of the network, for its atlas page: the units of the
layer before that feed it most, the units of the layer after that it feeds most (both
from the expanded weights of the circuits package: photo-independent), and for a layer
that feeds the class scores directly, the classes it votes for most.

Every link is optional: a model without gradients, a layer the circuits cannot read
(no feeder, not a local function) or a classifier-less network simply has fewer links;
the atlas is still built.
"""
from __future__ import annotations

import logging
from typing import Optional

import numpy as np
import torch

from featurescope.core.errors import FeaturescopeError

log = logging.getLogger(__name__)
TOP = 5  # links of each kind a unit lists


def _strongest(row: np.ndarray, top: int) -> list[int]:
    """The indices of the ``top`` largest |values|, strongest first."""
    order = np.argsort(-np.abs(row), kind="stable")
    return [int(i) for i in order[:top]]


def _net_weights(model, layer: str, source: str) -> Optional[np.ndarray]:
    """(C_out, C_in) the summed expanded kernel from ``source`` to ``layer``: how much a
    uniform unit of source activity moves the layer's channel, nonlinearities taken out."""
    from featurescope.core.circuits.expanded import expanded_weights

    try:
        return expanded_weights(model, layer, source).sum(dim=(2, 3)).numpy()
    except (FeaturescopeError, RuntimeError, MemoryError) as error:
        log.info("no expanded weights %s -> %s: %s", source, layer, error)
        return None


def class_votes(model, layer: str, channels: int) -> Optional[np.ndarray]:
    """(C, classes): how much one unit of channel c over its whole map moves each class
    score through the network's linear part (nonlinearities taken out, as for the expanded
    weights, so the votes do not depend on a photo); one batched pass of the layers after
    ``layer``."""
    from featurescope.core.capture.grad import run_with_grad
    from featurescope.core.capture.trace import Linearised

    module = model.module
    x = torch.zeros((1, model.channels, *model.input_size), device=model.device)
    eye = torch.eye(channels, device=model.device)[:, :, None, None]

    def shifted(output: torch.Tensor) -> torch.Tensor:
        # the rest of the network is affine here, so f(e_c) - f(0) is its Jacobian along
        # channel c; around the grey image's own activity the linear part can be huge
        # (no ReLU6 clamps it) and a unit step would vanish in float32 rounding
        zero = torch.zeros_like(output)
        return torch.cat([zero, zero + eye.to(output.dtype)], 0)

    try:
        with torch.no_grad(), Linearised():
            run = run_with_grad(module, x, [layer], model_name=model.name, grad=False,
                                replace={layer: shifted})
    except (FeaturescopeError, RuntimeError) as error:
        log.info("no class votes for %s: %s", layer, error)
        return None
    output = run.output
    if not torch.is_tensor(output) or output.dim() != 2 or output.shape[0] != channels + 1:
        return None
    return (output[1:] - output[:1]).float().cpu().numpy()


def _voters(graph, target: str) -> set:
    """The layers whose channels reach the class scores with no mixing layer between
    (through pooling, batch norm, a depthwise conv): their channels vote directly."""
    found, stack = set(), list(graph.feeders.get(target, ()))
    while stack:
        name = stack.pop()
        if name not in found:
            found.add(name)
            if name in graph.per_channel:
                stack.extend(graph.feeders.get(name, ()))
    return found


def unit_links(model, plan: list[tuple[str, list[int]]], top: int = TOP) -> dict:
    """{(layer, channel): {"inputs", "outputs", "votes"}} for the units of ``plan``."""
    from featurescope.core.circuits.graph import CLASS, layer_graph

    if not getattr(model, "supports_gradients", True):
        return {}
    try:
        graph = layer_graph(model)
    except FeaturescopeError as error:
        log.info("no wiring for the atlas links: %s", error)
        return {}
    links: dict = {}
    sources = {layer: graph.default_source(layer) for layer in graph.layers}
    voters = _voters(graph, CLASS)
    for layer, channels in plan:
        entry = {c: {"inputs": [], "outputs": [], "votes": []} for c in channels}
        source = sources.get(layer)
        weights = _net_weights(model, layer, source) if source else None
        if weights is not None:
            for c in channels:
                entry[c]["inputs"] = [{"layer": source, "channel": i, "weight": float(weights[c, i])}
                                      for i in _strongest(weights[c], top)]
        # the first layer that mixes this one's channels (a depthwise conv or a pool
        # after it passes channel c on alone: its link would say nothing)
        for after in (name for name, fed in sources.items() if fed == layer and name not in graph.per_channel):
            weights = _net_weights(model, after, layer)
            if weights is not None:
                for c in channels:
                    entry[c]["outputs"] += [{"layer": after, "channel": o, "weight": float(weights[o, c])}
                                            for o in _strongest(weights[:, c], top)]
            break  # the first layer it feeds: the page stays short
        if layer in voters and model.categories:
            votes = class_votes(model, layer, graph.channels.get(layer, 0))
            if votes is not None:
                for c in channels:
                    entry[c]["votes"] = [{"label": model.categories[k], "weight": float(votes[c, k])}
                                         for k in np.argsort(-votes[c], kind="stable")[:top]]
        links.update({(layer, c): value for c, value in entry.items()})
    return links
