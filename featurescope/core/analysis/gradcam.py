"""Grad-CAM: which parts of the image drive a class, seen from one conv layer.

Selvaraju et al. (2017): weight each channel of the layer's output by the spatial mean
of the class score's gradient with respect to it, sum, keep the positive part, upsample
to the input size. The steps (ReLU, min-max scaling, bilinear resize with half-pixel
centres, scaling again) follow the ``grad-cam`` package (pytorch_grad_cam), which the
tests compare against.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Optional

import numpy as np
import torch
import torch.nn.functional as F

from featurescope.core.errors import ModelError

_EPS = 1e-7  # as pytorch_grad_cam's scale_cam_image


@dataclass(frozen=True)
class GradCam:
    """A Grad-CAM map and what it explains.

    ``map``: (H, W) float32 in [0, 1] at the model's input size (all zeros when nothing
    in the layer speaks for the class). ``target``: the class index explained. ``label``:
    its name, or None without categories. ``score``: the class's logit. ``layer_map``:
    the map at the layer's own resolution before upsampling, scaled to [0, 1] (of the
    photo itself with ``aug_smooth``). ``method``: the CAM method that made it.
    """

    map: np.ndarray
    target: int
    label: Optional[str]
    score: float
    layer: str
    layer_map: np.ndarray
    method: str = "gradcam"
    # a detector's: target is the box's rank (0 = best), label its class, score its score,
    # box (x0, y0, x1, y1) in input pixels; a segmenter's: score is the class's summed
    # score over its region (core/analysis/dense_cam.py)
    task: str = "classification"
    box: Optional[tuple] = None


def grad_cam_layer(layer_info: Iterable, requested: Optional[str] = None,
                   model_name: str = "The model") -> tuple[str, str]:
    """Which layer Grad-CAM reads when ``requested`` is asked for: the one rule of the
    app's view and export, ``export --gradcam``/``--gradcam-layer`` and ``video --view
    gradcam``. Returns (layer, a sentence when it is not ``requested`` itself, else "").

    ``layer_info``: the network's LayerInfo records in network order (``model.layer_info``
    or a capture's). Nothing requested: the last convolution, where Grad-CAM is usually
    read (of a network with a ``backbone`` and heads after it, the backbone's last). A convolution, a block, an activation or a norm: itself. A pooling layer: the
    nearest convolution before it, since Grad-CAM reads a convolution's gradients. ModelError when the name
    is unknown or no convolution comes before it.
    """
    infos = list(layer_info)
    if not requested:
        convs = [info.name for info in infos if info.kind == "Conv2d"]
        if not convs:
            raise ModelError(f"{model_name} has no convolution layer, so it has no Grad-CAM.")
        # a detector's or segmenter's heads come after its backbone (and FPN), whose last
        # convolution still sees the whole picture: Faster R-CNN's RPN gets no gradient
        backbone = [name for name in convs if name.startswith("backbone.")]
        if backbone and backbone[-1] != convs[-1]:
            return backbone[-1], ""
        return convs[-1], ""
    names = [info.name for info in infos]
    if requested not in names:
        raise ModelError(f"{model_name} has no layer called {requested!r}; "
                         f"`featurescope layers` lists the layer names.")
    index = names.index(requested)
    kind = infos[index].kind
    # a convolution, or any module that is not a pooling layer (a block such as layer4, an
    # activation, a batch norm: issue 18) is read where it is
    if kind == "Conv2d" or (infos[index].groups is None and "Pool" not in kind):
        return requested, ""
    convs = [info.name for info in infos[:index] if info.kind == "Conv2d"]
    what = f"{requested} is a {kind or 'non-convolution'} layer"
    if not convs:
        raise ModelError(f"Grad-CAM reads a convolution's gradients; {what} with no "
                         f"convolution before it.")
    return convs[-1], (f"Grad-CAM reads a convolution's gradients; {what}, so it is read at the "
                       f"nearest convolution before it, {convs[-1]}.")


def layer_infos_for(model, requested: Optional[str]) -> list:
    """The LayerInfos :func:`grad_cam_layer` should choose from for ``requested``: the
    conv/pool layers, or every module when ``requested`` is another module."""
    infos = list(model.layer_info)
    if requested and requested not in {info.name for info in infos}:
        infos = list(getattr(model, "every_layer_info", None) or infos)
    return infos


def compute_grad_cam(model, image, layer: str, target: Optional[int] = None, method: str = "gradcam",
                     aug_smooth: bool = False, eigen_smooth: bool = False,
                     batch: Optional[int] = None, progress=None, cancel=None) -> GradCam:
    """The class activation map of ``layer`` for class ``target`` (default: the top class).
    A detector's ``target`` is a box's rank (0, the best box, by default) and a
    segmenter's a class over the pixels it wins (core/analysis/dense_cam.py).

    ``model``: a LoadedModel (or a plain classification ``nn.Module``); ``image``: a PIL
    image (run through ``model.preprocess``) or a (1, 3, H, W) tensor; ``layer``: a layer
    name as ``featurescope layers`` prints it ("name#2" for a module's second call), any
    layer with a (C, H, W) output. ``method``: one of :data:`CAM_METHODS` (see
    core/analysis/cam_methods.py); ``aug_smooth``: the mean of the maps of the photo
    flipped and not, times 0.9, 1 and 1.1; ``eigen_smooth``: the first principal
    component of the weighted activations instead of their sum (both as the grad-cam
    package does). Score-CAM and Ablation-CAM run ``batch`` copies at a time (default 16
    whole masked photos for Score-CAM, where bigger batches ran slower on a CPU; 64 copies
    of the layer's output for Ablation-CAM, whose part before the layer runs once per
    batch) and report
    ``progress(done, total, text)``; ``cancel`` stops them. The network runs in eval mode
    with gradients on even inside ``torch.inference_mode()``; the model's parameters,
    mode and gradients are left as they were. Raises ModelError for an ONNX model, an
    unknown layer or method, a layer without a spatial output, or a class that does not
    exist.
    """
    from featurescope.core.analysis.cam_methods import CAM_METHODS
    from featurescope.core.analysis.tail import check_target, class_scores, eval_mode, prepare

    if method not in CAM_METHODS:
        raise ModelError(f"{method!r} is not a CAM method featurescope has; choose one of "
                         f"{', '.join(CAM_METHODS)}.")
    if getattr(model, "task", "classification") != "classification":  # a box or a region
        from featurescope.core.analysis.dense_cam import dense_grad_cam

        return dense_grad_cam(model, image, layer, target, method, aug_smooth, eigen_smooth)
    prep = prepare(model, image, "Grad-CAM")  # ONNX models run outside autograd
    height, width = prep.x.shape[-2:]
    with eval_mode(prep.module):
        if target is None and aug_smooth:  # every flipped and scaled copy explains the photo's class
            with torch.inference_mode(False), torch.no_grad():
                from featurescope.core.capture.grad import run_with_grad

                run = run_with_grad(prep.module, prep.x, [layer], model_name=prep.name, grad=False)
            scores = class_scores(run.output, prep.name, "Grad-CAM")
            target = check_target(target, scores, prep.name)
        if not aug_smooth:
            layer_map, target, score = _layer_cam(prep, prep.x, layer, target, method, eigen_smooth,
                                                  batch, progress, cancel)
            result = _to_input_size(layer_map, height, width)
        else:
            maps = []
            for flip in (False, True):
                for factor in (0.9, 1.0, 1.1):
                    x = (prep.x.flip(-1) if flip else prep.x) * factor
                    layer_map, _t, _s = _layer_cam(prep, x, layer, target, method, eigen_smooth,
                                                   batch, progress, cancel)
                    full = _to_input_size(layer_map, height, width)
                    maps.append(full.flip(-1) if flip else full)
                    if flip is False and factor == 1.0:
                        score, plain_map = _s, layer_map
            result, layer_map = torch.stack(maps).mean(dim=0), plain_map
    return GradCam(map=result.cpu().numpy().astype(np.float32), target=target,
                   label=prep.label(target), score=score, layer=layer,
                   layer_map=layer_map.clamp(0.0, 1.0).cpu().numpy().astype(np.float32), method=method)


def _layer_cam(prep, x, layer: str, target: Optional[int], method: str, eigen_smooth: bool,
               batch: int, progress, cancel):
    """(the map at the layer's resolution scaled to [0, 1], target, score) for input ``x``."""
    from featurescope.core.analysis import cam_methods
    from featurescope.core.analysis.tail import check_feature_map, check_target, class_scores
    from featurescope.core.capture.grad import run_with_grad

    gradients = None
    needs_grad = method in cam_methods.GRADIENT_METHODS
    with torch.inference_mode(False), torch.set_grad_enabled(needs_grad):
        run = run_with_grad(prep.module, x, [layer], model_name=prep.name, grad=needs_grad)
        activation = run.activations[layer]
        check_feature_map(activation, layer, prep.name, "Grad-CAM")
        logits = class_scores(run.output, prep.name, "Grad-CAM")
        target = check_target(target, logits.detach(), prep.name)
        score = logits[0, target]
        if needs_grad:
            try:
                (gradients,) = torch.autograd.grad(score, activation)
            except RuntimeError as error:
                if "nference tensor" not in str(error):
                    raise
                raise ModelError(f"{prep.name}'s weights were made under torch.inference_mode, so "
                                 "Grad-CAM cannot take their gradients; load the model again.") from error
            gradients = gradients.detach()[0].float()
    activations = activation.detach()[0].float()
    score = float(score.detach())
    if needs_grad:
        weighted = cam_methods.weighted_activations(method, activations, gradients)
    elif method == "eigencam":
        weighted = activations
    elif method == "scorecam":
        weights = cam_methods.score_cam_weights(prep.module, x, activations, target, batch or 16,
                                                progress, cancel)
        weighted = weights.to(activations.device)[:, None, None] * activations
    else:
        weights = cam_methods.ablation_cam_weights(_with_input(prep, x), layer, activations, target,
                                                   score, batch or 64, progress, cancel)
        weighted = weights.to(activations.device)[:, None, None] * activations
    if eigen_smooth or method == "eigencam":
        cam = cam_methods.first_component(weighted).to(activations.device)
    else:
        cam = weighted.sum(dim=0)
    return _scale(torch.relu(cam)), target, score


def _with_input(prep, x):
    """``prep`` with input ``x`` (an augmented photo)."""
    from dataclasses import replace

    return replace(prep, x=x)


def _to_input_size(layer_map: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Bilinear with half-pixel centres (OpenCV's resize, as grad-cam), ReLU, scaled to [0, 1]."""
    upsampled = F.interpolate(layer_map[None, None], size=(height, width), mode="bilinear",
                              align_corners=False)[0, 0]
    return _scale(torch.relu(upsampled)).clamp_(0.0, 1.0)


def _scale(cam: torch.Tensor) -> torch.Tensor:
    cam = cam - cam.min()
    return cam / (_EPS + cam.max())


def grad_cam(model, image, layer: str, target: Optional[int] = None, method: str = "gradcam",
             aug_smooth: bool = False, eigen_smooth: bool = False, progress=None,
             cancel=None) -> np.ndarray:
    """The class activation map of ``layer`` for class ``target`` (default: the top class)
    by ``method`` (gradcam, gradcam++, xgradcam, layercam, hirescam, eigencam, scorecam,
    ablationcam). Returns an (H, W) float32 array in [0, 1] at the model's input size.
    See :func:`compute_grad_cam` for the arguments and for the class that was explained.
    """
    return compute_grad_cam(model, image, layer, target, method=method, aug_smooth=aug_smooth,
                            eigen_smooth=eigen_smooth, progress=progress, cancel=cancel).map


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
