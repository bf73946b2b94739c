"""A detector's boxes and a segmenter's classes as the app lists them: plain rows, no Qt.

The predictions panel lists them, the photo draws them, the Grad-CAM view offers them as
targets; all three read :func:`dense_rows`, so a row's ``target`` is the same number
everywhere (a box's rank, 0 = best; a class's index), the one Grad-CAM explains.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

MAX_ROWS = 20


@dataclass(frozen=True)
class DenseRow:
    """``target``: what Grad-CAM explains for this row; ``label``; ``value``: a box's
    score or a class's share of the pixels (0-1); ``box`` (x0, y0, x1, y1) in input
    pixels, or None for a class; ``class_index`` the class (its colour)."""

    target: int
    label: str
    value: float
    box: Optional[tuple] = None
    class_index: int = 0  # the class (a box's own; a class row's is its target)

    @property
    def text(self) -> str:
        if self.box is not None:
            return f"box {self.target}: {self.label}"
        return self.label


def task_of(model: Any) -> str:
    return getattr(model, "task", "classification") if model is not None else "classification"


def dense_rows(model: Any, result: Any, threshold: float) -> list[DenseRow]:
    """The boxes scoring ``threshold`` or more (best first), or the classes of a
    segmentation (largest first); empty for a classifier or without a result."""
    dense = getattr(result, "dense", None)
    if dense is None:
        return []
    from featurescope.core.analysis.detection import detections, segment_classes

    categories = getattr(model, "categories", None)
    if dense.task == "detection":
        return [DenseRow(d.number, d.label, d.score, d.box, d.index)
                for d in detections(dense, categories, None, threshold, MAX_ROWS)]
    return [DenseRow(c.index, c.label, c.fraction, None, c.index) for c in segment_classes(dense, categories)[:MAX_ROWS]]


def best_score(result: Any) -> Optional[float]:
    """A detector's best box score (to say why nothing passes the threshold), or None."""
    dense = getattr(result, "dense", None)
    if dense is None or dense.task != "detection" or not len(dense.scores):
        return None
    return float(dense.scores[0])


def cam_title(cam: Any, chosen: bool) -> str:
    """What a detector's or segmenter's Grad-CAM explains, for the view's header."""
    if cam.box is not None:
        which = "chosen box" if chosen else "best box"
        return f"'{cam.label}' box {cam.target} ({which}, score {cam.score:.3f})"
    which = "chosen class" if chosen else "largest class"
    return f"'{cam.label or cam.target}' over its region ({which}, class {cam.target})"


def default_target_text(model: Any) -> str:
    """The first entry of a target list: what is explained when nothing is chosen."""
    return {"detection": "best box", "segmentation": "largest class"}.get(task_of(model), "top class")


def target_items(model: Any, result: Any, threshold: float) -> list[tuple[str, int]]:
    """(text, target) of each box or class a view offers as a target."""
    return [(f"{row.text}, {row.value * 100:.1f} %", row.target)
            for row in dense_rows(model, result, threshold)]


def why_title(found: Any) -> Optional[str]:
    """What a detector's or segmenter's attribution explains, or None for a classifier's."""
    reference = getattr(found, "reference", None)
    if reference is None:
        return None
    name = found.label or f"class {found.target}"
    if reference.box is not None:
        return f"box {found.target}, '{name}' (score {found.probability:.3f})"
    return f"'{name}' over its region (mean probability {found.probability * 100:.1f} %)"
