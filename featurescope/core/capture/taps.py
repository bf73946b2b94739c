"""Taps: forward wrappers installed once per model, each call routed to the active capture.

A *tap* is an object set as a module's instance ``forward`` (nn.Module's ``__call__``
looks ``forward`` up on the instance first). It is installed once per model on every
captured layer and every module with an ``inplace`` flag (:func:`install`, cached per
model, redone when the set of modules changes) and stays there. Each call looks up the
active :class:`Run` in a :class:`contextvars.ContextVar`; with none active it goes
straight to the module's own forward (one ``ContextVar.get`` extra), otherwise the run
decides what the call means: a layer output handed to the run's sinks (core/capture/
sinks.py), or an in-place module about to overwrite a stored output.

Why a forward wrapper: ``register_forward_hook`` sends a module down nn.Module's slow
call path (~20 us a call, 5% of an EfficientNet-Lite0 pass); the wrapper is called
exactly where a forward hook would be, with the same arguments.

Why a ContextVar and not a per-model lock: with a lock, two threads that capture the
same model (the GUI's interactive and background lanes, a batch worker) would wait for
each other, a capture started from inside a forward would deadlock, and a plain forward
on another thread during a capture would still be recorded into it. A ContextVar is
per thread (and per asyncio task): each forward sees only the capture started in its
own context, a plain forward anywhere else sees none, and nothing has to be removed
afterwards, so an exception or a cancel cannot leave a capture active (the variable is
reset in a ``finally``). The module-level caches are guarded by one lock; taps survive
``copy.deepcopy`` and pickling (a DataLoader worker gets working taps).

In-place protection: outputs are kept by reference, not cloned, so the capture costs
about a plain forward. An ``inplace=True`` module (VGG's ReLU) that receives a stored
output makes the run swap in a clone first (see ``StoreSink.before_inplace``). Models
built only from ``torch.nn`` / ``torchvision`` classes and our own EfficientNet-Lite0
(core/models/sources/lite.py: ``out + x``, ``F.pad``, non-in-place ReLU6) run under
``torch.inference_mode()``; any other model runs under ``torch.no_grad()``, where a
stored output whose version counter moved was overwritten by a functional in-place op
(``x.relu_()``, ``out += identity``): those layers are remembered per model
(:data:`CLONE_ON_STORE`) and the pass is repeated, cloning them at capture time.
"""
from __future__ import annotations

import copy
import os
import threading
import weakref
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Iterable, Optional

import torch
from torch import nn
from torch.nn.modules.lazy import LazyModuleMixin

from featurescope.core.capture.layers import LayerInfo, build_layer_info, captured_kind
from featurescope.core.capture.sinks import StopForward
from featurescope.core.errors import ModelError

# Model classes whose forward code is known not to modify a captured output in place
# except through inplace=True modules (see the module docstring).
TRUSTED_PREFIXES = ("torch.nn.", "torchvision.", "featurescope.core.models.sources.lite")

# The capture running in this thread / context, or None.
_ACTIVE: ContextVar[Optional["Run"]] = ContextVar("featurescope_capture", default=None)

# Guards the module-level caches below (two threads may install taps on one model).
_LOCK = threading.RLock()
# model -> layer names that a functional in-place op overwrote; cloned at capture.
CLONE_ON_STORE: "weakref.WeakKeyDictionary[nn.Module, set]" = weakref.WeakKeyDictionary()
# model -> {(name, index, input shape, output shape, module id): LayerInfo}; building a
# LayerInfo was a fifth of a small capture's Python time.
_INFO_CACHE: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()
# model -> Taps for its current set of modules.
_TAPS: "weakref.WeakKeyDictionary[nn.Module, Taps]" = weakref.WeakKeyDictionary()


def _new_lock_after_fork() -> None:
    # A fork while another thread held the lock (a DataLoader worker) would leave the
    # child's copy locked for ever.
    global _LOCK
    _LOCK = threading.RLock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_lock_after_fork)


