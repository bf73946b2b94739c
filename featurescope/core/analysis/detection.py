"""A detector's boxes and a segmenter's classes, in the user's photo, as plain records.

:func:`predict_dense` runs the network once and answers what ``featurescope predict
--json`` prints: ``{"detections": [{"label", "score", "box"}]}`` with boxes in the
photo's pixels, or ``{"segmentation": [{"label", "fraction"}]}``. The models see the whole
photo resized to their input size (core/models/sources/detection.py), so a box in input
pixels maps onto the photo by one scale per axis.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from featurescope.core.capture.dense import DenseOutput

DEFAULT_THRESHOLD = 0.5  # torchvision's detection examples draw boxes from this score on
DEFAULT_TOP = 20


@dataclass(frozen=True)
class Detection:
    """One box: ``number`` its rank (0 = the best score; what ``box:N`` targets),
    ``label`` and ``index`` its class, ``score`` in [0, 1], ``box`` (x0, y0, x1, y1)."""

    number: int
    label: str
    index: int
    score: float
    box: tuple[float, float, float, float]


@dataclass(frozen=True)
class SegmentClass:
    """One class of a segmentation: the share of pixels (``fraction``) it is the top class of."""

    label: str
    index: int
    fraction: float


def class_label(categories: Optional[Sequence[str]], index: int) -> str:
    if categories and 0 <= index < len(categories) and categories[index]:
        return str(categories[index])
    return f"class {index}"


def detections(dense: DenseOutput, categories=None, photo_size=None,
               threshold: float = DEFAULT_THRESHOLD, top: int = DEFAULT_TOP) -> list[Detection]:
    """The boxes scoring ``threshold`` or more, best first, at most ``top``. ``photo_size``
    (width, height): boxes in that photo's pixels (clipped to it); None: in input pixels."""
    if dense is None or dense.task != "detection":
        return []
    height, width = dense.input_size
    scale_x, scale_y = 1.0, 1.0
    if photo_size is not None:
        width_out, height_out = float(photo_size[0]), float(photo_size[1])
        scale_x, scale_y = width_out / width, height_out / height
        width, height = width_out, height_out
    found = []
    for number, (box, label, score) in enumerate(zip(dense.boxes, dense.labels, dense.scores)):
        if len(found) >= top or float(score) < threshold:
            break
        x0, y0, x1, y1 = (float(v) for v in box)
        mapped = (min(max(x0 * scale_x, 0.0), width), min(max(y0 * scale_y, 0.0), height),
                  min(max(x1 * scale_x, 0.0), width), min(max(y1 * scale_y, 0.0), height))
        found.append(Detection(number, class_label(categories, int(label)), int(label),
                               float(score), mapped))
    return found


def segment_classes(dense: DenseOutput, categories=None) -> list[SegmentClass]:
    """Every class that is the top class of some pixel, largest share first (they sum to 1)."""
    if dense is None or dense.task != "segmentation":
        return []
    counts = np.bincount(dense.class_map.ravel())
    total = float(counts.sum())
    order = sorted((i for i in range(len(counts)) if counts[i]), key=lambda i: (-counts[i], i))
    return [SegmentClass(class_label(categories, i), int(i), counts[i] / total) for i in order]


def class_mask(dense: DenseOutput, photo_size=None) -> np.ndarray:
    """The (H, W) top class of each pixel, of the input or (nearest) of a photo of
    ``photo_size`` (width, height)."""
    mask = dense.class_map
    if photo_size is None or (mask.shape[1], mask.shape[0]) == tuple(photo_size):
        return mask
    rows = (np.arange(int(photo_size[1])) + 0.5) * mask.shape[0] / int(photo_size[1])
    cols = (np.arange(int(photo_size[0])) + 0.5) * mask.shape[1] / int(photo_size[0])
    return mask[rows.astype(np.intp)[:, None], cols.astype(np.intp)[None, :]]


def run_dense(model, image) -> DenseOutput:
    """One pass of ``image`` (PIL, or a (1, 3, H, W) tensor) through a detector or
    segmenter; ModelError for a model that outputs neither."""
    import torch

    from featurescope.core.capture.dense import dense_output
    from featurescope.core.capture.inputs import as_input
    from featurescope.core.errors import ModelError

    x = as_input(model, image).to(model.device)
    with torch.inference_mode():
        output = model.module(x)
    dense = dense_output(output, x.shape[-2:])
    if dense is None:
        raise ModelError(f"{model.name} outputs neither boxes nor a class per pixel.")
    return dense


def predict_dense(model, image, threshold: float = DEFAULT_THRESHOLD,
                  top: int = DEFAULT_TOP) -> dict:
    """``{"detections": [{"label", "score", "box"}]}`` (boxes in the photo's pixels when
    ``image`` is a photo) or ``{"segmentation": [{"label", "fraction"}]}``."""
    dense = run_dense(model, image)
    photo_size = getattr(image, "size", None) if hasattr(image, "convert") else None
    if dense.task == "detection":
        return {"detections": [
            {"label": d.label, "score": round(d.score, 6), "box": [round(v, 2) for v in d.box]}
            for d in detections(dense, model.categories, photo_size, threshold, top)]}
    return {"segmentation": [{"label": c.label, "fraction": round(c.fraction, 6)}
                             for c in segment_classes(dense, model.categories)]}
