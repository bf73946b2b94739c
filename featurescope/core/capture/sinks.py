"""Sinks: what a capture does with each layer output the taps hand it.

A sink has ``write(name, module, input, output)``, called for each wanted layer of a
forward pass (core/capture/taps.py), with the layer name (``name#2`` for a module's
second call), the module, its input and its output for the whole batch (N, C, H, W).
It may return a tensor that the rest of the network sees instead of ``output``
(Grad-CAM's copy) and may raise :class:`StopForward` to end the pass. A sink with
``before_inplace(module, tensor)`` is told when an in-place module is about to
overwrite ``tensor``.

- :class:`StoreSink` keeps the outputs (the capture result), within a memory budget;
- :class:`KeepGradSink` keeps activations inside the autograd graph (Grad-CAM);
- :class:`ReplaceOutputs` hands the rest of the network a function of a layer's output;
- :class:`EarlyStop` ends the pass after the last wanted layer (put it last);
- :class:`InputSink` keeps one layer's input and output (the arithmetic at a position);
- :class:`ZeroChannels` replaces a layer's output by a copy with some channels zeroed
  (ablation; put it before the store so the stored map is what the network saw);
- :class:`ReducerSink` sees each batch and keeps only a summary; :class:`TopKReducer`
  keeps each channel's top-k images by spatial maximum (a dataset index).
"""
from __future__ import annotations

from typing import Iterable, Optional

import torch


class StopForward(Exception):
    """Raised by a sink once it has everything: the rest of the forward pass is skipped."""


class StoreSink:
    """Keep each output (today's capture): by reference, cloned only where needed.

    ``clone``: names to clone at capture (a functional in-place op overwrites them);
    ``store_dtype`` e.g. torch.float16 stores a compact copy; ``keep`` (a set of names)
    with ``budget`` (bytes): store only those, and nothing beyond the budget (lazy
    capture). ``outputs`` {name: tensor} in network order.
    """

    def __init__(self, *, clone: Iterable[str] = (), store_dtype: Optional[torch.dtype] = None,
                 keep: Optional[frozenset] = None, budget: Optional[int] = None):
        self.clone = set(clone)
        self.store_dtype = store_dtype
        self.keep = keep
        self.budget = budget
        self.stored_bytes = 0
        self.outputs: dict[str, torch.Tensor] = {}
        self.versions: dict[str, int] = {}
        self.by_id: dict[int, list] = {}  # id(stored tensor) -> names holding it

    def write(self, name, module, inp, output):
        if not torch.is_tensor(output):
            return None
        if self.keep is not None:
            size = output.numel() * (self.store_dtype or output.dtype).itemsize
            if name not in self.keep or self.stored_bytes + size > self.budget:
                return None
            self.stored_bytes += size
        kept = output
        if self.store_dtype is not None and output.dtype != self.store_dtype:
            kept = output.to(self.store_dtype)  # a copy: nothing can overwrite it
        elif name in self.clone:
            kept = output.clone()
        self.outputs[name] = kept
        if kept is output:
            self.by_id.setdefault(id(output), []).append(name)
            if not output.is_inference():
                self.versions[name] = output._version
        return None

    def before_inplace(self, module, target) -> None:
        # An in-place module is about to overwrite its input: if that is a stored output
        # (or a view of one), keep a private copy of what was captured.
        if not torch.is_tensor(target):
            return
        for candidate in (target, target._base):
            if candidate is None:
                continue
            copy = None
            for name in self.by_id.pop(id(candidate), ()):
                if name in self.versions and self.versions[name] != candidate._version:
                    continue  # a functional in-place op got there first: overwritten() says so
                if self.outputs.get(name) is candidate:
                    copy = candidate.clone() if copy is None else copy
                    self.outputs[name] = copy
                    self.versions.pop(name, None)

    def overwritten(self) -> set:
        """Stored outputs whose version counter moved: a functional in-place op hit them."""
        return {name for name, version in self.versions.items()
                if self.outputs[name]._version != version}


class KeepGradSink:
    """Keep the outputs of ``layers`` in the autograd graph (core/capture/grad.py).

    The rest of the network gets a copy, so an in-place ReLU right after (VGG) changes
    the copy and the layer's own output keeps its values and its gradient. ``check``
    (optional) is called with each output first and may raise. ``leaf``: an output
    that does not require gradients (nothing before it does) becomes a leaf that
    does, so a score's gradient with respect to it still exists. After the pass,
    ``activations`` {name: output}.
    """

    def __init__(self, layers: Iterable[str], check=None, leaf: bool = False):
        self.layers = set(layers)
        self.check = check
        self.leaf = leaf
        self.activations: dict[str, torch.Tensor] = {}

    def write(self, name, module, inp, output):
        if name not in self.layers:
            return None
        if self.check is not None:
            self.check(output)
        if not torch.is_tensor(output):
            self.activations[name] = output
            return None
        if self.leaf and torch.is_grad_enabled() and not output.requires_grad:
            output = output.detach().requires_grad_(True)
        self.activations[name] = output
        return output.clone()


