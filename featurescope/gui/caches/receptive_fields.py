"""Receptive fields, computed once per model and shared by the views and docks.

``receptive_fields(model)`` is one traced pass over the network (on the meta device, so
cheap, and safe beside a capture on another thread: captures are per thread). It costs
~0.1 s for a large network, and ~1.5 s the first time in a process (torch imports its
decompositions then), so the app fills this cache on the worker after a model's first
capture (:func:`mark_pending`, then :func:`prepare`): the first grid does not wait for
it. The GUI only reads it (:func:`fields_for`): while it is pending a layer has no field
yet (``AppState.fields_ready`` says when it is in), and it is computed on the spot only
when nothing is filling it (tests that build a state by hand).
"""
from __future__ import annotations

import threading
import weakref
from typing import Any, Optional

_lock = threading.Lock()
_cache: "weakref.WeakKeyDictionary[Any, dict]" = weakref.WeakKeyDictionary()
_errors: "weakref.WeakKeyDictionary[Any, str]" = weakref.WeakKeyDictionary()
_pending: "weakref.WeakSet[Any]" = weakref.WeakSet()  # being prepared on the worker


def mark_pending(model: Any) -> None:
    """``model``'s fields are on their way (a worker job calls :func:`prepare`)."""
    with _lock:
        if model not in _cache:
            _pending.add(model)


def forget_pending(model: Any) -> None:
    """The job for ``model`` will not come (cancelled): read its fields on the spot again."""
    with _lock:
        _pending.discard(model)


def ready(model: Any) -> bool:
    """True when ``model``'s fields are worked out (reading them costs nothing)."""
    with _lock:
        return model is not None and model in _cache


def is_pending(model: Any) -> bool:
    with _lock:
        return model is not None and model in _pending


def prepare(model: Any) -> dict:
    """Compute (or return the cached) ``{layer: ReceptiveField}`` of every captured layer.

    Never raises: a network whose fields cannot be traced gets an empty dict, and
    :func:`error_for` says why.
    """
    with _lock:
        if model in _cache:
            return _cache[model]
    from featurescope.core.analysis.receptive import receptive_field, receptive_fields

    fields: dict = {}
    error = ""
    try:
        fields = receptive_fields(model)
    except Exception as first:  # one odd layer must not hide the others' fields
        error = str(first)
        for layer in getattr(model, "layers", None) or []:
            try:
                fields[layer] = receptive_field(model, layer)
            except Exception:
                continue
    with _lock:
        _cache[model] = fields
        _pending.discard(model)
        if error:
            _errors[model] = error
    return fields


def fields_for(model: Any) -> dict:
    """The cached fields of ``model`` ({} for None); computed here if nobody did yet."""
    if model is None:
        return {}
    with _lock:
        cached = _cache.get(model)
        pending = model in _pending
    if cached is not None:
        return cached
    return {} if pending else prepare(model)


def field_for(model: Any, layer: str) -> Optional[Any]:
    """The ReceptiveField of ``layer``, or None when the layer has none."""
    return fields_for(model).get(layer) if layer else None


def error_for(model: Any) -> str:
    """Why some fields of ``model`` are missing ("" when none are)."""
    with _lock:
        return _errors.get(model, "")


def positions_seeing(field: Any, iy: float, ix: float) -> Optional[tuple[int, int, int, int]]:
    """``(y0, x0, y1, x1)`` (ends exclusive) of the map positions whose field contains
    input pixel (iy, ix), computed like ``ReceptiveField.unclipped_box``; None if none."""
    import numpy as np

    spans = []
    for coord, size, jump, start, count in zip((iy, ix), field.size_hw, field.jump_hw,
                                               field.start_hw, field.output_shape):
        centres = start + np.arange(count) * jump
        low = np.floor(centres - (size - 1) / 2 + 1e-9)
        inside = np.flatnonzero((low <= int(coord)) & (int(coord) < low + size))
        if inside.size == 0:
            return None
        spans.append((int(inside[0]), int(inside[-1]) + 1))
    (y0, y1), (x0, x1) = spans
    return (y0, x0, y1, x1)


def field_sentence(position: tuple[int, int], box: Optional[tuple[int, int, int, int]],
                   seeing: Optional[tuple[int, int, int, int]] = None) -> str:
    """Where map ``position`` looks (its field ``box`` on the input), and which
    positions (``seeing``) see the hovered pixel."""
    if box is None:
        return ""
    y, x = position
    y0, x0, y1, x1 = box
    text = (f"receptive field of ({y}, {x}): input rows {y0}-{y1 - 1}, "
            f"columns {x0}-{x1 - 1} ({y1 - y0} x {x1 - x0} px)")
    if seeing is not None:
        sy0, sx0, sy1, sx1 = seeing
        count = (sy1 - sy0) * (sx1 - sx0)
        text += (f";  this pixel is seen by {count} position{'s' if count != 1 else ''} "
                 f"(rows {sy0}-{sy1 - 1}, columns {sx0}-{sx1 - 1})")
    return text
