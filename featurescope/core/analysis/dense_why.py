"""Why this box, why this region: channel contributions and the deletion check for a
detector's box or a segmenter's class, the targets of core/analysis/dense_cam.py.

- The contribution of each channel of a layer is its output times the gradient of the
  target's score (``grad_x_act``): a box's score, or a class's score summed over the
  pixels it wins. Integrated gradients is refused: scaling the layer's output moves and
  drops the boxes, so the path from zero to the photo does not follow one box.
- The deletion check reads, in each copy with channels switched off, the same target
  again: the score of the box of the same class that overlaps the photo's box most
  (IoU 0.5 or more, else 0), as the grad-cam package's ``FasterRCNNBoxScoreTarget``
  matches boxes; or the class's mean probability over the photo's region.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch

from featurescope.core.errors import ModelError

IOU_MATCH = 0.5  # as FasterRCNNBoxScoreTarget's default


@dataclass(frozen=True)
class DenseReference:
    """What the photo's pass chose to explain: ``task``; ``target`` (a box's rank or a
    class); ``class_index``; ``box`` (4,) in input pixels, or ``region`` (H, W) bool."""

    task: str
    target: int
    class_index: int
    box: Optional[torch.Tensor] = None
    region: Optional[torch.Tensor] = None


def read_reference(reference: DenseReference):
    """fn(output) -> (N,) tensor: in each copy's output, the reference's value (a matched
    box's score, or the class's mean probability over the region)."""
    from torchvision.ops import box_iou

    def boxes(output):
        values = []
        for found in output:
            same = found["labels"] == reference.class_index
            if not bool(same.any()):
                values.append(found["scores"].new_zeros(()))
                continue
            iou = box_iou(reference.box.to(found["boxes"])[None], found["boxes"][same])[0]
            best = int(iou.argmax())
            values.append(found["scores"][same][best] if float(iou[best]) >= IOU_MATCH
                          else found["scores"].new_zeros(()))
        return torch.stack(values)

    def region(output):
        probabilities = torch.softmax(output["out"].double(), dim=1)[:, reference.class_index]
        mask = reference.region.to(probabilities.device)
        return probabilities[:, mask].mean(dim=1)

    return boxes if reference.task == "detection" else region


def dense_attribute(model, image, layer: str, target: Optional[int] = None,
                    method: str = "grad_x_act", progress=None):
    """The Attribution of each channel of ``layer`` to a detector's box ``target`` (rank,
    0 = best) or a segmenter's class ``target`` over its region; ``probability`` is the
    box's score or the class's mean probability over the region, ``logit`` the score
    differentiated, ``reference`` what the deletion check reads again."""
    from featurescope.core.analysis.attribution import Attribution
    from featurescope.core.analysis.dense_cam import box_target, region_target
    from featurescope.core.analysis.tail import check_feature_map, eval_mode, prepare
    from featurescope.core.capture.dense import segmentation_scores
    from featurescope.core.capture.grad import run_with_grad
    from featurescope.core.progress import report

    task = getattr(model, "task", "classification")
    if method != "grad_x_act":
        raise ModelError(f"Integrated gradients scales the layer's output from zero, which moves "
                         f"and drops the {task} model's boxes and regions; use grad_x_act.")
    prep = prepare(model, image, "Attribution")
    report(progress, 0, 1, "gradient")
    with eval_mode(prep.module), torch.inference_mode(False), torch.enable_grad():
        run = run_with_grad(prep.module, prep.x, [layer], model_name=prep.name)
        activation = run.activations[layer]
        check_feature_map(activation, layer, prep.name, "attribution")
        if task == "detection":
            score, target, index, box = box_target(run.output, target, prep.name)
            reference = DenseReference(task, target, index, box=torch.tensor(box))
            probability = float(score.detach())
        else:
            score, target = region_target(run.output, target, prep.name)
            top = segmentation_scores(run.output)[0].detach().argmax(0)
            region = top == target
            reference = DenseReference(task, target, target, region=region if bool(region.any())
                                       else torch.ones_like(region))
            index = target
            probability = float(read_reference(reference)(run.output).detach()[0])
        (gradient,) = torch.autograd.grad(score, activation, allow_unused=True)
        gradient = torch.zeros_like(activation) if gradient is None else gradient
    maps = (activation.detach() * gradient.detach())[0].float().cpu()
    report(progress, 1, 1, "gradient")
    return Attribution(layer=layer, method=method, target=target, label=prep.label(index),
                       probability=probability, logit=float(score.detach()),
                       channels=maps.sum(dim=(1, 2)).double().numpy(), maps=maps.numpy(),
                       activations=activation.detach()[0].float().cpu().numpy(),
                       reference=reference)


def reference_of(attribution) -> Any:
    """The DenseReference of a detector's or segmenter's attribution, else None."""
    return getattr(attribution, "reference", None)
