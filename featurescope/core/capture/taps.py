"""The hooks of one capture: a forward pass that keeps the conv and pooling outputs.

The hooks are installed as forward wrappers for the length of one pass (same call, same
arguments, removed in a ``finally``) because ``register_forward_hook`` sends a module
down nn.Module's slow call path; in-place protection uses ordinary pre-hooks.

Cost: the issue-4 target is <= 1.05x a plain forward pass, so outputs are *not* cloned
by default. A stored output is cloned only when something is about to overwrite it:

- an ``inplace=True`` module (VGG's ``ReLU(inplace=True)``) receiving a stored tensor:
  a forward pre-hook swaps the stored reference for a clone, leaving the forward itself
  untouched (so even code that ignores the ReLU's return value behaves the same);
- a functional in-place op (``x.relu_()``, ``out += identity``) in a model whose code we
  have not read. Models built only from ``torch.nn`` and ``torchvision`` classes run under
  ``torch.inference_mode()`` (their forwards were checked: no captured output is modified
  in place except through in-place modules), and so does featurescope's own
  EfficientNet-Lite0 (core/models/sources/lite.py: its forwards use ``out + x``, ``F.pad`` and
  non-in-place ReLU6 only). Any other model (user files) runs under
  ``torch.no_grad()``, where tensors keep
  their version counters: after the pass, a stored output whose counter moved was
  overwritten, so those layers are remembered (per model, :data:`CLONE_ON_STORE`) and
  the pass is repeated with a clone taken at capture time. One extra forward, once per
  model, and only for models that need it; inference tensors have no version counter,
  hence no_grad there.

The per-call Python work (LayerInfo objects, the module walk) is cached per model, so
a capture of a small network on a small input costs little more than its forward pass.
core/capture/capture.py drives a session and turns what it kept into a CaptureResult.
"""
from __future__ import annotations

import weakref
from typing import Iterable, Optional

import torch
from torch import nn

from featurescope.core.errors import ModelError
from featurescope.core.capture.layers import LayerInfo, build_layer_info, captured_kind
from featurescope.core.progress import check, report

# Model classes whose forward code is known not to modify a captured output in place
# except through inplace=True modules (see the module docstring).
TRUSTED_PREFIXES = ("torch.nn.", "torchvision.", "featurescope.core.models.sources.lite")

# model module -> layer names that a functional in-place op overwrote; cloned at capture.
CLONE_ON_STORE: "weakref.WeakKeyDictionary[nn.Module, set]" = weakref.WeakKeyDictionary()
# model module -> {(name, index, input shape, output shape, module id): LayerInfo}; a
# LayerInfo is the same for every capture of one input size, and building it was a
# fifth of a small capture's Python time.
_INFO_CACHE: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()
# model module -> ids of the in-place modules that met a stored output in a full
# float32 capture. Later captures put the protecting pre-hook only on those (a hook
# costs ~25 us a call; resnet18's shared ReLU runs 17 times and never meets one). The
# data flow of these CNNs does not depend on the input; for untrusted models the
# version-counter check would still catch a miss.
INPLACE_HITS: "weakref.WeakKeyDictionary[nn.Module, tuple]" = weakref.WeakKeyDictionary()
# model module -> (ids of all its modules, [(qualified name, module, kind)] to hook);
# walking and classifying ~200 modules on every capture showed up
# in small captures. Rebuilt whenever the set of modules changes.
_WALKS: "weakref.WeakKeyDictionary[nn.Module, tuple]" = weakref.WeakKeyDictionary()


class _StopForward(Exception):
    """Raised from a hook once every requested layer is captured: the rest of the
    forward pass is skipped (lazy, layer-by-layer capture of huge inputs)."""


