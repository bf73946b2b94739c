"""One layer's output inside the autograd graph, the forward pass stopped right after it.

Feature visualisation (core/optvis/) optimises an input image for a layer's channels:
every step needs that layer's output with gradients, and nothing after it. This runs
the network through the same taps as every capture, with a :class:`KeepGradSink` and an
:class:`EarlyStop` (so a middle layer costs only the layers before it), with gradients
on even inside ``torch.inference_mode()``.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import nn

from featurescope.core.capture.layers import find_layer_module
from featurescope.core.capture.sinks import EarlyStop, KeepGradSink, StopForward
from featurescope.core.capture.taps import Run, active, forward_error, materialize_lazy, tap
from featurescope.core.errors import ModelError


class LayerForward:
    """``forward(x)`` -> the output of ``layer`` for the batch ``x``, with gradients.

    ``module``: the bare network (eval mode is the caller's business); ``layer``: a
    layer name as ``featurescope layers`` prints it ("name#2" for a second call);
    ``check(output)`` may raise for an output the caller cannot use. ``grad=False``
    runs the same pass without building a graph. Raises ModelError
    for an unknown layer, a layer the forward pass never reaches, a network that fails,
    or weights made under ``torch.inference_mode`` (no gradient can pass them).
    """

    def __init__(self, module: nn.Module, layer: str, model_name: str,
                 check: Optional[Callable[[torch.Tensor], None]] = None):
        self.module = module
        self.layer = layer
        self.model_name = model_name
        self.check = check
        target, _call = find_layer_module(module, layer, model_name)
        self._target = target
        self._qualified = layer.partition("#")[0]
        tap(target)
        self._materialized = False

    def __call__(self, x: torch.Tensor, grad: bool = True) -> torch.Tensor:
        if not self._materialized:
            with torch.no_grad():
                materialize_lazy(self.module, x.detach())
            self._materialized = True
        sink = KeepGradSink(self.layer, self.check)
        run = Run({id(self._target): (self._qualified, None)}, [sink, EarlyStop([self.layer])],
                  wanted={self.layer})
        try:
            with torch.inference_mode(False), torch.set_grad_enabled(grad), active(run):
                self.module(x)
        except StopForward:
            pass
        except ModelError:
            raise
        except (RuntimeError, ValueError, TypeError, IndexError, MemoryError) as error:
            if "nference tensor" in str(error):
                raise ModelError(f"{self.model_name}'s weights were made under torch.inference_mode, "
                                 "so no gradient can pass them; load the model again.") from error
            raise forward_error(self.module, x, error) from error
        if sink.activation is None:
            raise ModelError(f"{self.layer!r} does not run in {self.model_name}'s forward pass.")
        if grad and x.requires_grad and not sink.activation.requires_grad:
            raise ModelError(f"{self.model_name} gives no gradients at {self.layer!r} (its forward "
                             "pass runs without autograd), so nothing can be optimised through it.")
        return sink.activation
