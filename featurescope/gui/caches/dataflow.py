"""The dataflow graph of each model, built once on the worker and shared (Qt-free).

The Graph view draws it and the grid view's "show after activation" reads it
(core/graph). Tracing resnet50 takes about a second, so it is never built on the GUI
thread: :func:`prepare` runs in a job, :func:`graph_for` only reads (None until built).
"""
from __future__ import annotations

import threading
import weakref
from typing import Any, Optional

_lock = threading.Lock()
_cache: "weakref.WeakKeyDictionary[Any, Any]" = weakref.WeakKeyDictionary()
_errors: "weakref.WeakKeyDictionary[Any, str]" = weakref.WeakKeyDictionary()


def prepare(model: Any, progress=None, cancel=None) -> Any:
    """Build (or return the cached) Dataflow of ``model``; raises ModelError when it
    cannot be traced (the sentence is also kept for :func:`error_for`)."""
    with _lock:
        if model in _cache:
            return _cache[model]
    from featurescope.core.errors import ModelError
    from featurescope.core.graph.tracing import build_dataflow

    try:
        graph = build_dataflow(model, progress=progress, cancel=cancel)
    except ModelError as error:
        with _lock:
            _errors[model] = str(error)
        raise
    with _lock:
        _cache[model] = graph
    return graph


def graph_for(model: Any) -> Optional[Any]:
    """The cached Dataflow of ``model``, or None when it is not built (yet)."""
    if model is None:
        return None
    with _lock:
        return _cache.get(model)


def error_for(model: Any) -> str:
    with _lock:
        return _errors.get(model, "") if model is not None else ""


def shown_layer(model: Any, result: Any, layer: str, after_activation: bool) -> tuple[str, str]:
    """(the layer whose output the grid shows for ``layer``, a note for its header).

    With "show after activation" a convolution followed by (batch norm and) an
    activation shows the activation's output, found in the traced graph; the note says
    which, or why the convolution's own output is shown. "" as the note while the graph
    is not built yet (the caller asks for it with :func:`prepare`)."""
    if not after_activation or result is None:
        return layer, ""
    info = getattr(result, "info", {}).get(layer)
    if info is None or "Conv" not in info.kind:
        return layer, ""
    graph = graph_for(model)
    if graph is None:
        return layer, ("   (tracing the network to find its activation...)" if not error_for(model)
                       else "   (its activation is unknown: the network could not be traced)")
    from featurescope.core.graph.activation import activation_after

    pair = activation_after(graph, layer)
    if pair is None:
        return layer, "   (no activation follows it directly: its own output)"
    if pair.activation not in result:
        return layer, f"   (its activation {pair.activation} is not captured: its own output)"
    return pair.activation, f"   {pair.describe()}: what the next layer receives"
