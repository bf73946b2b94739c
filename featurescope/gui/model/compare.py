"""What the Compare view shows, as plain data: image B, its capture, and the comparison.

Qt-free (psygnal), held by :class:`AppState` as ``state.compare``: the view draws it and
the comparison export reads it, so neither reaches into the other. B's capture belongs
to one model (``result_model``); when the model changes it is dropped (B itself, the
picture, stays and is captured again when shown).
"""
from __future__ import annotations

from typing import Any, Optional

from psygnal import Signal


class CompareState:
    """Image B and the comparison of A and B at a layer."""

    image_b_changed = Signal(object, str)  # PIL image (or None), its source
    comparison_changed = Signal(object)  # LayerComparison or None

    def __init__(self) -> None:
        self.image_b: Any = None  # PIL image
        self.source_b = ""  # its file (hashed by exports) or "clipboard"
        self.result_b: Any = None  # CaptureResult of B made with ``result_model``
        self.result_model: Any = None  # the model result_b comes from
        self.model_b: Any = None  # the model B was last captured (or asked) with
        #: (result A, result B, layer) of the comparison shown or being computed: a new
        #: capture of A or B, or another layer, makes it stale
        self.key: Optional[tuple] = None
        self.comparison: Any = None  # LayerComparison shown

    def set_image_b(self, image: Any, source: str, result: Any = None, model: Any = None) -> None:
        """B is ``image`` (from ``source``), captured as ``result`` with ``model`` (or not yet)."""
        self.image_b, self.source_b = image, source
        self.result_b, self.result_model = result, (model if result is not None else None)
        self.key = None
        self.image_b_changed.emit(image, source)

    def forget_model(self, model: Any) -> None:
        """``model`` is now shown: a capture of B made with another one goes."""
        if model is not self.result_model:
            self.result_b, self.result_model, self.model_b, self.key = None, None, None, None

    def set_comparison(self, comparison: Any) -> None:
        if comparison is not self.comparison:
            self.comparison = comparison
            self.comparison_changed.emit(comparison)
