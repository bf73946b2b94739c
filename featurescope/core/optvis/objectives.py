"""What the optimiser maximises for each image of the batch (Lucent's ``objectives.py``).

- ``channel``: the mean of the channel's whole map;
- ``neuron``: the channel at the centre position (for an even size the lower-right of
  the four central positions, as Lucent);
- ``negative``: minus the channel's mean: the image the channel likes least.
"""
from __future__ import annotations

import torch

from featurescope.core.errors import OptvisError

OBJECTIVES = ("channel", "neuron", "negative")


def check_objective(objective: str) -> str:
    if objective not in OBJECTIVES:
        raise OptvisError(f"{objective!r} is not an objective featurescope knows; choose one of "
                          f"{', '.join(OBJECTIVES)}.")
    return objective


def objective_values(activation: torch.Tensor, channels: torch.Tensor, objective: str) -> torch.Tensor:
    """(N,) the value image i reaches for ``channels[i]`` in the (N, C, H, W) ``activation``."""
    rows = torch.arange(activation.shape[0], device=activation.device)
    maps = activation[rows, channels.to(activation.device)]  # (N, H, W)
    if objective == "channel":
        return maps.flatten(1).mean(1)
    if objective == "negative":
        return -maps.flatten(1).mean(1)
    if objective == "neuron":
        return maps[:, maps.shape[1] // 2, maps.shape[2] // 2]
    raise OptvisError(f"{objective!r} is not an objective featurescope knows.")  # pragma: no cover
