"""What the next layer receives: the activation after a convolution, from the traced graph.

A convolution's own output is not what the network passes on when a batch norm and an
activation follow it (Conv -> BatchNorm -> ReLU: the Deep Visualization Toolbox and CNN
Explainer show the ReLU's output). :func:`activation_after` finds that activation in the
dataflow graph (core/graph/dataflow.py): it is not guessed from names, so a ReLU that
runs after a residual addition (ResNet's second ReLU of a block) is not claimed for the
convolution before the addition.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from featurescope.core.graph.dataflow import Dataflow

ACTIVATION_KINDS = frozenset({
    "ReLU", "ReLU6", "SiLU", "GELU", "Hardswish", "Hardsigmoid", "LeakyReLU", "ELU", "PReLU",
    "SELU", "CELU", "Mish", "Sigmoid", "Tanh", "Softplus", "Hardtanh", "Swish",
})


@dataclass(frozen=True)
class AfterActivation:
    """``conv`` is followed only by ``norm`` (a norm layer's name, or None when the
    activation follows the convolution directly) and then only by ``activation``."""

    conv: str
    norm: Optional[str]
    activation: str
    norm_kind: Optional[str]
    activation_kind: str

    def describe(self) -> str:
        """'after BatchNorm2d + ReLU (layer1.0.relu)'."""
        chain = f"{self.norm_kind} + {self.activation_kind}" if self.norm else self.activation_kind
        return f"after {chain} ({self.activation})"


def activation_after(graph: Dataflow, layer: str) -> Optional[AfterActivation]:
    """The activation that ``layer`` (a convolution) feeds through at most one norm
    layer, each step the only consumer of the one before; None otherwise."""
    nodes = graph.layer_nodes()
    conv = nodes.get(layer)
    if conv is None or "Conv" not in conv.kind:
        return None
    users: dict = {}
    for node in graph.nodes:
        for source in node.inputs:
            users.setdefault(source, []).append(node)

    def only_user(node):
        following = users.get(node.id, [])
        return following[0] if len(following) == 1 else None

    step = only_user(conv)
    norm = None
    if step is not None and "Norm" in step.kind and step.layer:
        norm, step = step, only_user(step)
    if step is None or step.kind not in ACTIVATION_KINDS or not step.layer:
        return None
    return AfterActivation(layer, norm.layer if norm else None, step.layer,
                           norm.kind if norm else None, step.kind)
