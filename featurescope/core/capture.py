"""Capture the output of every convolution and pooling layer in one forward pass.

A forward hook on every Conv2d / MaxPool2d / AvgPool2d / AdaptiveAvgPool2d /
AdaptiveMaxPool2d (subclasses included) keeps a reference to each output, on the model's
device; ``result[name]`` converts one layer to a CPU float32 tensor when it is shown. The
hooks are installed as forward wrappers for the length of one pass (same call, same
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
  EfficientNet-Lite0 (core/lite.py: its forwards use ``out + x``, ``F.pad`` and
  non-in-place ReLU6 only). Any other model (user files) runs under
  ``torch.no_grad()``, where tensors keep
  their version counters: after the pass, a stored output whose counter moved was
  overwritten, so those layers are remembered (per model) and the pass is repeated with
  a clone taken at capture time. One extra forward, once per model, and only for models
  that need it; inference tensors have no version counter, hence no_grad there.

Memory: ``memory_budget=bytes`` keeps the stored outputs under a budget (float16, or
only some layers with the others listed in ``result.missing`` and fetched later by
:func:`capture_missing`); see core/memory.py. The per-call Python work (LayerInfo
objects, the module walk) is cached per model, so a capture of a small network on a
small input costs little more than its forward pass.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Iterable, Iterator, Optional, Sequence, Union

import torch
from torch import nn

from featurescope.core import memory
from featurescope.core.errors import ImageError, ModelError
from featurescope.core.progress import CancelToken, ProgressCallback, check, report

# Names of the module types whose outputs are captured (LayerInfo.kind is one of these).
CAPTURED_TYPES = ("Conv2d", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "AdaptiveMaxPool2d")
# The classes themselves, for isinstance (subclasses such as lite.SameConv2d count).
CAPTURED_CLASSES = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
CONV_TYPES = ("Conv2d",)
POOL_TYPES = CAPTURED_TYPES[1:]

# Model classes whose forward code is known not to modify a captured output in place
# except through inplace=True modules (see the module docstring).
_TRUSTED_PREFIXES = ("torch.nn.", "torchvision.", "featurescope.core.lite")

# model module -> layer names that a functional in-place op overwrote; cloned at capture.
_CLONE_ON_STORE: "weakref.WeakKeyDictionary[nn.Module, set]" = weakref.WeakKeyDictionary()
# model module -> {(name, index, input shape, output shape, module id): LayerInfo}; a
# LayerInfo is the same for every capture of one input size, and building it was a
# fifth of a small capture's Python time.
_INFO_CACHE: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()
# model module -> ids of the in-place modules that met a stored output in a full
# float32 capture. Later captures put the protecting pre-hook only on those (a hook
# costs ~25 us a call; resnet18's shared ReLU runs 17 times and never meets one). The
# data flow of these CNNs does not depend on the input; for untrusted models the
# version-counter check would still catch a miss.
_INPLACE_HITS: "weakref.WeakKeyDictionary[nn.Module, tuple]" = weakref.WeakKeyDictionary()
# model module -> (ids of all its modules, [(qualified name, module, kind)] to hook);
# walking and classifying ~200 modules on every capture showed up
# in small captures. Rebuilt whenever the set of modules changes.
_WALKS: "weakref.WeakKeyDictionary[nn.Module, tuple]" = weakref.WeakKeyDictionary()
# bare module -> its describe_layers at 224 px (for memory estimates); LoadedModels
# have .layer_info instead.
_NOMINAL_INFOS: "weakref.WeakKeyDictionary[nn.Module, list]" = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class LayerInfo:
    """What one captured layer is. ``name`` is the key everywhere (NPZ, CLI, GUI).

    A module called twice in one forward pass gives two layers: ``name`` and ``name#2``.
    Shapes are (C, H, W) without the batch dimension. For pooling layers
    ``in_channels == out_channels``; adaptive pools have ``kernel_size`` etc. None and
    ``output_size`` set. ``padding`` is a (ph, pw) tuple, or the string "same" for
    TensorFlow-style dynamic padding (EfficientNet-Lite0).
    """

    name: str
    module_name: str
    kind: str  # "Conv2d", "MaxPool2d", ...
    index: int  # position in network (execution) order, 0-based
    in_channels: int
    out_channels: int
    kernel_size: Optional[tuple[int, int]]
    stride: Optional[tuple[int, int]]
    padding: Union[tuple[int, int], str, None]
    dilation: Optional[tuple[int, int]]
    groups: int
    input_shape: tuple[int, int, int]
    output_shape: tuple[int, int, int]
    parameters: int  # weights + bias of this module (0 for pooling)
    output_size: Optional[tuple[int, int]] = None  # adaptive pools only


@dataclass(frozen=True)
class Prediction:
    label: str
    index: int
    probability: float


def captured_kind(module: nn.Module) -> Optional[str]:
    """"Conv2d", "MaxPool2d", ... when ``module`` is captured (subclasses too), else None."""
    for cls, kind in zip(CAPTURED_CLASSES, CAPTURED_TYPES):
        if isinstance(module, cls):
            return kind
    return None


def _pair(value) -> Optional[tuple[int, int]]:
    if value is None:
        return None
    if isinstance(value, (tuple, list)):
        return (int(value[0]), int(value[-1]))
    return (int(value), int(value))


def _chw(shape: Sequence[int]) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in shape)
    return shape[-3:] if len(shape) >= 3 else (1,) * (3 - len(shape)) + shape


def _static_info(module: nn.Module, kind: str) -> dict:
    """The LayerInfo fields that do not depend on the input."""
    if kind == "Conv2d":
        padding = module.padding
        if getattr(module, "same_padding", False) is True or padding == "same":
            padding = "same"
        elif padding == "valid":
            padding = (0, 0)
        else:
            padding = _pair(padding)
        return dict(kernel_size=_pair(module.kernel_size), stride=_pair(module.stride),
                    padding=padding, dilation=_pair(module.dilation), groups=int(module.groups),
                    parameters=sum(p.numel() for p in module.parameters()))
    if kind in ("MaxPool2d", "AvgPool2d"):
        return dict(kernel_size=_pair(module.kernel_size),
                    stride=_pair(module.stride if module.stride is not None else module.kernel_size),
                    padding=_pair(module.padding), dilation=_pair(getattr(module, "dilation", 1)),
                    groups=1, parameters=0)
    return dict(kernel_size=None, stride=None, padding=None, dilation=None, groups=1, parameters=0)


def _layer_info(name, module_name, module, kind, index, inp, out) -> LayerInfo:
    static = _static_info(module, kind)
    input_shape = _chw(inp.shape)
    output_shape = _chw(out.shape)
    if kind == "Conv2d":
        in_channels, out_channels = int(module.in_channels), int(module.out_channels)
    else:
        in_channels, out_channels = input_shape[0], output_shape[0]
    output_size = None
    if kind.startswith("Adaptive"):
        output_size = (output_shape[1], output_shape[2])
    return LayerInfo(name=name, module_name=module_name, kind=kind, index=index,
                     in_channels=in_channels, out_channels=out_channels,
                     input_shape=input_shape, output_shape=output_shape,
                     output_size=output_size, **static)


class _StopForward(Exception):
    """Raised from a hook once every requested layer is captured: the rest of the
    forward pass is skipped (lazy, layer-by-layer capture of huge inputs)."""


class _Session:
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

    def __enter__(self) -> "_Session":
        hooked, inplace = _walk(self.module, self.modules)
        self.inplace_ids = frozenset(map(id, inplace))
        learned = _INPLACE_HITS.get(self.module) if self.store else None
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
                info = self.info_cache[key] = _layer_info(name, module_name, mod, kind, index, inp, output)
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


def _walk(module: nn.Module, modules: Optional[list] = None) -> tuple[list, list]:
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


def _trusted(module: nn.Module) -> bool:
    return all(type(m).__module__.startswith(_TRUSTED_PREFIXES) for m in module.modules())


def _module_device(module: nn.Module) -> torch.device:
    for tensor in module.parameters():
        return tensor.device
    for tensor in module.buffers():
        return tensor.device
    return torch.device("cpu")


def _run(module: nn.Module, x: torch.Tensor, session: _Session, grad_free):
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
        x = torch.zeros(input_shape, device=_module_device(module))
        session = _Session(module, store=False)
        _run(module, x, session, torch.inference_mode)
    finally:
        module.train(was_training)
    return session.infos


class CaptureResult:
    """The outputs of the captured layers for one input.

    ``.layers`` names in network order; ``result[name]`` -> (C, H, W) float32 CPU tensor
    (converted on demand; for a CPU float32 capture it is the stored tensor itself, an
    inference tensor that refuses in-place changes, so clone it to modify it);
    ``name in result``; ``.info[name]`` -> LayerInfo; ``.logits`` (num_classes,) CPU
    float32 tensor or None (stopped early, or an output that is not (1, N));
    ``.input`` the (1, 3, H, W) CPU tensor fed; ``.categories``; ``.model_name``;
    ``.device``; ``.predictions(top=5)``; ``.raw(name)`` the stored (1, C, H, W) tensor
    on the model's device.

    Memory budget (see :func:`capture`): ``.missing`` lists layers (network order) that
    were described but not stored to stay within the budget (empty normally);
    ``name in result`` is False for those and ``result[name]`` raises KeyError until
    :func:`capture_missing` returns a result holding them. ``.complete`` is True when
    nothing is missing; ``.storage_dtype`` is torch.float32 or torch.float16;
    ``.notice`` one sentence for the status bar when the budget changed anything, else "".
    Two captures never share tensors: each result owns its outputs.
    """

    def __init__(self, outputs: dict, infos: Sequence[LayerInfo], logits, input_tensor,
                 categories=None, model_name: str = "", device=None, notice: str = "",
                 memory_budget: Optional[int] = None):
        self._outputs = outputs
        self.layers: list[str] = [info.name for info in infos]
        self.info: dict[str, LayerInfo] = {info.name: info for info in infos}
        self.logits: Optional[torch.Tensor] = logits
        self.input: torch.Tensor = input_tensor
        self.categories = categories
        self.model_name = model_name
        self.device = device
        self.missing: list[str] = [name for name in self.layers if name not in outputs]
        self.notice = notice
        self.memory_budget = memory_budget
        stored = next(iter(outputs.values()), None)
        self.storage_dtype = stored.dtype if stored is not None else torch.float32

    @property
    def complete(self) -> bool:
        return not self.missing

    @property
    def stored_bytes(self) -> int:
        """Bytes held by the stored outputs."""
        return sum(t.numel() * t.element_size() for t in self._outputs.values())

    def __getitem__(self, name: str) -> torch.Tensor:
        try:
            tensor = self._outputs[name]
        except KeyError:
            if name in self.info:
                raise KeyError(f"{name!r} was not kept within the memory budget; fetch it with "
                               "capture_missing(model, result, [name]).") from None
            raise KeyError(f"{name!r} was not captured; captured layers: "
                           f"{', '.join(self.layers[:8])}{' ...' if len(self.layers) > 8 else ''}") from None
        return tensor[0].to(device="cpu", dtype=torch.float32)

    def raw(self, name: str) -> torch.Tensor:
        """The stored output as captured: (1, C, H, W), on the model's device, its dtype."""
        return self._outputs[name]

    def __contains__(self, name: object) -> bool:
        return name in self._outputs

    def __iter__(self) -> Iterator[str]:
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    def __repr__(self) -> str:
        return f"<CaptureResult {self.model_name or 'model'}: {len(self.layers)} layers>"

    def predictions(self, top: int = 5) -> list[Prediction]:
        """The ``top`` classes by softmax probability; labels from ``categories`` or
        "class N". Empty when there are no logits."""
        if self.logits is None:
            return []
        probabilities = torch.softmax(self.logits.double(), dim=0)
        values, indices = torch.topk(probabilities, min(int(top), probabilities.numel()))
        categories = self.categories
        result = []
        for value, index in zip(values.tolist(), indices.tolist()):
            label = categories[index] if categories is not None and index < len(categories) else f"class {index}"
            result.append(Prediction(label=label, index=int(index), probability=float(value)))
        return result


