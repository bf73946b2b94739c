"""Tracing a network into its :class:`~featurescope.core.graph.dataflow.Dataflow`.

torch.fx first (every module without children is a leaf node, so our own modules with
Python control flow inside, such as Lite0's TensorFlow-style padding, stay one node);
where fx cannot trace the network, the op trace of a real forward pass
(core/capture/trace.py). Kept apart from dataflow.py, which the graph view imports at
start-up: this module imports torch.
"""
from __future__ import annotations

import re
from typing import Optional

import torch
from torch import nn

from featurescope.core.errors import ModelError
from featurescope.core.graph.dataflow import JOIN_KINDS, Dataflow, GraphNode, _blocks
from featurescope.core.progress import CancelToken, ProgressCallback, check


class _LeafTracer(torch.fx.Tracer):
    """fx's tracer with every module that has no children as a leaf."""

    def is_leaf_module(self, module: nn.Module, qualified: str) -> bool:
        return next(iter(module.children()), None) is None or super().is_leaf_module(module, qualified)


def _shape(meta) -> Optional[tuple]:
    shape = getattr(meta, "shape", None)
    if shape is None:
        return None
    return tuple(int(s) for s in shape[1:]) if len(shape) > 1 else tuple(int(s) for s in shape)


def _scope_of(node, qualified: Optional[str]) -> tuple:
    stack = [re.sub(r"@\d+$", "", key) for key in node.meta.get("nn_module_stack", {})]
    if qualified is not None and stack and stack[-1] == qualified:
        stack = stack[:-1]
    if qualified is not None and not stack:  # older fx: derive it from the module path
        parts = qualified.split(".")
        stack = [".".join(parts[:i]) for i in range(1, len(parts))]
    return tuple(dict.fromkeys(stack))


def _fx_dataflow(module: nn.Module, x: torch.Tensor) -> Dataflow:
    graph = _LeafTracer().trace(module)
    traced = torch.fx.GraphModule(module, graph)
    _propagate_shapes(traced, x)
    modules = dict(module.named_modules())
    calls: dict = {}
    nodes, kept = [], {}
    for fx_node in graph.nodes:
        meta = fx_node.meta.get("val", fx_node.meta.get("tensor_meta"))
        shape = _shape(meta) if isinstance(getattr(meta, "shape", None), (tuple, torch.Size)) \
            else None  # (a tuple of outputs, or no tensor)
        inputs = list(dict.fromkeys(kept[i.name] for i in fx_node.all_input_nodes if i.name in kept))
        if fx_node.op == "placeholder":
            node = GraphNode(fx_node.name, "input", "input", None, (), shape)
        elif fx_node.op == "output":
            node = GraphNode("output", "output", "output", None, (), None, inputs)
        elif fx_node.op == "call_module":
            qualified = str(fx_node.target)
            count = calls[qualified] = calls.get(qualified, 0) + 1
            layer = qualified if count == 1 else f"{qualified}#{count}"
            kind = type(modules[qualified]).__name__
            node = GraphNode(layer, layer, kind, layer, _scope_of(fx_node, qualified), shape, inputs)
        elif fx_node.op in ("call_function", "call_method"):
            if shape is None:  # x.size(), getattr(x, "shape"): bookkeeping, not dataflow
                for i in fx_node.all_input_nodes:
                    if i.name in kept:
                        kept[fx_node.name] = kept[i.name]
                        break
                continue
            kind = getattr(fx_node.target, "__name__", str(fx_node.target)).strip("_")
            join = JOIN_KINDS.get(kind) if len(inputs) >= 2 else None
            node = GraphNode(fx_node.name, kind, kind, None, _scope_of(fx_node, None), shape, inputs, join)
        else:  # get_attr: a parameter or buffer used directly
            continue
        kept[fx_node.name] = node.id
        nodes.append(node)
    return Dataflow(nodes, "fx", _blocks(module, nodes))


def _propagate_shapes(traced, x: torch.Tensor) -> None:
    """Each node's output shape in its meta: with fake tensors (no arithmetic, a few
    times faster than a pass of resnet50), else with a real pass on zeros."""
    try:
        from torch._subclasses.fake_tensor import FakeTensorMode
        from torch.fx.passes.fake_tensor_prop import FakeTensorProp

        mode = FakeTensorMode(allow_non_fake_inputs=True)
        FakeTensorProp(traced, mode).propagate(mode.from_tensor(x))
    except Exception:  # noqa: BLE001 - an op fake tensors do not know: compute for real
        from torch.fx.passes.shape_prop import ShapeProp

        for node in traced.graph.nodes:
            node.meta.pop("val", None)
        with torch.no_grad():
            ShapeProp(traced).propagate(x)


def build_dataflow(model, input_shape: Optional[tuple] = None,
                   progress: Optional[ProgressCallback] = None,
                   cancel: Optional[CancelToken] = None) -> Dataflow:
    """The dataflow graph of ``model`` (a LoadedModel or an nn.Module) on zeros of its
    input size (``input_shape`` (1, C, H, W); default the model's own, else 224 px).
    torch.fx first, the op trace of a forward pass where fx cannot trace. Raises
    ModelError when neither can follow the network."""
    module = getattr(model, "module", model)
    if input_shape is None:
        size = tuple(getattr(model, "input_size", None) or (224, 224))
        input_shape = (1, int(getattr(model, "channels", 3)), *size)
    check(cancel)
    if progress is not None:
        progress(0, 2, "Tracing the network")
    was_training = module.training
    module.eval()
    try:
        x = torch.zeros(input_shape, device=_device(module))
        try:
            graph = _fx_dataflow(module, x)
        except Exception:  # noqa: BLE001 - fx refuses in many ways; the op trace follows a real pass
            check(cancel)
            from featurescope.core.capture.trace import trace_dataflow

            graph = trace_dataflow(module, x, name=getattr(model, "name", None))
    finally:
        module.train(was_training)
    if progress is not None:
        progress(1, 2, "Tracing the network")
    if not graph.nodes:
        raise ModelError(f"{getattr(model, 'name', type(module).__name__)} could not be traced "
                         "into a graph.")
    return graph


def _device(module: nn.Module):
    for tensor in module.parameters():
        return tensor.device
    return torch.device("cpu")
