"""Running an ONNX graph for featurescope: fixed shapes, and edited layers.

Two things a plain ``InferenceSession.run`` does not do:

- **Fixed shapes.** torch's exporter writes a fixed input shape by default
  ((1, 3, 224, 224)); ONNX Runtime then refuses a batch of 2 or another image size with
  a long traceback. A graph whose batch is fixed is run one batch of that size at a time
  and the results stacked (the graph's own reshapes may bake the batch in, so it is not
  safe to relabel it as dynamic). A fixed height and width cannot be worked around: the
  graph's later shapes depend on them, so another size is refused in one sentence.
- **Edited layers** (switching channels off). ONNX Runtime computes the whole graph at
  once, so an edit to one layer's output made by a capture sink would not reach the
  layers after it. :meth:`OnnxRunner.run` takes ``cuts`` ({value name: array}): the
  graph is cut there (the node that computed the value writes to a renamed output and
  the value becomes a graph input), so everything downstream is computed from the edited
  values. One session is built per set of cut values and kept.

This module is imported when a model is looked up (every module of ``sources`` is), so
onnx and onnxruntime are imported only when a graph runs.
"""
from __future__ import annotations

from typing import Optional

from featurescope.core.errors import ModelError

COMPUTED_SUFFIX = "__featurescope_computed"


class OnnxRunner:
    """``OnnxRunner(model_bytes, input_name, file_name)``; ``run(x, cuts)`` -> {name: array}."""

    def __init__(self, model_bytes: bytes, input_name: str, file_name: str):
        self._bytes = model_bytes
        self._input_name = input_name
        self._file_name = file_name
        self._sessions: dict = {}

    def _session(self, cuts: frozenset = frozenset()):
        import onnxruntime

        if cuts not in self._sessions:
            options = onnxruntime.SessionOptions()
            options.log_severity_level = 3
            data = self._bytes if not cuts else _cut(self._bytes, cuts)
            self._sessions[cuts] = onnxruntime.InferenceSession(
                data, options, providers=["CPUExecutionProvider"])
        return self._sessions[cuts]

    def input_dims(self) -> list:
        """The graph input's dims: ints where fixed, None where free."""
        shape = self._session().get_inputs()[0].shape
        return [d if isinstance(d, int) and d > 0 else None for d in shape]

    def run(self, x, cuts: Optional[dict] = None) -> dict:
        """Every graph output for ``x`` (N, C, H, W float32 numpy), with the values named in
        ``cuts`` replaced by the given (N, ...) arrays before the nodes that read them."""
        import numpy as np

        cuts = dict(cuts or {})
        dims = self.input_dims()
        if len(dims) == x.ndim == 4:
            wanted, given = dims[2:], list(x.shape[2:])
            if any(w is not None and w != g for w, g in zip(wanted, given)):
                raise ModelError(
                    f"{self._file_name} takes {wanted[0] or 'any'}x{wanted[1] or 'any'} images only "
                    f"(its input shape is fixed), not {given[0]}x{given[1]}; leave --input-size "
                    "out, or export it with dynamic height and width.")
        session = self._session(frozenset(cuts))
        names = [o.name for o in session.get_outputs()]
        batch = dims[0] if dims else None
        if batch is None or batch == x.shape[0]:
            return dict(zip(names, session.run(names, self._feed(x, cuts))))
        # a fixed batch: run it that many images at a time (padding the last run)
        parts = []
        for start in range(0, x.shape[0], batch):
            chunk = {key: _padded(value[start:start + batch], batch)
                     for key, value in [(self._input_name, x), *cuts.items()]}
            parts.append(session.run(names, chunk))
        count = x.shape[0]
        results = {}
        for i, name in enumerate(names):
            pieces = [part[i] for part in parts]
            if all(p.ndim and p.shape[0] == batch for p in pieces):
                results[name] = np.concatenate(pieces)[:count]
            else:  # not batched (a shape, a constant): the same for every run
                results[name] = pieces[0]
        return results

    def _feed(self, x, cuts: dict) -> dict:
        return {self._input_name: x, **cuts}


def _padded(array, size: int):
    import numpy as np

    if array.shape[0] == size:
        return np.ascontiguousarray(array)
    pad = np.zeros((size - array.shape[0],) + array.shape[1:], array.dtype)
    return np.ascontiguousarray(np.concatenate([array, pad]))


def _cut(model_bytes: bytes, cuts: frozenset) -> bytes:
    """The graph with each value in ``cuts`` turned into a graph input (float32): its node
    writes a renamed output nothing reads, and every reader reads the input instead."""
    import onnx

    model = onnx.load_from_string(model_bytes)
    graph = model.graph
    for node in graph.node:
        for i, name in enumerate(node.output):
            if name in cuts:
                node.output[i] = name + COMPUTED_SUFFIX
    kept = [o for o in graph.output if o.name not in cuts]
    del graph.output[:]
    graph.output.extend(kept)
    infos = [v for v in graph.value_info if v.name not in cuts]
    del graph.value_info[:]
    graph.value_info.extend(infos)
    for name in sorted(cuts):
        graph.input.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    return model.SerializeToString()