class CaptureSession:
    """Hooks for one forward pass. Always used as a context manager: hooks go in
    ``__enter__`` and every one is removed in ``__exit__``."""

    def __init__(self, module: nn.Module, *, store: bool, wanted: Optional[set] = None,
                 clone: Iterable[str] = (), store_dtype=None, progress=None, cancel=None,
                 total: int = 0, keep: Optional[frozenset] = None, budget: Optional[int] = None,
                 modules: Optional[list] = None):
        self.module = module
        self.modules = modules  # list(module.modules()) when the caller has it
        self.store = store
        self.wanted = wanted
        self.clone = set(clone)
        self.store_dtype = store_dtype
        self.progress = progress
        self.cancel = cancel
        self.total = total
        self.keep = keep  # lazy capture: store only these (None: all)
        self.budget = budget  # with keep: stop storing beyond this many bytes
        self.stored_bytes = 0
        self.info_cache = _INFO_CACHE.setdefault(module, {}) if store else {}
        if len(self.info_cache) > 4096:  # many input sizes seen: start again
            self.info_cache.clear()
        self.handles = []
        self.wrapped: list = []  # (module, its own instance-level forward or None)
        self.calls: dict[str, int] = {}
        self.infos: list[LayerInfo] = []
        self.outputs: dict[str, torch.Tensor] = {}
        self.versions: dict[str, int] = {}
        self.by_id: dict[int, list] = {}  # id(stored tensor) -> layer names holding it
        self.inplace_hits: set = set()  # ids of in-place modules that met a stored output
        self.found = 0

    def __enter__(self) -> "CaptureSession":
        hooked, inplace = walk_captured(self.module, self.modules)
        self.inplace_ids = frozenset(map(id, inplace))
        learned = INPLACE_HITS.get(self.module) if self.store else None
        # Only trust what was learned while the same modules were in place.
        needed = learned[1] if learned is not None and learned[0] == self.inplace_ids else None
        try:
            for qualified, sub, kind in hooked:
                self._wrap(sub, self._hook(qualified, sub, kind))
            if self.store:
                for sub in inplace:
                    if needed is None or id(sub) in needed:
                        self.handles.append(sub.register_forward_pre_hook(self._before_inplace))
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()
        for sub, own in reversed(self.wrapped):
            if own is None:
                sub.__dict__.pop("forward", None)
            else:
                sub.__dict__["forward"] = own
        self.wrapped.clear()

    def _wrap(self, sub: nn.Module, hook) -> None:
        """Call ``hook(module, args, output)`` after ``sub``'s forward.

        A wrapper set as the instance's ``forward`` (removed in ``__exit__``) rather than
        ``register_forward_hook``: a module with any hook takes nn.Module's slow call
        path, ~20 us a call, which was 5% of an EfficientNet-Lite0 pass (50 layers).
        Called exactly where a forward hook would be, with the same arguments.
        """
        own = sub.__dict__.get("forward")  # an instance-level forward someone set before
        forward = sub.forward

        def wrapped(*args, **kwargs):
            output = forward(*args, **kwargs)
            hook(sub, args, output)
            return output

        self.wrapped.append((sub, own))
        sub.__dict__["forward"] = wrapped

    def _hook(self, module_name: str, module: nn.Module, kind: str):
        def hook(mod, args, output):
            count = self.calls.get(module_name, 0) + 1
            self.calls[module_name] = count
            name = module_name if count == 1 else f"{module_name}#{count}"
            check(self.cancel)
            if self.wanted is not None and name not in self.wanted:
                return None
            if isinstance(output, (tuple, list)):  # MaxPool2d(return_indices=True)
                output = output[0]
            inp = args[0] if args else output
            index = len(self.infos)
            key = (name, index, inp.shape, output.shape, id(mod))
            info = self.info_cache.get(key)
            if info is None:
                info = self.info_cache[key] = build_layer_info(name, module_name, mod, kind, index, inp, output)
            self.infos.append(info)
            if self.store and self.keep is not None:
                size = output.numel() * (self.store_dtype or output.dtype).itemsize
                if name not in self.keep or self.stored_bytes + size > self.budget:
                    self.found += 1
                    report(self.progress, self.found, max(self.total, self.found), name)
                    return None
                self.stored_bytes += size
            if self.store:
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
            self.found += 1
            report(self.progress, self.found, max(self.total, self.found), name)
            if self.wanted is not None and self.found >= len(self.wanted):
                raise _StopForward()
            return None

        return hook

    def _before_inplace(self, mod, args):
        # An in-place module is about to overwrite its input: if that is a stored output
        # (or a view of one), keep a private copy of what was captured.
        if not args or not torch.is_tensor(args[0]):
            return None
        target = args[0]
        for candidate in (target, target._base):
            if candidate is None:
                continue
            names = self.by_id.pop(id(candidate), ())
            copy = None
            for name in names:
                if self.outputs.get(name) is candidate:
                    self.inplace_hits.add(id(mod))
                    copy = candidate.clone() if copy is None else copy
                    self.outputs[name] = copy
                    self.versions.pop(name, None)
        return None

    def overwritten(self) -> set:
        """Stored outputs whose version counter moved: a functional in-place op hit them."""
        return {name for name, version in self.versions.items()
                if self.outputs[name]._version != version}