class Tap:
    """A module's instance ``forward``: passes the call to the active run, if any.

    It holds its module weakly: the module holds its tap (``module.__dict__["forward"]``),
    and a strong reference back would make every tapped module a reference cycle that
    only the cyclic garbage collector frees; a model the user left would keep its weights
    (VGG16: 528 MB) until a full collection, and switching models grew the app by ~100 MB
    a round."""

    __slots__ = ("ref", "own")

    def __init__(self, module: nn.Module, own=None):
        self.ref = weakref.ref(module)
        self.own = own  # an instance-level forward someone set before us, else None

    def __call__(self, *args, **kwargs):
        run = _ACTIVE.get()
        if run is None:
            if self.own is not None:
                return self.own(*args, **kwargs)
            module = self.ref()
            return type(module).forward(module, *args, **kwargs)
        return run.call(self, args, kwargs)

    def __reduce__(self):  # pickling a tapped model (torch.save, DataLoader spawn)
        return (Tap, (self.ref(), self.own))

    def __deepcopy__(self, memo):  # the copy's tap calls the copy, not the original
        return Tap(copy.deepcopy(self.ref(), memo), copy.deepcopy(self.own, memo))


def tap(module: nn.Module) -> None:
    """Install a tap on ``module`` unless it has one (idempotent)."""
    with _LOCK:
        own = module.__dict__.get("forward")
        if isinstance(own, Tap):
            if own.ref() is module:
                return
            own = own.own  # a tap of another module (copied by hand): start again
        module.__dict__["forward"] = Tap(module, own)


def untap(model: nn.Module) -> None:
    """Remove every tap under ``model`` (captures then install them again)."""
    with _LOCK:
        for sub in model.modules():
            own = sub.__dict__.get("forward")
            if isinstance(own, Tap):
                if own.own is None:
                    del sub.__dict__["forward"]
                else:
                    sub.__dict__["forward"] = own.own
        _TAPS.pop(model, None)


class Taps:
    """The taps of one model: ``layers`` [(qualified name, module, kind)] in
    registration order, ``targets`` {id(module): (qualified name, kind)}, and
    ``inplace`` the ids of modules that have an ``inplace`` flag (read at call time:
    users may flip it). ``below``: every module under the model, found when it was
    tapped (not the model itself: the cache of Taps is keyed weakly by the model, and a
    value holding its key would keep it alive for ever); ``trusted`` (see
    :func:`is_trusted`) and ``lazy`` (the lazy ones of ``below``) are worked out once
    here, not at every capture."""

    def __init__(self, modules: list, ids: tuple, layers: list, inplace: frozenset):
        self.below = modules[1:]
        self.ids = ids
        self.layers = layers
        self.targets = {id(sub): (name, kind) for name, sub, kind in layers}
        self.inplace = inplace
        self.trusted = is_trusted(modules)
        self.lazy = [m for m in self.below if isinstance(m, LazyModuleMixin)]


def submodules(model: nn.Module) -> list:
    """Every module under ``model`` (itself included), each once: ``model.modules()``
    in breadth-first order, without its generators and name strings (a third of the
    time; this runs at every capture to notice a changed model)."""
    found, seen, index = [model], {id(model)}, 0
    while index < len(found):
        for child in found[index]._modules.values():
            if child is not None and id(child) not in seen:
                seen.add(id(child))
                found.append(child)
        index += 1
    return found


def install(model: nn.Module) -> Taps:
    """Tap ``model``'s captured layers and in-place modules; cached while its modules
    stay the same (compared by identity), redone when they change."""
    modules = submodules(model)
    ids = tuple(map(id, modules))
    with _LOCK:
        taps = _TAPS.get(model)
        if taps is not None and taps.ids == ids:
            return taps
        layers, inplace = [], set()
        for qualified, sub in model.named_modules():
            kind = captured_kind(sub)
            if kind is not None:
                layers.append((qualified or "model", sub, kind))
                tap(sub)
            elif "inplace" in sub.__dict__:
                inplace.add(id(sub))
                tap(sub)
        taps = _TAPS[model] = Taps(modules, ids, layers, frozenset(inplace))
        return taps