def _as_input(model, image_or_input) -> torch.Tensor:
    if torch.is_tensor(image_or_input):
        x = image_or_input.detach()
    elif hasattr(image_or_input, "convert") and hasattr(image_or_input, "size"):  # PIL image
        preprocess = None if isinstance(model, nn.Module) else getattr(model, "preprocess", None)
        if preprocess is None:
            raise ModelError("This model has no preprocessing; pass a (1, 3, H, W) tensor instead of an image.")
        x = preprocess(image_or_input)
    else:
        raise ImageError(f"capture needs a PIL image or a (1, 3, H, W) tensor, not {type(image_or_input).__name__}.")
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() != 4 or x.shape[0] != 1:
        raise ImageError(f"The input tensor has shape {tuple(x.shape)}; capture needs one image as (1, 3, H, W).")
    if not x.is_floating_point():
        x = x.float()
    return x


def _logits(output) -> Optional[torch.Tensor]:
    if output is not None and not torch.is_tensor(output):
        output = getattr(output, "logits", None) if not isinstance(output, (tuple, list)) else output[0]
    if not torch.is_tensor(output) or output.shape[0] != 1:
        return None
    flat = output[0]
    if flat.dim() == 3 and flat.shape[1:] == (1, 1):
        flat = flat.flatten()
    if flat.dim() != 1:
        return None
    return flat.detach().to(device="cpu", dtype=torch.float32)


