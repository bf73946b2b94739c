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
