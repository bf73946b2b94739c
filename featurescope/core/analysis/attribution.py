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
    # a detector's box or a segmenter's region, for the deletion check to read again
    # (core/analysis/dense_why.py); None for a classifier
    reference: Optional[object] = None

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
    if getattr(model, "task", "classification") != "classification":  # a box or a region
        from featurescope.core.analysis.dense_why import dense_attribute

        return dense_attribute(model, image, layer, target, method, progress)
    prep = prepare(model, image, "Attribution")
    baseline = None
    with eval_mode(prep.module):
        if method == "grad_x_act":
            report(progress, 0, 1, "gradient")
            scores, activation = run_layer(prep, layer, "attribution")
            target = check_target(target, scores.detach(), prep.name)
            (gradient,) = torch.autograd.grad(scores[0, target], activation)
            maps = (activation.detach() * gradient)[0]
            report(progress, 1, 1, "gradient")
        else:
            maps, scores, activation, target, baseline = _integrated_gradients(
                prep, layer, target, int(steps), batch, progress, cancel)
        scores = scores.detach()
        logit = float(scores[0, target])
        probability = float(torch.softmax(scores[0].double(), 0)[target])
    maps = maps.float().cpu()
    return Attribution(layer=layer, method=method, target=target, label=prep.label(target),
                       probability=probability, logit=logit,
                       channels=maps.sum(dim=(1, 2)).double().numpy(),
                       maps=maps.numpy(), activations=activation.detach()[0].float().cpu().numpy(),
                       baseline_logit=baseline)


def _integrated_gradients(prep, layer: str, target: Optional[int], steps: int, batch: int,
                          progress, cancel):
    """(maps (C, H, W), the photo's scores (1, classes), the photo's activation (1, C, H, W),
    target, baseline logit): the photo's activation times the gradient integrated from the
    zeroed layer to the photo's, Gauss-Legendre with ``steps`` nodes. The photo (alpha 1)
    and the baseline (alpha 0) ride along with the first piece, weight 0, so one pass of
    the part before the layer serves all (the class is chosen from the photo's row)."""
    nodes, weights = np.polynomial.legendre.leggauss(steps)
    alphas = torch.tensor([0.0, 1.0, *(0.5 * (nodes + 1.0))])
    weights = torch.tensor([0.0, 0.0, *(0.5 * weights)])
    seen = {}
    total = baseline = photo_scores = None
    pieces = chunks(len(alphas), max(2, batch))  # the photo's row comes with the first
    for done, (start, stop) in enumerate(pieces):
        check(cancel)
        report(progress, done, len(pieces), "integrated gradients")

        def scaled(output, piece=alphas[start:stop]):
            photo = seen.setdefault("photo", output.detach()[:1])
            return (piece.to(photo).view(-1, 1, 1, 1) * photo).requires_grad_(True)

        scores, edited = run_tail(prep, layer, scaled, "attribution", grad=True)
        if start == 0:
            photo_scores = scores.detach()[1:2]
            target = check_target(target, photo_scores, prep.name)
            baseline = float(scores[0, target].detach())
        (gradient,) = torch.autograd.grad(scores[:, target].sum(), edited)
        piece = (weights[start:stop].to(gradient).view(-1, 1, 1, 1) * gradient.detach()).sum(dim=0)
        total = piece if total is None else total + piece
    report(progress, len(pieces), len(pieces), "integrated gradients")
    photo = seen["photo"]
    return photo[0] * total, photo_scores, photo, target, baseline