def _unpack(model):
    if isinstance(model, nn.Module):  # a bare network: no preprocessing, labels or name
        return model, None
    return model.module, model


def _nominal_infos(module: nn.Module, loaded) -> list[LayerInfo]:
    """Layer shapes at the model's own input size, for memory estimates."""
    infos = getattr(loaded, "layer_info", None) if loaded is not None else None
    if infos:
        return list(infos)
    if module not in _NOMINAL_INFOS:
        _NOMINAL_INFOS[module] = describe_layers(module, (1, 3, 224, 224))
    return _NOMINAL_INFOS[module]


def _plan(module: nn.Module, loaded, x: torch.Tensor, memory_budget, store_dtype,
          focus: Optional[str]) -> memory.StoragePlan:
    infos = _nominal_infos(module, loaded)
    if not infos:
        return memory.StoragePlan("float32", None, 0, memory_budget)
    nominal = infos[0].input_shape[1:]  # the network input (C, H, W) of the first layer...
    nominal_hw = tuple(getattr(loaded, "input_size", None) or nominal)
    estimate = memory.estimate_layer_bytes(infos, nominal_hw, tuple(x.shape[-2:]))
    if store_dtype is not None and store_dtype.itemsize < 4:  # already compact
        estimate = {k: v * 2 // store_dtype.itemsize for k, v in estimate.items()}
    return memory.storage_plan(estimate, memory_budget, focus)


def _notice(plan: memory.StoragePlan, kept: int, total: int) -> str:
    if plan.budget is None or plan.dtype_name == "float32":
        return ""
    budget = memory.format_bytes(plan.budget)
    if not plan.lazy:
        return (f"Activations stored as float16 to stay within the {budget} memory budget "
                f"({memory.format_bytes(plan.estimated_bytes)} as float32).")
    return (f"{kept} of {total} layers kept within the {budget} memory budget "
            f"({memory.format_bytes(plan.estimated_bytes)} for all as float32); "
            "the others are captured again when shown.")


def capture(model, image_or_input, layers: Optional[Sequence[str]] = None,
            progress: Optional[ProgressCallback] = None, cancel: Optional[CancelToken] = None, *,
            store_dtype: Optional[torch.dtype] = None, memory_budget: Optional[int] = None,
            focus: Optional[str] = None) -> CaptureResult:
    """Capture the conv/pool outputs of one image in one forward pass.

    ``model``: a LoadedModel (``.module``, ``.device``, ``.preprocess``, ``.categories``,
    ``.name``) or a bare ``nn.Module``. ``image_or_input``: a PIL image (run through
    ``model.preprocess``) or a (1, 3, H, W) tensor used as is. ``layers``: names to
    capture (default all); the forward pass stops right after the last of them, so
    ``logits`` is then None unless the pass ran to the end. ``progress(done, total,
    name)`` is called per captured layer; ``cancel`` is checked at every captured layer
    (raises ``progress.Cancelled``). ``store_dtype`` (e.g. torch.float16) stores outputs
    compactly. ``memory_budget`` (bytes, e.g. ``memory.DEFAULT_MEMORY_BUDGET``; None =
    unlimited) bounds the stored outputs: float32 if all fit, else float16, else float16
    for ``focus`` (default the first layer) and then the smallest layers that fit, the
    rest described but listed in ``result.missing`` (with ``result.notice`` saying so);
    the pass still runs to the end, so logits are there. Raises ModelError for a layer
    name the model does not have. Hooks are removed whatever happens.
    """
    module, loaded = _unpack(model)
    device = getattr(loaded, "device", None) or _module_device(module)
    model_name = getattr(loaded, "name", None) or type(module).__name__
    check(cancel)
    x = _as_input(model, image_or_input)
    input_cpu = x.to("cpu", copy=True)  # a snapshot: the caller may reuse its tensor
    x = x.to(device)

    wanted = None
    if layers is not None:
        wanted = list(dict.fromkeys(layers))  # keep order, drop repeats
        if not wanted:
            raise ModelError("No layers were asked for; pass None to capture every layer.")
    modules = list(module.modules())
    total = len(wanted) if wanted is not None else len(_walk(module, modules)[0])

    plan = None
    if memory_budget is not None and wanted is None:
        plan = _plan(module, loaded, x, int(memory_budget), store_dtype, focus)
        if plan.dtype_name == "float16" and store_dtype is None:
            store_dtype = torch.float16
    keep = plan.keep if plan is not None else None

    trusted = all(type(m).__module__.startswith(_TRUSTED_PREFIXES) for m in modules)
    grad_free = torch.inference_mode if trusted else torch.no_grad
    if any(m.training for m in modules):
        module.eval()
    for attempt in range(3):
        clone = _CLONE_ON_STORE.get(module, set())
        session = _Session(module, store=True, wanted=set(wanted) if wanted else None, clone=clone,
                           store_dtype=store_dtype, progress=progress, cancel=cancel, total=total,
                           keep=keep, budget=memory_budget, modules=modules)
        output = _run(module, x, session, grad_free)
        damaged = session.overwritten()
        if not damaged:
            break
        # A functional in-place op overwrote these outputs: clone them from now on.
        _CLONE_ON_STORE.setdefault(module, set()).update(damaged)
    else:  # pragma: no cover - the clone set only grows, so this cannot repeat
        raise ModelError("Capture could not protect the layer outputs from in-place changes.")
    learned = _INPLACE_HITS.get(module)
    if output is not None and wanted is None and keep is None and store_dtype is None \
            and (learned is None or learned[0] != session.inplace_ids):
        _INPLACE_HITS[module] = (session.inplace_ids, frozenset(session.inplace_hits))

    infos = session.infos
    if wanted is not None:
        missing = [layer for layer in wanted if layer not in session.outputs]
        if missing:
            known = describe_layers(module, tuple(x.shape))
            hint = ", ".join(info.name for info in known[:6])
            raise ModelError(f"{model_name} has no captured layer "
                             f"named {', '.join(repr(m) for m in missing)}; its layers start with {hint} "
                             "(`featurescope layers` lists them all).")
    notice = _notice(plan, len(session.outputs), len(infos)) if plan is not None else ""
    return CaptureResult(session.outputs, infos, _logits(output), input_cpu,
                         categories=getattr(loaded, "categories", None), model_name=model_name,
                         device=torch.device(device), notice=notice, memory_budget=memory_budget)


def capture_missing(model, result: CaptureResult, layers: Sequence[str],
                    progress: Optional[ProgressCallback] = None,
                    cancel: Optional[CancelToken] = None) -> CaptureResult:
    """A result like ``result`` that also holds ``layers`` (fetched for a lazy capture).

    Runs one forward pass on ``result.input``, stopped right after the last of
    ``layers``, storing them in ``result.storage_dtype``. To stay within
    ``result.memory_budget``, stored layers farthest (in network order) from the
    requested ones are dropped from the new result (they join ``.missing``); ``result``
    itself is not changed, so the GUI can keep showing it while this runs on a worker.
    Layers already held are not recomputed. Raises ModelError for unknown names.
    """
    wanted = [name for name in dict.fromkeys(layers) if name not in result]
    unknown = [name for name in wanted if name not in result.info]
    if unknown:
        raise ModelError(f"{result.model_name} has no captured layer named "
                         f"{', '.join(repr(n) for n in unknown)}.")
    outputs = dict(result._outputs)
    if wanted:
        dtype = result.storage_dtype if result.storage_dtype != torch.float32 else None
        fetched = capture(model, result.input, layers=wanted, progress=progress, cancel=cancel,
                          store_dtype=dtype)
        outputs.update(fetched._outputs)
    budget = result.memory_budget
    if budget is not None:
        order = {name: i for i, name in enumerate(result.layers)}
        targets = [order[name] for name in layers]
        size = {name: t.numel() * t.element_size() for name, t in outputs.items()}
        used = sum(size.values())
        evictable = sorted((n for n in outputs if n not in layers),
                           key=lambda n: -min(abs(order[n] - t) for t in targets))
        for name in evictable:
            if used <= budget:
                break
            used -= size.pop(name)
            del outputs[name]
    ordered = {name: outputs[name] for name in result.layers if name in outputs}
    return CaptureResult(ordered, [result.info[n] for n in result.layers], result.logits,
                         result.input, categories=result.categories, model_name=result.model_name,
                         device=result.device, notice=result.notice, memory_budget=budget)