class ReplaceOutputs:
    """``replace`` {layer: fn(output) -> new output}: the rest of the network (and the
    sinks after this one) see the new output instead (channels switched off, a batch of
    scaled activations)."""

    def __init__(self, replace: dict):
        self.replace = dict(replace)

    def write(self, name, module, inp, output):
        fn = self.replace.get(name)
        if fn is None or not torch.is_tensor(output):
            return None
        return fn(output)


class EarlyStop:
    """End the forward pass once every name in ``layers`` has been written (last sink)."""

    def __init__(self, layers: Iterable[str]):
        self.left = set(layers)

    def write(self, name, module, inp, output):
        self.left.discard(name)
        if not self.left:
            raise StopForward()
        return None


class InputSink:
    """Keep a copy of the input and output of layer ``layer`` (the first call with that name).

    ``input`` and ``output`` are (N, C, H, W) tensors detached from the graph, or None
    while the layer has not run. Copies, because a later in-place op may reuse them.
    """

    def __init__(self, layer: str):
        self.layer = layer
        self.input: Optional[torch.Tensor] = None
        self.output: Optional[torch.Tensor] = None

    def write(self, name, module, inp, output):
        if name == self.layer and self.input is None and torch.is_tensor(inp):
            self.input = inp.detach().clone()
            self.output = output.detach().clone() if torch.is_tensor(output) else None
        return None


class ZeroChannels:
    """Switch channels off: the rest of the network sees layer ``layer``'s output with
    ``channels`` set to zero (a copy; the layer's own tensor is untouched).

    Only the capture it is given to pays for it; ``applied`` says whether the layer ran.
    """

    def __init__(self, layer: str, channels: Iterable[int]):
        self.layer = layer
        self.channels = sorted({int(c) for c in channels})
        self.applied = False

    def write(self, name, module, inp, output):
        if name != self.layer or not torch.is_tensor(output) or output.dim() < 2:
            return None
        edited = output.clone()
        if self.channels:
            edited[:, self.channels] = 0
        self.applied = True
        return edited


class ReducerSink:
    """Base for sinks that keep a summary of each batch rather than the outputs.

    ``layers``: the names to reduce (None: every layer the run hands over). Subclasses
    implement :meth:`reduce` (called with a detached (N, C, H, W) tensor, still on the
    model's device, and ``start``: how many images this layer had seen before this batch).
    """

    def __init__(self, layers: Optional[Iterable[str]] = None):
        self.layers = None if layers is None else set(layers)
        self.seen: dict[str, int] = {}

    def write(self, name, module, inp, output):
        if (self.layers is not None and name not in self.layers) or not torch.is_tensor(output) \
                or output.dim() != 4:
            return None
        start = self.seen.get(name, 0)
        self.seen[name] = start + output.shape[0]
        self.reduce(name, output.detach(), start)
        return None

    def reduce(self, name: str, output: torch.Tensor, start: int) -> None:  # pragma: no cover
        raise NotImplementedError


class TopKReducer(ReducerSink):
    """Per layer and channel, the ``k`` images with the largest spatial maximum.

    Images are numbered in the order they were fed (batch after batch).
    ``result(name)`` -> (values (C, k), image indices (C, k)), both CPU, largest first
    (fewer than k columns while fewer images have been seen).
    """

    def __init__(self, k: int, layers: Optional[Iterable[str]] = None):
        super().__init__(layers)
        if int(k) < 1:
            raise ValueError(f"k must be at least 1, not {k}")
        self.k = int(k)
        self.best: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def reduce(self, name, output, start):
        maxima = output.flatten(2).amax(dim=2).float().cpu().t()  # (C, N)
        images = torch.arange(start, start + maxima.shape[1]).expand_as(maxima)
        if name in self.best:
            values, indices = self.best[name]
            maxima, images = torch.cat([values, maxima], 1), torch.cat([indices, images], 1)
        values, order = maxima.topk(min(self.k, maxima.shape[1]), dim=1)
        self.best[name] = (values, images.gather(1, order))

    def result(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        return self.best[name]
