"""Op tracing: the one place functional torch calls are observed.

Module taps (taps.py) see what layers output; some analyses must also follow the
functional ops between layers (``out + identity``, ``F.pad``, ``torch.cat``,
``permute``). :class:`OpTrace` is a ``TorchFunctionMode``: inside ``with OpTrace(observe)``
every torch function call runs and then ``observe(func, args, kwargs, result)`` is called.
With ``to_meta`` every tensor argument is moved to the "meta" device first, so a
network with weights anywhere runs on a meta input computing shapes only.
"""
from __future__ import annotations

from typing import Callable

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
