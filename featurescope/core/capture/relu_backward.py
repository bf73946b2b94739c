"""A pass whose ReLUs pass gradients back by another rule: guided backpropagation and
the deconvnet (Springenberg et al. 2015; Zeiler & Fergus 2014).

The forward pass is the network's own; only the backward pass through each ``nn.ReLU``
(and ``nn.ReLU6``) module changes:

- ``guided``: the gradient goes back where the ReLU's input was positive (its ordinary
  rule) and only where the gradient itself is positive;
- ``deconvnet``: only where the gradient is positive, whatever the input was.

Captum's GuidedBackprop and Deconvolution do the same with backward hooks on every
``nn.ReLU``; here the taps (core/capture/taps.py) call a ReLU of our own in the module's
place for this pass only, so no hook is registered and a plain forward (or a capture on
another thread) meanwhile is untouched. A ReLU written as a function call in the model's
code (``F.relu(x)``) keeps its ordinary gradient, as with Captum.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from featurescope.core.capture.grad import GradRun, Seen, forward_through, tap_layers
from featurescope.core.capture.sinks import EarlyStop, KeepGradSink
from featurescope.core.capture.taps import Run, tap
from featurescope.core.errors import LayerNotRunError

RULES = ("guided", "deconvnet")


class _Relu(torch.autograd.Function):
    """clamp(x, 0, upper) with the backward rule ``rule``."""

    @staticmethod
    def forward(ctx, x, upper, rule):
        passed = x > 0
        if upper is not None:
            passed &= x < upper
        ctx.save_for_backward(passed)
        ctx.rule = rule
        return x.clamp(0, upper) if upper is not None else x.clamp(min=0)

    @staticmethod
    def backward(ctx, grad):
        (passed,) = ctx.saved_tensors
        positive = grad.clamp(min=0)
        if ctx.rule == "guided":
            positive = positive * passed
        return positive, None, None


class _SwappedReluRun(Run):
    """A Run that computes every ReLU module in ``relus`` (ids) with :class:`_Relu`."""

    def __init__(self, targets, sinks, relus: dict, rule: str):
        super().__init__(targets, sinks, wanted=None)
        self.relus = relus  # id(module) -> upper bound (None for ReLU, 6 for ReLU6)
        self.rule = rule

    def call(self, tap_, args, kwargs):
        module = tap_.ref()
        key = id(module)
        if key not in self.relus or not args:
            return super().call(tap_, args, kwargs)
        output = _Relu.apply(args[0], self.relus[key], self.rule)
        target = self.targets.get(key)
        return output if target is None else self.record(target, module, args, output)


def run_with_relu_backward(module: nn.Module, x: torch.Tensor, layer: str, *, model_name: str,
                           rule: str = "guided") -> GradRun:
    """:func:`~featurescope.core.capture.grad.run_with_grad` for one ``layer``, stopped
    right after it, with every ``nn.ReLU``/``nn.ReLU6`` module's backward replaced by
    ``rule`` ("guided" or "deconvnet"). ``x`` should require gradients: the caller takes
    ``torch.autograd.grad(objective, x)``. Same errors as run_with_grad."""
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, not {rule!r}")
    targets = tap_layers(module, [layer], model_name)
    relus: dict[int, Optional[float]] = {}
    for sub in module.modules():
        if isinstance(sub, (nn.ReLU, nn.ReLU6)):
            tap(sub)
            relus[id(sub)] = 6.0 if isinstance(sub, nn.ReLU6) else None
    keep = KeepGradSink([layer], leaf=True)
    seen = Seen()
    run = _SwappedReluRun(targets, [seen, keep, EarlyStop([layer])], relus, rule)
    output = forward_through(module, x, run, True, model_name)
    if layer not in seen.names:
        raise LayerNotRunError(f"{layer!r} does not run in {model_name}'s forward pass.", layer)
    return GradRun(output=output, activations={layer: keep.activations[layer]})