def walk_captured(module: nn.Module, modules: Optional[list] = None) -> tuple[list, list]:
    """([(qualified name, module, kind)] of captured modules, [in-place modules]) in
    registration order, cached per model while its modules stay the same."""
    modules = list(module.modules()) if modules is None else modules
    ids = tuple(map(id, modules))
    cached = _WALKS.get(module)
    # in-place flags are plain attributes a user may flip: read them every time
    # (__dict__, not getattr: nn.Module.__getattr__ raises and catches for a missing name)
    inplace = [sub for sub in modules if sub.__dict__.get("inplace") is True]
    if cached is not None and cached[0] == ids:
        return cached[1], inplace
    hooked = []
    for qualified, sub in module.named_modules():
        kind = captured_kind(sub)
        if kind is not None:
            hooked.append((qualified or "model", sub, kind))
    _WALKS[module] = (ids, hooked)
    return hooked, inplace


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


def run_forward(module: nn.Module, x: torch.Tensor, session: CaptureSession, grad_free):
    """One forward pass with ``session``'s hooks; returns the output or None if stopped early."""
    with session, grad_free():
        try:
            return module(x)
        except _StopForward:
            return None
        except (RuntimeError, ValueError, TypeError, IndexError, MemoryError) as error:
            # The network itself failed: most often an input size it was not built for
            # (a CIFAR net fed 224 px) or a device without enough memory. Users get one
            # sentence; the original error stays attached as the cause.
            raise forward_error(module, x, error) from error


def forward_error(module: nn.Module, x: torch.Tensor, error: BaseException) -> ModelError:
    """The one-sentence ModelError for a forward pass that raised ``error``."""
    shape = "x".join(str(n) for n in x.shape[1:])
    detail = (str(error).strip().splitlines() or [type(error).__name__])[0].rstrip(".")
    if isinstance(error, MemoryError) or isinstance(error, getattr(torch, "OutOfMemoryError", ())):
        return ModelError(
            f"Out of memory on {x.device} running {type(module).__name__} on a {shape} input; "
            f"try a smaller image size, a smaller model, or the CPU.")
    return ModelError(
        f"{type(module).__name__} failed on a {shape} input ({detail}); check that the input "
        f"size (--input-size) is the one the network was built for.")


def describe_layers(module: nn.Module, input_shape=(1, 3, 224, 224)) -> list[LayerInfo]:
    """Every captured layer of ``module`` in execution order, with its metadata, from one
    forward pass on zeros of ``input_shape`` (1, 3, H, W) (nothing is stored)."""
    if isinstance(input_shape, int):
        input_shape = (1, 3, input_shape, input_shape)
    input_shape = tuple(int(s) for s in input_shape)
    if len(input_shape) == 3:
        input_shape = (1,) + input_shape
    was_training = module.training
    module.eval()
    try:
        x = torch.zeros(input_shape, device=module_device(module))
        session = CaptureSession(module, store=False)
        run_forward(module, x, session, torch.inference_mode)
    finally:
        module.train(was_training)
    return session.infos
