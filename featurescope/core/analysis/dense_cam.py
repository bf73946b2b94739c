"""Grad-CAM of a detector's box or of a segmenter's class over its region.

A classifier's Grad-CAM explains one class score; a detector has a score per box and a
segmenter a score per pixel, so the score explained is chosen as the grad-cam package
does (pytorch_grad_cam's ``FasterRCNNBoxScoreTarget`` and ``SemanticSegmentationTarget``):

- ``target`` N of a detector: the score of its N-th best box (0 = the best). The box is
  picked after non-maximum suppression, which is not differentiable, but its score is
  (the softmax or sigmoid of the head's class output for that box), so its gradient
  reaches the backbone and FPN maps. The grad-cam package matches the box again in a
  second pass by IoU; one pass needs no matching, since the box is the one it picked.
  An RPN layer gets no gradient from it (Faster R-CNN detaches its proposals): its map
  is zero.
- ``target`` C of a segmenter: the sum of class C's score over the pixels whose top
  class is C (over every pixel when C is the top class of none).
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from featurescope.core.errors import ModelError


def box_target(output, target: Optional[int], model_name: str):
    """(the N-th best box's score in the autograd graph, N, its class index, its box in
    input pixels) of a detector's output."""
    from featurescope.core.capture.dense import detections_of

    found = detections_of(output)
    if found is None:
        raise ModelError(f"{model_name} does not output boxes.")
    scores = found["scores"]
    count = int(scores.shape[0])
    number = 0 if target is None else int(target)
    if count == 0:
        # shared by Grad-CAM and Why: the sentence names neither
        raise ModelError(f"{model_name} found no box in this image, so there is no box score to explain.")
    if not 0 <= number < count:
        raise ModelError(f"{model_name} found {count} boxes, so box {number} does not exist; "
                         f"choose 0 to {count - 1}.")
    order = torch.argsort(scores.detach(), descending=True)
    pick = int(order[number])
    box = tuple(float(v) for v in found["boxes"][pick].detach().cpu())
    return scores[pick], number, int(found["labels"][pick]), box


def region_target(output, target: Optional[int], model_name: str):
    """(class C's score summed over its region, in the graph, C) of a segmenter's output.
    None: the class covering the most pixels, the background (class 0) only if nothing else."""
    from featurescope.core.capture.dense import segmentation_scores

    scores = segmentation_scores(output)
    if scores is None:
        raise ModelError(f"{model_name} does not output a class per pixel.")
    classes = int(scores.shape[1])
    top = scores[0].detach().argmax(0)
    if target is None:
        counts = torch.bincount(top.flatten(), minlength=classes)
        foreground = counts.clone()
        foreground[0] = 0
        target = int(foreground.argmax()) if int(foreground.max()) > 0 else int(counts.argmax())
    target = int(target)
    if not 0 <= target < classes:
        raise ModelError(f"{model_name} has {classes} classes, so class {target} does not exist; "
                         f"choose 0 to {classes - 1}.")
    mask = (top == target).to(scores.dtype)
    if not bool(mask.any()):
        mask = torch.ones_like(mask)
    return (scores[0, target] * mask).sum(), target


def dense_grad_cam(model, image, layer: str, target: Optional[int] = None,
                   method: str = "gradcam", aug_smooth: bool = False, eigen_smooth: bool = False):
    """The GradCam of ``layer`` for a detector's box ``target`` (its rank, 0 = best) or a
    segmenter's class ``target`` over its region; see the module docstring. Gradient
    methods and Eigen-CAM only; ModelError otherwise, as for a layer without channels."""
    from featurescope.core.analysis import cam_methods
    from featurescope.core.analysis.gradcam import GradCam, _scale, _to_input_size
    from featurescope.core.analysis.tail import check_feature_map, eval_mode, prepare
    from featurescope.core.capture.grad import run_with_grad

    task = getattr(model, "task", "classification")
    if method not in (*cam_methods.GRADIENT_METHODS, "eigencam"):
        raise ModelError(f"{method} explains one class score and runs the network on many masked "
                         f"copies; for {task} choose a gradient method (gradcam, gradcam++, "
                         f"xgradcam, layercam, hirescam) or eigencam.")
    if aug_smooth:
        raise ModelError(f"aug_smooth flips and rescales the photo, which moves the boxes and "
                         f"regions of {task}; explain the photo as it is.")
    prep = prepare(model, image, "Grad-CAM")
    height, width = prep.x.shape[-2:]
    needs_grad = method != "eigencam"
    with eval_mode(prep.module), torch.inference_mode(False), torch.set_grad_enabled(needs_grad):
        run = run_with_grad(prep.module, prep.x, [layer], model_name=prep.name, grad=needs_grad)
        activation = run.activations[layer]
        check_feature_map(activation, layer, prep.name, "Grad-CAM")
        box = None
        if task == "detection":
            score, target, index, box = box_target(run.output, target, prep.name)
        else:
            score, target = region_target(run.output, target, prep.name)
            index = target
        gradients = None
        if needs_grad:
            if score.requires_grad:
                (gradients,) = torch.autograd.grad(score, activation, allow_unused=True)
            gradients = torch.zeros_like(activation) if gradients is None else gradients
            gradients = gradients.detach()[0].float()
    activations = activation.detach()[0].float()
    if needs_grad:
        weighted = cam_methods.weighted_activations(method, activations, gradients)
    else:
        weighted = activations
    if eigen_smooth or method == "eigencam":
        cam = cam_methods.first_component(weighted).to(activations.device)
    else:
        cam = weighted.sum(dim=0)
    layer_map = _scale(torch.relu(cam))
    full = _to_input_size(layer_map, height, width)
    return GradCam(map=full.cpu().numpy().astype(np.float32), target=target,
                   label=prep.label(index), score=float(score.detach()), layer=layer,
                   layer_map=layer_map.clamp(0.0, 1.0).cpu().numpy().astype(np.float32),
                   method=method, task=task, box=box)


def parse_cam_target(model, text: Optional[str], option: str = "--gradcam-target") -> Optional[int]:
    """What ``--gradcam-target`` (or ``option``) names, as compute_grad_cam's ``target``:
    ``box:N`` a detector's N-th best box (0 = best), ``class:NAME`` or ``class:N`` a class
    (a segmenter's over its region); None or "" for the default. ModelError otherwise."""
    if not text:
        return None
    kind, _, value = str(text).partition(":")
    task = getattr(model, "task", "classification")
    name = getattr(model, "name", "the model")
    if kind == "box" and value.strip().isdigit():
        if task != "detection":
            raise ModelError(f"{option} {text}: {name} is not a detector, so it has no "
                             f"boxes; name a class as class:NAME.")
        return int(value)
    if kind == "class" and value.strip():
        if task == "detection":
            raise ModelError(f"{option} {text}: {name} is a detector, explained one box at a time; "
                             f"name the box as box:N (N as `featurescope predict` lists them, 0 first).")
        if value.strip().isdigit():
            return int(value)
        categories = list(getattr(model, "categories", None) or [])
        lowered = [str(c).lower() for c in categories]
        if value.strip().lower() in lowered:
            return lowered.index(value.strip().lower())
        raise ModelError(f"{option} {text}: {name} has no class called {value.strip()!r}; "
                         f"give its index or a name `featurescope predict` prints.")
    raise ModelError(f"{option} {text!r} is neither box:N (a detector's N-th box) nor "
                     f"class:NAME (a class, by name or index).")
