"""Which captured layers feed which: the wiring a circuit is read along.

One shapes-only forward pass (PyTorch's "meta" device, as the receptive fields do)
runs through :func:`~featurescope.core.capture.grad.run_with_grad` under an
:class:`~featurescope.core.capture.trace.OpTrace` that notes, for every tensor an op
makes, the tensors it was made from. A layer's *feeders* are the captured layers
whose outputs reach its input through ops that are not captured layers (batch norm,
activations, ``out + identity``, ``cat``); the network's output has feeders too (the
class scores). Nothing runs on the model's weights or device.

The *default source* of a layer is the feeder that feeds it most directly. Layers that
pass channel c on from their input's channel c alone (a depthwise convolution, a
pooling layer, batch norm or an activation when those are listed) are looked through,
since ranking their channels says nothing that the layer under them does not; where
two paths meet (a residual sum) the deeper one is taken (the longest chain of captured
layers behind it; a skip connection has the shorter chain), and of equals the one
that ran last.
"""
from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass, field
from typing import Optional

import torch
from torch import nn

from featurescope.core.capture.grad import run_with_grad
from featurescope.core.capture.layers import find_layer_module
from featurescope.core.capture.trace import OpTrace, module_state_kept, tensors_in
from featurescope.core.errors import LayerNotRunError, ModelError

# The target that stands for the network's output (the class scores).
CLASS = "class"

_PER_CHANNEL_TYPES = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d,
                      nn.BatchNorm2d, nn.Identity, nn.Dropout, nn.Dropout2d)

_CACHE: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


@dataclass
class LayerGraph:
    """The captured layers of one network and how they are wired.

    ``layers``: names in the order they ran; ``feeders``: layer (or :data:`CLASS`) ->
    the captured layers whose outputs reach its input with no captured layer between,
    in the order they ran; ``per_channel``: layers whose channel c is made from their
    input's channel c alone; ``depth``: the longest chain of captured layers up to and
    including each layer (1 for a first layer); ``channels``: output channels per layer.
    """

    layers: list[str]
    feeders: dict[str, tuple[str, ...]]
    per_channel: frozenset
    depth: dict[str, int]
    channels: dict[str, int]
    order: dict[str, int] = field(default_factory=dict)

    def __post_init__(self):
        self.order = {name: i for i, name in enumerate(self.layers)}

    def default_source(self, layer: str) -> Optional[str]:
        """The captured layer that feeds ``layer`` most directly (see the module
        docstring), or None when nothing captured feeds it (a first layer)."""
        candidates = self._mixing_feeders(layer, set())
        if not candidates:
            return None
        return max(candidates, key=lambda name: (self.depth.get(name, 0), self.order.get(name, -1)))

    def _mixing_feeders(self, layer: str, seen: set) -> set:
        found = set()
        for feeder in self.feeders.get(layer, ()):
            if feeder in seen:
                continue
            seen.add(feeder)
            if feeder in self.per_channel and self.feeders.get(feeder):
                found |= self._mixing_feeders(feeder, seen)
            else:
                found.add(feeder)
        return found

    def upstream(self, layer: str) -> set:
        """Every captured layer whose output reaches ``layer`` (through any path)."""
        found, stack = set(), list(self.feeders.get(layer, ()))
        while stack:
            name = stack.pop()
            if name not in found:
                found.add(name)
                stack.extend(self.feeders.get(name, ()))
        return found


def is_per_channel(module: nn.Module) -> bool:
    """Whether channel c of ``module``'s output comes from channel c of its input alone."""
    if isinstance(module, nn.Conv2d):
        return module.groups == module.in_channels == module.out_channels
    if isinstance(module, _PER_CHANNEL_TYPES):
        return True
    return type(module).__module__ == "torch.nn.modules.activation" and not isinstance(
        module, (nn.MultiheadAttention, nn.Softmax, nn.Softmin, nn.LogSoftmax, nn.Softmax2d, nn.GLU))


def _model_parts(model):
    module = getattr(model, "module", model)
    name = getattr(model, "name", None) or type(module).__name__
    return module, name


def _default_layers(model, module) -> list[str]:
    layers = list(getattr(model, "layers", None) or []) if not isinstance(model, nn.Module) else []
    if layers:
        return layers
    from featurescope.core.capture.layers import captured_kind

    return [name for name, sub in module.named_modules() if name and captured_kind(sub) is not None]


