"""The CAM family: how each method weighs a layer's channels into one map.

Each function takes the layer's output ``A`` (C, h, w) for the photo, and where the
method needs them the gradients ``G`` of the class logit with respect to it, and returns
the weighted activations (C, h, w) whose channel sum (or first principal component, with
``eigen_smooth``) is the map before the ReLU, scaling and resizing that all methods share
(core/analysis/gradcam.py). The formulas are the ``grad-cam`` package's
(pytorch_grad_cam 1.5), which the tests compare against:

- gradcam (Selvaraju et al. 2017): each channel weighted by its mean gradient;
- gradcam++ (Chattopadhay et al. 2018): positive gradients weighted by the second-order
  coefficients alpha = g^2 / (2 g^2 + sum(A) g^3);
- xgradcam (Fu et al. 2020): gradients weighted by the activation's share of its sum;
- layercam (Jiang et al. 2021): positive gradient times activation, position by position;
- hirescam (Draelos & Carin 2020): gradient times activation, position by position;
- eigencam (Muhammad & Yeasin 2020): the first principal component of the activations;
- scorecam (Wang et al. 2020): each channel's map, upsampled and scaled to 0..1, masks
  the photo; the softmax over channels of the class logits of the masked photos;
- ablationcam (Desai & Ramaswamy 2020): the relative drop of the class logit when the
  channel is switched off.

Score-CAM runs the network once per channel and Ablation-CAM the part after the layer
once per channel: both in batches, with progress and cancel. Score-CAM runs a channel
whose map is constant once for all of them (its mask is all zeros: the same input).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from featurescope.core.progress import check, report

GRADIENT_METHODS = ("gradcam", "gradcam++", "xgradcam", "layercam", "hirescam")
BATCHED_METHODS = ("scorecam", "ablationcam")
CAM_METHODS = (*GRADIENT_METHODS, "eigencam", *BATCHED_METHODS)
ABLATION_VALUE = 1e7  # below the layer's minimum when it has no zero floor (grad-cam's)


def weighted_activations(method: str, A: torch.Tensor, G: torch.Tensor = None) -> torch.Tensor:
    """(C, h, w): the activations weighted as gradient method ``method`` does."""
    if method == "gradcam":
        return G.mean(dim=(1, 2))[:, None, None] * A
    if method == "gradcam++":
        squared = G * G
        cubed = squared * G
        total = A.sum(dim=(1, 2))[:, None, None]
        alpha = squared / (2 * squared + total * cubed + 1e-6)
        alpha = torch.where(G != 0, alpha, torch.zeros_like(alpha))
        return (torch.relu(G) * alpha).sum(dim=(1, 2))[:, None, None] * A
    if method == "xgradcam":
        total = A.sum(dim=(1, 2))[:, None, None]
        return (G * A / (total + 1e-7)).sum(dim=(1, 2))[:, None, None] * A
    if method == "layercam":
        return torch.relu(G) * A
    if method == "hirescam":
        return G * A
    raise ValueError(f"{method!r} is not a gradient CAM method")


def first_component(weighted: torch.Tensor) -> torch.Tensor:
    """(h, w): the positions projected on the first principal component of the channels
    (eigen smoothing, Eigen-CAM). In float32 numpy, as grad-cam does, so the SVD's sign
    comes out the same."""
    values = np.nan_to_num(weighted.detach().cpu().numpy().astype(np.float32))
    channels, height, width = values.shape
    rows = values.reshape(channels, -1).T
    rows = rows - rows.mean(axis=0)
    _u, _s, vt = np.linalg.svd(rows, full_matrices=False)
    return torch.from_numpy(np.float32((rows @ vt[0]).reshape(height, width)))


def score_cam_weights(module, x: torch.Tensor, A: torch.Tensor, target: int, batch: int = 32,
                      progress=None, cancel=None) -> torch.Tensor:
    """(C,): Score-CAM's channel weights. ``x`` (1, 3, H, W) the photo, ``A`` (C, h, w).
    Each channel's map, upsampled (bilinear, corners aligned) and scaled to 0..1, masks
    the photo; the class logits of the masked photos, softmaxed over the channels."""
    with torch.inference_mode():
        upsampled = F.interpolate(A[None].to(x.dtype), size=x.shape[-2:], mode="bilinear",
                                  align_corners=True)[0]
        flat = upsampled.flatten(1)
        low, high = flat.min(dim=1).values, flat.max(dim=1).values
        masks = (upsampled - low[:, None, None]) / (high - low + 1e-8)[:, None, None]
        constant = (high - low) == 0
        # Every constant channel gives the same (black) input: run the first of them only.
        runs = [int(c) for c in torch.nonzero(~constant).flatten()]
        constant_ids = [int(c) for c in torch.nonzero(constant).flatten()]
        if constant_ids:
            runs.append(constant_ids[0])
        scores = torch.empty(len(A), dtype=torch.float64, device=x.device)
        pieces = [runs[i:i + batch] for i in range(0, len(runs), batch)]
        for done, piece in enumerate(pieces):
            check(cancel)
            report(progress, done, len(pieces), "Score-CAM: masked photos")
            inputs = x * masks[piece][:, None]
            output = module(inputs)
            output = output[0] if isinstance(output, (tuple, list)) else output
            scores[piece] = output.flatten(1)[:, target].double()
        if constant_ids:
            scores[constant_ids] = float(scores[constant_ids[0]])
        report(progress, len(pieces), len(pieces), "Score-CAM: masked photos")
        return torch.softmax(scores, dim=0).float()


def ablation_cam_weights(prep, layer: str, A: torch.Tensor, target: int, score: float,
                         batch: int = 32, progress=None, cancel=None) -> torch.Tensor:
    """(C,): Ablation-CAM's channel weights, (score - score without the channel) / score.
    A channel is switched off by setting it to zero when the layer's output has a zero
    floor (after a ReLU), else far below its minimum (grad-cam's rule). The part before
    the layer runs once per batch of channels (core/analysis/tail.py)."""
    from featurescope.core.analysis.tail import chunks, run_tail

    value = 0.0 if float(A.min()) == 0.0 else float(A.min()) - ABLATION_VALUE
    count = len(A)
    ablated = torch.empty(count, dtype=torch.float64)
    pieces = chunks(count, batch)
    with torch.no_grad():
        for done, (start, stop) in enumerate(pieces):
            check(cancel)
            report(progress, done, len(pieces), "Ablation-CAM: channels switched off")

            def switch_off(output, start=start, stop=stop):
                rows = output.repeat(stop - start, 1, 1, 1)
                index = torch.arange(stop - start, device=rows.device)
                rows[index, index + start] = value
                return rows

            scores, _ = run_tail(prep, layer, switch_off, "Ablation-CAM", grad=False)
            ablated[start:stop] = scores[:, target].double().cpu()
    report(progress, len(pieces), len(pieces), "Ablation-CAM: channels switched off")
    return ((score - ablated) / score).float()