def info_cache(model: nn.Module) -> dict:
    with _LOCK:
        cache = _INFO_CACHE.setdefault(model, {})
        if len(cache) > 4096:  # many input sizes seen: start again
            cache.clear()
        return cache


def clone_set(model: nn.Module) -> set:
    with _LOCK:
        return set(CLONE_ON_STORE.get(model, ()))


def learn_clones(model: nn.Module, names: Iterable[str]) -> None:
    with _LOCK:
        CLONE_ON_STORE.setdefault(model, set()).update(names)


class Run:
    """What one forward pass does with the tapped calls.

    ``targets``: {id(module): (qualified name, kind or None)}; a module called again
    gives the layers ``name#2``, ``name#3``... ``wanted``: the layer names handed to the
    sinks (None: all); ``every``: qualified names whose every call is handed on besides
    ``wanted`` (a group, see selection.py). With ``spatial_only`` a call whose output is
    not an (N, C, H, W) tensor is left out (its name and output shape go to ``skipped``):
    modules outside the conv/pool set may be classifiers or flatten layers. ``sinks`` get ``write(name, module, input, output)`` in order; a
    sink may return a tensor that the rest of the network sees instead, and raise
    :class:`StopForward` to end the pass. ``inplace``: ids of in-place modules whose
    input the sinks with ``before_inplace`` get to protect. With ``describe`` a
    LayerInfo is built per captured layer (``infos``). ``cancel`` is checked and
    ``progress(done, total, name)`` called at each wanted layer.
    """

    def __init__(self, targets: dict, sinks: list, *, wanted: Optional[set] = None,
                 inplace: frozenset = frozenset(), describe: bool = False,
                 info_cache: Optional[dict] = None, progress=None, cancel=None, total: int = 0,
                 every: frozenset = frozenset(), spatial_only: bool = False):
        self.targets = targets
        self.every = every
        self.spatial_only = spatial_only
        self.skipped: dict[str, tuple] = {}
        self.sinks = sinks
        self.guards = [s for s in sinks if hasattr(s, "before_inplace")]
        self.inplace = inplace if self.guards else frozenset()
        self.wanted = wanted
        self.describe = describe
        self.info_cache = {} if info_cache is None else info_cache
        self.progress = progress
        self.cancel = cancel
        self.total = total
        self.calls: dict[str, int] = {}
        self.infos: list[LayerInfo] = []
        self.found = 0

    def call(self, tap: Tap, args, kwargs):
        # (the module's own forward is called right here, not through a helper: this runs
        # for every tapped call, and a Python frame less is ~1% of a Lite0 capture)
        module = tap.ref()
        target = self.targets.get(id(module))
        # (a target may be in place too: an activation asked for by name overwrites the
        # stored output of the layer before it)
        if args and id(module) in self.inplace and module.__dict__.get("inplace") is True:
            for guard in self.guards:
                guard.before_inplace(module, args[0])
        if tap.own is not None:
            output = tap.own(*args, **kwargs)
        else:
            output = type(module).forward(module, *args, **kwargs)
        return output if target is None else self.record(target, module, args, output)

    def record(self, target, module, args, output):
        qualified, kind = target
        count = self.calls[qualified] = self.calls.get(qualified, 0) + 1
        name = qualified if count == 1 else f"{qualified}#{count}"
        if self.cancel is not None:
            self.cancel.raise_if_cancelled()
        if self.wanted is not None and name not in self.wanted and qualified not in self.every:
            return output
        tensor = output[0] if isinstance(output, (tuple, list)) else output  # return_indices
        if self.spatial_only and (not torch.is_tensor(tensor) or tensor.dim() != 4):
            self.skipped[name] = tuple(tensor.shape) if torch.is_tensor(tensor) else None
            return output
        inp = args[0] if args else tensor
        if self.describe and kind is not None and torch.is_tensor(tensor):
            key = (name, len(self.infos), inp.shape, tensor.shape, id(module))
            info = self.info_cache.get(key)
            if info is None:
                info = self.info_cache[key] = build_layer_info(
                    name, qualified, module, kind, len(self.infos), inp, tensor)
            self.infos.append(info)
        self.found += 1
        if self.progress is not None:
            self.progress(self.found, max(self.total, self.found), name)
        for sink in self.sinks:
            replaced = sink.write(name, module, inp, tensor)
            if replaced is not None and output is tensor:
                output = tensor = replaced
        return output


