"""What a detector or a segmenter answers, read from its output as plain arrays.

A detector (torchvision's) returns ``[{"boxes", "labels", "scores"}]``, a segmenter
``{"out": (1, classes, H, W)}``; :func:`dense_output` turns either into a
:class:`DenseOutput` in the coordinates of the model's input, the picture the app shows.
Mapping onto the user's photo, thresholds and labels are
:mod:`featurescope.core.analysis.detection`'s business.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch


@dataclass(frozen=True)
class DenseOutput:
    """``task`` "detection": ``boxes`` (N, 4) float32 x0, y0, x1, y1 in input pixels,
    ``labels`` (N,) int64 class indices, ``scores`` (N,) float32, best first.
    ``task`` "segmentation": ``class_map`` (H, W) int64, the top class of each input
    pixel. ``input_size`` (H, W): the size of the input these coordinates are in."""

    task: str
    input_size: tuple[int, int]
    boxes: Optional[np.ndarray] = None
    labels: Optional[np.ndarray] = None
    scores: Optional[np.ndarray] = None
    class_map: Optional[np.ndarray] = None


def segmentation_scores(output) -> Optional[torch.Tensor]:
    """The (N, classes, H, W) class scores of a segmenter's output ({"out": ...}), or None."""
    if isinstance(output, dict):
        scores = output.get("out")
        if torch.is_tensor(scores) and scores.dim() == 4:
            return scores
    return None


def detections_of(output) -> Optional[dict]:
    """The first image's {"boxes", "labels", "scores"} of a detector's output, or None."""
    if isinstance(output, (list, tuple)) and output and isinstance(output[0], dict):
        first = output[0]
        if all(torch.is_tensor(first.get(key)) for key in ("boxes", "labels", "scores")):
            return first
    return None


def dense_output(output, input_size) -> Optional[DenseOutput]:
    """A DenseOutput for a detector's or segmenter's output; None for anything else
    (class scores, or a pass that stopped early)."""
    size = (int(input_size[0]), int(input_size[1]))
    found = detections_of(output)
    if found is not None:
        scores = found["scores"].detach().float().cpu()
        order = torch.argsort(scores, descending=True)
        return DenseOutput("detection", size,
                           boxes=found["boxes"].detach().float().cpu()[order].numpy(),
                           labels=found["labels"].detach().cpu()[order].numpy().astype(np.int64),
                           scores=scores[order].numpy())
    scores = segmentation_scores(output)
    if scores is not None:
        return DenseOutput("segmentation", tuple(scores.shape[-2:]),
                           class_map=scores[0].detach().argmax(0).cpu().numpy().astype(np.int64))
    return None
