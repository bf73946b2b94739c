"""Grad-CAM: which parts of the image drive a class, seen from one conv layer.

Selvaraju et al. (2017): weight each channel of the layer's output by the spatial mean
of the class score's gradient with respect to it, sum, keep the positive part, upsample
to the input size. The steps (ReLU, min-max scaling, bilinear resize with half-pixel
centres, scaling again) follow the ``grad-cam`` package (pytorch_grad_cam), which the
tests compare against.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from featurescope.core.capture.grad import run_with_grad
from featurescope.core.errors import ModelError

_EPS = 1e-7  # as pytorch_grad_cam's scale_cam_image


@dataclass(frozen=True)
class GradCam:
    """A Grad-CAM map and what it explains.

    ``map``: (H, W) float32 in [0, 1] at the model's input size (all zeros when nothing
    in the layer speaks for the class). ``target``: the class index explained. ``label``:
    its name, or None without categories. ``score``: the class's logit. ``layer_map``:
    the map at the layer's own resolution before upsampling, scaled to [0, 1].
    """

    map: np.ndarray
    target: int
    label: Optional[str]
    score: float
    layer: str
    layer_map: np.ndarray


def _input_tensor(model, image) -> torch.Tensor:
    if isinstance(image, torch.Tensor):
        tensor = image if image.dim() == 4 else image.unsqueeze(0)
    else:
        preprocess = getattr(model, "preprocess", None)
        if preprocess is None:
            raise TypeError("a plain nn.Module needs a (1, 3, H, W) tensor, not an image")
        tensor = preprocess(image)
    if tensor.dim() != 4 or tensor.shape[0] != 1:
        raise ValueError(f"expected one (1, 3, H, W) input, got shape {tuple(tensor.shape)}")
    return tensor


def compute_grad_cam(model, image, layer: str, target: Optional[int] = None) -> GradCam:
    """Grad-CAM of ``layer`` for class ``target`` (default: the top class).

    ``model``: a LoadedModel (or a plain classification ``nn.Module``); ``image``: a PIL
    image (run through ``model.preprocess``) or a (1, 3, H, W) tensor; ``layer``: a layer
    name as ``featurescope layers`` prints it ("name#2" for a module's second call), any
    layer with a (C, H, W) output. The network runs once forward and once backward with
    gradients on, in eval mode, even inside ``torch.inference_mode()``; the model's
    parameters, mode and gradients are left as they were. Raises ModelError for an
    unknown layer, a layer without a spatial output, or a class that does not exist.
    """
    from featurescope.core.models.spec import require_gradients

    require_gradients(model, "Grad-CAM")  # ONNX models run outside autograd
    module = getattr(model, "module", model)
    model_name = getattr(model, "name", None) or type(module).__name__
    device = getattr(model, "device", None)
    if device is None:
        device = next((p.device for p in module.parameters()), torch.device("cpu"))

    was_training = module.training
    try:
        module.eval()
        with torch.inference_mode(False), torch.enable_grad():
            # A clone outside inference mode, so that even an inference tensor works;
            # requires_grad so a network with frozen weights still builds a graph.
            x = _input_tensor(model, image).to(device).clone().requires_grad_(True)
            run = run_with_grad(module, x, [layer], model_name=model_name)
            activation = run.activations[layer]
            if not isinstance(activation, torch.Tensor) or activation.dim() != 4:
                raise ModelError(f"{layer!r} in {model_name} does not output a feature map, "
                                 f"so it has no Grad-CAM.")
            logits = _class_scores(run.output, model_name)
            classes = logits.shape[1]
            if target is None:
                target = int(logits[0].argmax())
            elif not 0 <= int(target) < classes:
                raise ModelError(f"{model_name} has {classes} classes, so class {target} "
                                 f"does not exist; choose 0 to {classes - 1}.")
            target = int(target)
            score = logits[0, target]
            try:
                (gradients,) = torch.autograd.grad(score, activation)
            except RuntimeError as error:
                if "nference tensor" not in str(error):
                    raise
                raise ModelError(f"{model_name}'s weights were made under torch.inference_mode, so "
                                 "Grad-CAM cannot take their gradients; load the model again.") from error
        activations = activation.detach()[0].float()
        gradients = gradients.detach()[0].float()
    finally:
        module.train(was_training)

    weights = gradients.mean(dim=(1, 2))  # one weight per channel
    cam = torch.relu((weights[:, None, None] * activations).sum(dim=0))
    layer_map = _scale(cam)
    height, width = x.shape[-2:]
    upsampled = F.interpolate(layer_map[None, None], size=(height, width), mode="bilinear",
                              align_corners=False)[0, 0]
    result = _scale(torch.relu(upsampled)).clamp_(0.0, 1.0)
    categories = getattr(model, "categories", None)
    label = categories[target] if categories and target < len(categories) else None
    return GradCam(map=result.cpu().numpy().astype(np.float32), target=target, label=label,
                   score=float(score.detach()), layer=layer,
                   layer_map=layer_map.clamp(0.0, 1.0).cpu().numpy().astype(np.float32))


def _class_scores(output, model_name: str) -> torch.Tensor:
    """The (1, classes) scores of a network output, or a ModelError saying why not."""
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        output = output[0]  # e.g. auxiliary heads
    if not isinstance(output, torch.Tensor):
        what = "a dict" if isinstance(output, dict) else f"a {type(output).__name__}"
        raise ModelError(f"Grad-CAM needs a model that outputs class scores; {model_name} "
                         f"returns {what}.")
    scores = output.flatten(1) if output.dim() == 4 and output.shape[2:] == (1, 1) else output
    if scores.dim() != 2 or scores.shape[0] != 1:
        raise ModelError(f"Grad-CAM needs a model that outputs class scores; {model_name} "
                         f"returns a tensor of shape {tuple(output.shape)}.")
    return scores


def _scale(cam: torch.Tensor) -> torch.Tensor:
    cam = cam - cam.min()
    return cam / (_EPS + cam.max())


def grad_cam(model, image, layer: str, target: Optional[int] = None) -> np.ndarray:
    """The Grad-CAM map of ``layer`` for class ``target`` (default: the top class).

    Returns an (H, W) float32 array in [0, 1] at the model's input size. See
    :func:`compute_grad_cam` for the arguments and for the class that was explained.
    """
    return compute_grad_cam(model, image, layer, target).map


def overlay(rgb: np.ndarray, cam: np.ndarray, colormap: str = "inferno", alpha: float = 0.5) -> np.ndarray:
    """The map blended over the picture: (H, W, 3) uint8, ``alpha`` the map's weight.

    ``rgb``: the (H, W, 3) uint8 picture the model saw (``model.deprocess``), ``cam`` a
    map of the same H, W in [0, 1]; ``colormap`` any of grids.COLORMAPS.
    """
    from featurescope.core.render.grids import colormap_lut

    rgb = np.asarray(rgb)
    if rgb.shape[:2] != cam.shape:
        raise ValueError(f"picture {rgb.shape[:2]} and map {cam.shape} differ in size")
    lut = colormap_lut(colormap)[1:]  # entry 0 is the grid separator colour
    index = np.clip(np.nan_to_num(cam) * (len(lut) - 1) + 0.5, 0, len(lut) - 1).astype(np.intp)
    blended = (1.0 - alpha) * rgb.astype(np.float32) + alpha * lut[index].astype(np.float32)
    return np.clip(blended + 0.5, 0, 255).astype(np.uint8)
