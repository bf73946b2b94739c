"""Op tracing: the one place functional torch calls are observed.

Module taps (taps.py) see what layers output; some analyses must also follow the
functional ops between layers (``out + identity``, ``F.pad``, ``torch.cat``,
``permute``). :class:`OpTrace` is a ``TorchFunctionMode``: inside ``with OpTrace(observe)``
every torch function call runs and then ``observe(func, args, kwargs, result)`` is called.
With ``to_meta`` every tensor argument is moved to the "meta" device first, so a
network with weights anywhere runs on a meta input computing shapes only.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import torch
from torch.overrides import TorchFunctionMode

Observer = Callable[[object, tuple, dict, object], None]


def to_meta(value):
    """``value`` with every tensor inside (lists, tuples, dicts too) on the meta device."""
    if isinstance(value, torch.Tensor):
        return value if value.device.type == "meta" else value.to("meta")
    if isinstance(value, (list, tuple)):
        converted = [to_meta(v) for v in value]
        return converted if isinstance(value, list) else tuple(converted)
    if isinstance(value, dict):
        return {k: to_meta(v) for k, v in value.items()}
    return value


def tensors_in(value) -> list:
    """Every tensor inside ``value`` (lists, tuples, dicts), in order."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in tensors_in(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in tensors_in(v)]
    return []


_REGISTRIES = ("_parameters", "_buffers", "_modules")


def _copy(value):
    return list(value) if isinstance(value, list) else dict(value) if isinstance(value, dict) else None


@contextmanager
def module_state_kept(module: torch.nn.Module) -> Iterator[None]:
    """Put back, afterwards, every plain tensor attribute (not a parameter or buffer) of
    ``module``'s submodules, and drop new ones that hold meta tensors. A shapes-only pass
    on "meta" must leave the network as it found it: torchvision's AnchorGenerator keeps
    its anchors on the device of the last input it saw, so one meta pass would break every
    later real one ("Cannot copy out of meta tensor")."""
    saved = {}
    for sub in module.modules():
        for name, value in vars(sub).items():
            if name not in _REGISTRIES and tensors_in(value):
                saved[(id(sub), name)] = (value, _copy(value))
    try:
        yield
    finally:
        for sub in module.modules():
            for name, value in list(vars(sub).items()):
                if name in _REGISTRIES:
                    continue
                if (id(sub), name) in saved:
                    original, items = saved[(id(sub), name)]
                    if isinstance(original, list):
                        original[:] = items
                    elif isinstance(original, dict):
                        original.clear()
                        original.update(items)
                    setattr(sub, name, original)
                elif any(t.device.type == "meta" for t in tensors_in(value)):
                    delattr(sub, name)


class OpTrace(TorchFunctionMode):
    """Call ``observe(func, args, kwargs, result)`` after every torch function call."""

    def __init__(self, observe: Observer, to_meta: bool = False):
        super().__init__()
        self.observe = observe
        self.to_meta = to_meta

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.to_meta:
            args, kwargs = to_meta(args), to_meta(kwargs)
        result = func(*args, **kwargs)
        self.observe(func, args, kwargs, result)
        return result


def trace_dataflow(module, x: torch.Tensor, name=None):
    """The dataflow graph of one real forward pass of ``module`` on ``x`` (for networks
    torch.fx cannot trace): a node per call of a module without children (through the
    taps, named as a capture names layers) and per torch function called between them
    (``out + x``, ``torch.cat``), linked by which tensor each one produced. Returns a
    core.graph.dataflow.Dataflow with source "trace"."""
    from featurescope.core.capture.taps import Run, active, forward_error, tap
    from featurescope.core.graph.dataflow import JOIN_KINDS, Dataflow, GraphNode, _blocks

    targets, leaves = {}, set()
    for qualified, sub in module.named_modules():
        if qualified:
            targets[id(sub)] = (qualified, None)
            tap(sub)
            if next(iter(sub.children()), None) is None:
                leaves.add(id(sub))
    nodes: list = []
    producer: dict = {id(x): "x"}
    alive = [x]  # every tensor seen stays alive, so no id is reused during the pass
    nodes.append(GraphNode("x", "input", "input", None, (), tuple(x.shape[1:])))

    def shape_of(value):
        return tuple(int(s) for s in value.shape[1:]) if isinstance(value, torch.Tensor) else None

    def add_node(node_id, label, kind, layer, scope, inputs, output, join=None):
        sources = list(dict.fromkeys(producer[id(t)] for t in inputs if id(t) in producer))
        nodes.append(GraphNode(node_id, label, kind, layer, tuple(scope), shape_of(output), sources, join))
        for tensor in tensors_in(output):
            producer[id(tensor)] = node_id
            alive.append(tensor)

    class TraceRun(Run):
        stack: list = []
        inside_leaf = 0

        def call(self, tap_, args, kwargs):
            sub = tap_.ref()
            qualified = self.targets[id(sub)][0]
            leaf = id(sub) in leaves
            scope = list(self.stack)
            self.stack.append(qualified)
            self.inside_leaf += leaf
            try:
                output = super().call(tap_, args, kwargs)
            finally:
                self.stack.pop()
                self.inside_leaf -= leaf
            if leaf:
                count = self.calls.get(qualified, 1)
                layer = qualified if count == 1 else f"{qualified}#{count}"
                add_node(layer, layer, type(sub).__name__, layer, scope,
                         tensors_in(list(args) + list(kwargs.values())), output)
            return output

    run = TraceRun(targets, [])
    run.stack = []
    counter = {}

    def observe(func, args, kwargs, result):
        if run.inside_leaf or not isinstance(result, torch.Tensor):
            return
        inputs = tensors_in(list(args) + list(kwargs.values()))
        if not inputs:
            return
        kind = getattr(func, "__name__", str(func)).strip("_")
        count = counter[kind] = counter.get(kind, 0) + 1
        known = [t for t in inputs if id(t) in producer]
        join = JOIN_KINDS.get(kind) if len({producer[id(t)] for t in known}) >= 2 else None
        add_node(f"{kind}_{count}", kind, kind, None, run.stack, inputs, result, join)

    try:
        with torch.no_grad(), active(run), OpTrace(observe):
            output = module(x)
    except (RuntimeError, ValueError, TypeError, IndexError) as error:
        raise forward_error(module, x, error, name) from error
    nodes.append(GraphNode("output", "output", "output", None, (), None,
                           list(dict.fromkeys(producer[id(t)] for t in tensors_in(output)
                                              if id(t) in producer))))
    return Dataflow(nodes, "trace", _blocks(module, nodes))