def _input_shape(model) -> tuple[int, int, int, int]:
    size = getattr(model, "input_size", None) or (224, 224)
    if isinstance(size, int):
        size = (size, size)
    return (1, int(getattr(model, "channels", 3) or 3), int(size[0]), int(size[1]))


class _Parents:
    """The observer: for each tensor an op made, the known tensors it was made from.

    Tensors are kept alive so that an id is never reused within the pass; an argument
    that is not a known tensor (a weight, or a copy of it on "meta") is not recorded."""

    def __init__(self, x: torch.Tensor):
        self.keep = [x]
        self.parents: dict[int, list[int]] = {id(x): []}
        self.made: dict[int, int] = {id(x): 0}  # id -> when it was made

    def __call__(self, func, args, kwargs, result) -> None:
        sources = [id(t) for t in tensors_in((args, kwargs)) if id(t) in self.parents]
        for tensor in tensors_in(result):
            key = id(tensor)
            if key in self.parents:  # an in-place op: it keeps what it was made of, too
                self.parents[key].extend(s for s in sources if s != key)
            else:
                self.parents[key] = sources
                self.made[key] = len(self.keep)
                self.keep.append(tensor)

    def reaching(self, tensor, layer_of: dict[int, list[str]]) -> list[str]:
        """The layers whose outputs reach ``tensor`` with no other layer output between."""
        found, seen = [], set()
        stack = list(self.parents.get(id(tensor), ()))
        while stack:
            key = stack.pop()
            if key in seen:
                continue
            seen.add(key)
            if key in layer_of:
                found.extend(layer_of[key])
            else:
                stack.extend(self.parents.get(key, ()))
        return found


def layer_graph(model, extra: tuple = ()) -> LayerGraph:
    """The :class:`LayerGraph` of ``model`` (a LoadedModel or an nn.Module) over its
    captured layers plus the names in ``extra``; cached per network and layer list.
    Raises ModelError when the network cannot run at its input size."""
    module, model_name = _model_parts(model)
    layers = _default_layers(model, module)
    layers += [name for name in extra if name not in layers and name != CLASS]
    shape = _input_shape(model)
    key = (tuple(layers), shape)
    with _LOCK:
        cached = _CACHE.get(module, {}).get(key)
    if cached is not None:
        return cached
    graph = _trace(module, model_name, layers, shape)
    with _LOCK:
        _CACHE.setdefault(module, {})[key] = graph
    return graph


def _trace(module: nn.Module, model_name: str, layers: list[str], shape) -> LayerGraph:
    last_error = None
    for device in ("meta", None):  # data-dependent code cannot run on "meta": then for real
        x = torch.zeros(shape, device=device or _device_of(module))
        observer = _Parents(x)
        try:
            with module_state_kept(module), OpTrace(observer, to_meta=device == "meta"):
                run = run_with_grad(module, x, layers, model_name=model_name, grad=False)
            break
        except LayerNotRunError:
            raise
        except ModelError as error:
            last_error = error
    else:
        raise last_error
    activations = run.activations
    layer_of: dict[int, list[str]] = {}
    for name in layers:
        layer_of.setdefault(id(activations[name]), []).append(name)
    order = sorted(layers, key=lambda name: observer.made.get(id(activations[name]), len(observer.keep)))
    feeders: dict[str, tuple[str, ...]] = {}
    rank = {name: i for i, name in enumerate(order)}
    for name in order:
        reached = [n for n in observer.reaching(activations[name], layer_of) if n != name]
        feeders[name] = tuple(sorted(set(reached), key=rank.get))
    if torch.is_tensor(run.output):
        feeders[CLASS] = tuple(sorted(set(observer.reaching(run.output, layer_of)) |
                                      ({layer_of[id(run.output)][0]} if id(run.output) in layer_of else set()),
                                      key=rank.get))
    depth: dict[str, int] = {}
    for name in order:
        depth[name] = 1 + max((depth.get(f, 0) for f in feeders[name]), default=0)
    per_channel = frozenset(name for name in order
                            if is_per_channel(find_layer_module(module, name, model_name)[0]))
    channels = {name: int(activations[name].shape[1]) for name in order
                if torch.is_tensor(activations[name]) and activations[name].dim() >= 2}
    return LayerGraph(order, feeders, per_channel, depth, channels)


def _device_of(module: nn.Module) -> torch.device:
    for tensor in module.parameters():
        return tensor.device
    return torch.device("cpu")
