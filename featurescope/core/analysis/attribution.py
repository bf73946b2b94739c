"""Which channels of a layer carried a class: each channel's contribution to its score.

Two methods, both giving one number per channel and a map per channel whose sum is that
number:

- ``grad_x_act`` (one forward, one backward): the layer's output times the gradient of
  the class logit with respect to it. A first-order estimate of what the channel adds.
- ``integrated_gradients`` (Sundararajan et al. 2017) at the layer, baseline the layer's
  output set to zero: the output times the gradient averaged along the straight path from
  zero to the output, so the contributions add up to logit(photo) - logit(layer zeroed).
  The path integral uses Gauss-Legendre quadrature, Captum's default, with ``steps``
  nodes. The part of the network before the layer runs once for all the steps
  (core/analysis/tail.py), where Captum's ``LayerIntegratedGradients`` runs the whole
  network once per step.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from featurescope.core.analysis.tail import (check_target, eval_mode, prepare, run_layer, run_tail,
                                             chunks)
from featurescope.core.errors import ModelError
from featurescope.core.progress import check, report

METHODS = ("grad_x_act", "integrated_gradients")


@dataclass
class Attribution:
    """Each channel's contribution to one class's logit at one layer.

    ``channels`` (C,): contributions, positive for channels that speak for the class;
    ``maps`` (C, H, W): where in the layer's map each contribution comes from (each sums
    to its channel's value); ``activations`` (C, H, W): the layer's output for the photo;
    ``target``, ``label``, ``probability`` (softmax, 0..1) and ``logit``: the class
    explained; ``baseline_logit``: the logit with the layer's output zeroed
    (integrated gradients; None for grad_x_act).
    """

    layer: str
    method: str
    target: int
    label: Optional[str]
    probability: float
    logit: float
    channels: np.ndarray
    maps: np.ndarray
    activations: np.ndarray
    baseline_logit: Optional[float] = None

    def top(self, k: int = 10) -> list[int]:
        """The ``k`` channels that speak most for the class, strongest first."""
        order = np.argsort(-self.channels, kind="stable")
        return [int(c) for c in order[:k]]

    def against(self, k: int = 10) -> list[int]:
        """The ``k`` channels that speak most against the class (most negative first)."""
        order = np.argsort(self.channels, kind="stable")
        return [int(c) for c in order[:k] if self.channels[c] < 0]

    @property
    def mean_activations(self) -> np.ndarray:
        """(C,) each channel's mean activation over the map."""
        return self.activations.reshape(len(self.activations), -1).mean(axis=1)


def attribute(model, image, layer: str, target: Optional[int] = None, method: str = "grad_x_act",
              steps: int = 32, batch: int = 64, progress=None, cancel=None) -> Attribution:
    """The contribution of each channel of ``layer`` to class ``target``'s logit.

    ``model``: a LoadedModel or a classification ``nn.Module``; ``image``: a PIL image or a
    (1, 3, H, W) tensor; ``layer``: a layer name as ``featurescope layers`` prints it (any
    layer with a (C, H, W) output); ``target``: a class index (default: the top class);
    ``method``: "grad_x_act" or "integrated_gradients" (``steps`` quadrature nodes, run
    in pieces of at most ``batch``). Raises ModelError for an ONNX model (no gradients),
    an unknown layer, a layer without channels or a class that does not exist.
    """
    if method not in METHODS:
        raise ModelError(f"{method!r} is not an attribution method; choose {' or '.join(METHODS)}.")
    if int(steps) < 1:
        raise ModelError(f"Integrated gradients needs at least 1 step, not {steps}.")
    prep = prepare(model, image, "Attribution")
    with eval_mode(prep.module):
        scores, activation = run_layer(prep, layer, "attribution")
        target = check_target(target, scores.detach(), prep.name)
        score = scores[0, target]
        logit = float(score.detach())
        probability = float(torch.softmax(scores[0].detach().double(), 0)[target])
        baseline = None
        if method == "grad_x_act":
            report(progress, 0, 1, "gradient")
            (gradient,) = torch.autograd.grad(score, activation)
            maps = (activation.detach() * gradient)[0]
            report(progress, 1, 1, "gradient")
        else:
            del scores, score
            photo = activation.detach()[:1]
            del activation
            maps, baseline = _integrated_gradients(prep, layer, photo, target, int(steps), batch,
                                                   progress, cancel)
            activation = photo
    maps = maps.float().cpu()
    return Attribution(layer=layer, method=method, target=target, label=prep.label(target),
                       probability=probability, logit=logit,
                       channels=maps.sum(dim=(1, 2)).double().numpy(),
                       maps=maps.numpy(), activations=activation.detach()[0].float().cpu().numpy(),
                       baseline_logit=baseline)


def _integrated_gradients(prep, layer: str, photo: torch.Tensor, target: int, steps: int,
                          batch: int, progress, cancel):
    """(maps (C, H, W), baseline logit): the photo's activation times the gradient
    integrated from the zeroed layer to the photo's, Gauss-Legendre with ``steps`` nodes."""
    nodes, weights = np.polynomial.legendre.leggauss(steps)
    alphas = torch.tensor(0.5 * (nodes + 1.0), dtype=photo.dtype, device=photo.device)
    weights = torch.tensor(0.5 * weights, dtype=photo.dtype, device=photo.device)
    # The baseline (alpha 0) rides along with the first piece for the logit difference.
    alphas = torch.cat([alphas.new_zeros(1), alphas])
    weights = torch.cat([weights.new_zeros(1), weights])
    total = torch.zeros_like(photo[0])
    baseline = None
    pieces = chunks(len(alphas), batch)
    for done, (start, stop) in enumerate(pieces):
        check(cancel)
        report(progress, done, len(pieces), "integrated gradients")
        piece_alphas = alphas[start:stop]

        def scaled(output, piece_alphas=piece_alphas):
            return (piece_alphas.view(-1, 1, 1, 1) * photo).requires_grad_(True)

        scores, edited = run_tail(prep, layer, scaled, "attribution", grad=True)
        chosen = scores[:, target]
        (gradient,) = torch.autograd.grad(chosen.sum(), edited)
        total += (weights[start:stop].view(-1, 1, 1, 1) * gradient.detach()).sum(dim=0)
        if start == 0:
            baseline = float(chosen[0].detach())
    report(progress, len(pieces), len(pieces), "integrated gradients")
    return photo[0] * total, baseline