# Elementwise nonlinearities (functional and Tensor-method names, in-place forms too):
# under :class:`Linearised` each returns its input unchanged.
NONLINEAR_NAMES = frozenset(
    base + suffix
    for base in ("relu", "relu6", "hardtanh", "leaky_relu", "elu", "selu", "celu", "gelu", "silu",
                 "mish", "hardswish", "hardsigmoid", "sigmoid", "tanh", "softplus", "softsign",
                 "tanhshrink", "threshold", "rrelu", "prelu", "glu", "clamp", "clip", "clamp_min",
                 "clamp_max", "logsigmoid")
    for suffix in ("", "_"))
_MAX_POOLS = frozenset({"max_pool2d", "max_pool2d_with_indices", "_max_pool2d"})
_ADAPTIVE_MAX_POOLS = frozenset({"adaptive_max_pool2d", "adaptive_max_pool2d_with_indices",
                                 "_adaptive_max_pool2d"})


def _argument(args, kwargs, index: int, name: str, default=None):
    if name in kwargs:
        return kwargs[name]
    return args[index] if len(args) > index else default


class Linearised(TorchFunctionMode):
    """Inside ``with Linearised():`` a network computes its linear part: every elementwise
    nonlinearity (:data:`NONLINEAR_NAMES`: ReLU, ReLU6, GELU, SiLU, sigmoid, clamp, ...)
    is the identity and max pooling is average pooling over the same window (its linear
    stand-in: every input of the window counts, padding excluded). Convolutions, batch
    norm in eval mode, sums and average pooling are already affine and run unchanged,
    so the network is affine in its input: the "expanded weights" of the Circuits thread
    (Olah et al. 2020) are its Jacobian between two layers. Products of two
    activations (squeeze-and-excitation gates) and normalisations over channels stay
    as they are; the result then depends on where the Jacobian is taken."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name in NONLINEAR_NAMES and args and isinstance(args[0], torch.Tensor):
            return args[0]
        if name in _MAX_POOLS:
            return self._average(args, kwargs)
        if name in _ADAPTIVE_MAX_POOLS:
            pooled = torch.nn.functional.adaptive_avg_pool2d(args[0], _argument(args, kwargs, 1, "output_size"))
            return (pooled, None) if _argument(args, kwargs, 2, "return_indices", False) else pooled
        return func(*args, **kwargs)

    @staticmethod
    def _average(args, kwargs):
        x = args[0]
        kernel = _argument(args, kwargs, 1, "kernel_size")
        stride = _argument(args, kwargs, 2, "stride") or kernel
        padding = _argument(args, kwargs, 3, "padding", 0)
        dilation = _argument(args, kwargs, 4, "dilation", 1)
        ceil_mode = _argument(args, kwargs, 5, "ceil_mode", False)
        if dilation not in (1, (1, 1), [1, 1]):
            raise ValueError("a dilated max pooling has no average-pooling stand-in")
        pooled = torch.nn.functional.avg_pool2d(x, kernel, stride, padding, ceil_mode,
                                                count_include_pad=False)
        return (pooled, None) if _argument(args, kwargs, 6, "return_indices", False) else pooled
