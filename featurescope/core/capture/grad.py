"""Layers' outputs inside the autograd graph: the one "these layers, with gradients" pass.

Grad-CAM, receptive fields, feature visualisation, attribution and circuits all need
some layers' outputs from one forward pass, usually with gradients, sometimes with an
output replaced (channels switched off, a batch of scaled activations) or the pass
stopped right after a layer. :func:`run_with_grad` runs the network through the same
taps as every capture with a :class:`~featurescope.core.capture.sinks.ReplaceOutputs`,
a :class:`~featurescope.core.capture.sinks.KeepGradSink` and an
:class:`~featurescope.core.capture.sinks.EarlyStop`, with gradients on even inside
``torch.inference_mode()``. :class:`LayerForward` is its repeated-call form for one
layer (optvis calls it at every optimisation step).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Optional, Union

import torch
from torch import nn

from featurescope.core.capture.layers import find_layer_module
from featurescope.core.capture.sinks import EarlyStop, KeepGradSink, ReplaceOutputs, StopForward
from featurescope.core.capture.taps import Run, active, forward_error, materialize_lazy, tap
from featurescope.core.errors import LayerNotRunError, ModelError

Replacement = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class GradRun:
    """What :func:`run_with_grad` saw.

    ``output``: the model's output, None when the pass stopped early (``stop_after``).
    ``activations``: layer name -> its output (after ``replace``), part of the autograd
    graph when the run had ``grad=True``.
    """

    output: Optional[torch.Tensor]
    activations: dict[str, torch.Tensor]


def run_with_grad(module: nn.Module, x: torch.Tensor, layers: Union[str, Iterable[str]], *,
                  model_name: str, stop_after: Union[str, Iterable[str], None] = None,
                  replace: Optional[Mapping[str, Replacement]] = None,
                  grad: bool = True) -> GradRun:
    """One forward pass of ``module`` on ``x`` keeping the outputs of ``layers``.

    ``layers``: layer names as ``featurescope layers`` prints them ("name", "name#2" for
    a module's second call; any module name of ``named_modules()`` works).
    ``stop_after``: a layer name (or several: stop once all have run); the pass ends
    right after it and ``output`` is None. ``replace``: {layer: fn(output) -> new
    output}; the new output is what the rest of the network sees and what
    ``activations`` holds. With ``grad`` (default) the pass builds an autograd graph
    even inside ``torch.inference_mode()``, and every kept activation is part of it
    (one that nothing before it needs gradients for becomes a leaf that requires
    them), so ``torch.autograd.grad(score, run.activations[name])`` works. Train/eval
    mode and the device of ``x`` are the caller's business.

    Raises ModelError (one sentence) for an unknown layer, a layer the forward pass
    never reaches (:class:`~featurescope.core.errors.LayerNotRunError`), a network that fails on ``x``, or weights made under
    ``torch.inference_mode`` (no gradient can pass them).
    """
    names = [layers] if isinstance(layers, str) else list(layers)
    stops = [] if stop_after is None else [stop_after] if isinstance(stop_after, str) else list(stop_after)
    replace = dict(replace or {})
    targets = tap_layers(module, [*names, *stops, *replace], model_name)
    keep = KeepGradSink(names, leaf=grad)
    sinks: list = [ReplaceOutputs(replace)] if replace else []
    sinks.append(keep)
    if stops:
        sinks.append(EarlyStop(stops))
    seen = Seen()
    output = forward_through(module, x, Run(targets, [seen, *sinks], wanted=None), grad, model_name)
    for name in [*names, *stops, *replace]:
        if name not in seen.names:
            where = f" before it stops after {', '.join(map(repr, stops))}" if output is None else ""
            raise LayerNotRunError(f"{name!r} does not run in {model_name}'s forward pass{where}.",
                                   name)
    return GradRun(output=output, activations={name: keep.activations[name] for name in names})


class Seen:
    """Notes the name of every layer the run hands over (first sink)."""

    def __init__(self):
        self.names: set[str] = set()

    def write(self, name, module, inp, output):
        self.names.add(name)
        return None


def tap_layers(module: nn.Module, layers: Iterable[str], model_name: str) -> dict:
    """Tap the modules behind ``layers``; the ``targets`` of a :class:`Run` for them.
    ModelError for a name ``module`` lacks."""
    targets = {}
    for layer in layers:
        target, _call = find_layer_module(module, layer, model_name)
        tap(target)
        targets[id(target)] = (layer.partition("#")[0], None)
    return targets


def forward_through(module: nn.Module, x: torch.Tensor, run: Run, grad: bool, model_name: str,
                    lazy: bool = True):
    """``module(x)`` routed to ``run`` with gradients on or off (even inside
    ``torch.inference_mode()``); the output, or None when a sink stopped the pass.
    ``lazy``: give lazy modules their weights first (False once they have them).
    Errors of the network become one-sentence ModelErrors."""
    if x.is_inference():  # an inference tensor cannot be saved for backward
        with torch.inference_mode(False):
            x = x.clone()
    if lazy:
        materialize_lazy(module, x.detach())
    try:
        with torch.inference_mode(False), torch.set_grad_enabled(grad), active(run):
            return module(x)
    except StopForward:
        return None
    except ModelError:
        raise
    except (RuntimeError, ValueError, TypeError, IndexError, MemoryError) as error:
        if "nference tensor" in str(error):
            raise ModelError(f"{model_name}'s weights were made under torch.inference_mode, "
                             "so no gradient can pass them; load the model again.") from error
        raise forward_error(module, x, error, model_name) from error


class LayerForward:
    """``forward(x)`` -> the output of ``layer`` for the batch ``x``, with gradients:
    :func:`run_with_grad` for one layer, stopped after it, looked up once for many calls.

    ``module``: the bare network (eval mode is the caller's business); ``layer``: a
    layer name as ``featurescope layers`` prints it ("name#2" for a second call);
    ``check(output)`` may raise for an output the caller cannot use. ``grad=False``
    runs the same pass without building a graph. Same errors as :func:`run_with_grad`,
    and a ModelError when ``x`` needs gradients that the layer's output does not carry.
    """

    def __init__(self, module: nn.Module, layer: str, model_name: str,
                 check: Optional[Callable[[torch.Tensor], None]] = None):
        self.module = module
        self.layer = layer
        self.model_name = model_name
        self.check = check
        self._targets = tap_layers(module, [layer], model_name)
        self._materialized = False

    def __call__(self, x: torch.Tensor, grad: bool = True) -> torch.Tensor:
        sink = KeepGradSink([self.layer], self.check)
        run = Run(self._targets, [sink, EarlyStop([self.layer])], wanted={self.layer})
        forward_through(self.module, x, run, grad, self.model_name, lazy=not self._materialized)
        self._materialized = True
        activation = sink.activations.get(self.layer)
        if activation is None:
            raise LayerNotRunError(f"{self.layer!r} does not run in {self.model_name}'s forward "
                                   "pass.", self.layer)
        if grad and x.requires_grad and not activation.requires_grad:
            raise ModelError(f"{self.model_name} gives no gradients at {self.layer!r} (its forward "
                             "pass runs without autograd), so nothing can be optimised through it.")
        return activation