@contextmanager
def active(run: Run):
    """Make ``run`` the capture of this context for the ``with`` block."""
    token = _ACTIVE.set(run)
    try:
        yield run
    finally:
        _ACTIVE.reset(token)


def current() -> Optional[Run]:
    """The run active in this context (None when no capture is running here)."""
    return _ACTIVE.get()


def is_trusted(modules: Iterable[nn.Module]) -> bool:
    """True when every module's class comes from torch.nn, torchvision or our own lite
    model, whose forwards can run under inference_mode (see the module docstring)."""
    return all(type(m).__module__.startswith(TRUSTED_PREFIXES) for m in modules)


def module_device(module: nn.Module) -> torch.device:
    for tensor in module.parameters():
        return tensor.device
    for tensor in module.buffers():
        return tensor.device
    return torch.device("cpu")


def materialize_lazy(module: nn.Module, x: torch.Tensor, candidates: Optional[list] = None) -> None:
    """Give lazy modules (``nn.LazyConv2d``...) their weights with a ``no_grad`` pass.

    Initialised under ``inference_mode`` their weights would be inference tensors,
    which no later pass with gradients (Grad-CAM) can use. ``candidates``: the modules
    under ``module`` that may be lazy (``Taps.lazy``), default all."""
    candidates = list(module.modules()) if candidates is None else [module, *candidates]
    # (isinstance, not getattr: nn.Module.__getattr__ raises and catches for a missing name;
    # a materialised lazy module changes class, so this is False from then on)
    if any(isinstance(m, LazyModuleMixin) and m.has_uninitialized_params() for m in candidates):
        with torch.inference_mode(False), torch.no_grad():
            module(x.clone() if x.is_inference() else x)


def run_forward(module: nn.Module, x: torch.Tensor, run: Run, grad_free,
                lazy: Optional[list] = None, name: Optional[str] = None):
    """One forward pass of ``module`` on ``x`` routed to ``run``; returns the output, or
    None when a sink stopped the pass early. ``lazy``: the modules that may still be
    lazy (``Taps.lazy``; default: look at all). Errors of the network become ModelError
    naming the model as ``name`` (default: its class)."""
    try:
        materialize_lazy(module, x, lazy)
        with active(run), grad_free():
            return module(x)
    except StopForward:
        return None
    except (RuntimeError, ValueError, TypeError, IndexError, MemoryError) as error:
        # The network itself failed: most often an input size it was not built for
        # (a CIFAR net fed 224 px) or a device without enough memory. Users get one
        # sentence; the original error stays attached as the cause.
        raise forward_error(module, x, error, name) from error


def forward_error(module: nn.Module, x: torch.Tensor, error: BaseException,
                  name: Optional[str] = None) -> ModelError:
    """The one-sentence ModelError for a forward pass that raised ``error``."""
    name = name or type(module).__name__
    shape = "x".join(str(n) for n in x.shape[1:])
    detail = (str(error).strip().splitlines() or [type(error).__name__])[0].rstrip(".")
    if isinstance(error, MemoryError) or isinstance(error, getattr(torch, "OutOfMemoryError", ())):
        return ModelError(
            f"Out of memory on {x.device} running {name} on a {shape} input; "
            f"try a smaller image size, a smaller model, or the CPU.")
    return ModelError(
        f"{name} failed on a {shape} input ({detail}); check that the input "
        f"size and channels are the ones the network was built for.")
