"""Capture the output of every convolution and pooling layer in one forward pass.

Forward hooks on every Conv2d / MaxPool2d / AvgPool2d / AdaptiveAvgPool2d /
AdaptiveMaxPool2d (subclasses included) keep a reference to each output, on the model's
device; ``result[name]`` converts one layer to a CPU float32 tensor when it is shown.

Cost: the issue-4 target is <= 1.05x a plain forward pass, so outputs are *not* cloned
by default. A stored output is cloned only when something is about to overwrite it:

- an ``inplace=True`` module (VGG's ``ReLU(inplace=True)``) receiving a stored tensor:
  a forward pre-hook swaps the stored reference for a clone, leaving the forward itself
  untouched (so even code that ignores the ReLU's return value behaves the same);
- a functional in-place op (``x.relu_()``, ``out += identity``) in a model whose code we
  have not read. Models built only from ``torch.nn`` and ``torchvision`` classes run under
  ``torch.inference_mode()`` (their forwards were checked: no captured output is modified
  in place except through in-place modules). Any other model (featurescope's own
  EfficientNet-Lite0, user files) runs under ``torch.no_grad()``, where tensors keep
  their version counters: after the pass, a stored output whose counter moved was
  overwritten, so those layers are remembered (per model) and the pass is repeated with
  a clone taken at capture time. One extra forward, once per model, and only for models
  that need it; inference tensors have no version counter, hence no_grad there.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Iterable, Iterator, Optional, Sequence, Union

import torch
from torch import nn

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
_TRUSTED_PREFIXES = ("torch.nn.", "torchvision.")

# model module -> layer names that a functional in-place op overwrote; cloned at capture.
_CLONE_ON_STORE: "weakref.WeakKeyDictionary[nn.Module, set]" = weakref.WeakKeyDictionary()


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
                 total: int = 0):
        self.module = module
        self.store = store
        self.wanted = wanted
        self.clone = set(clone)
        self.store_dtype = store_dtype
        self.progress = progress
        self.cancel = cancel
        self.total = total
        self.handles = []
        self.calls: dict[str, int] = {}
        self.infos: list[LayerInfo] = []
        self.outputs: dict[str, torch.Tensor] = {}
        self.versions: dict[str, int] = {}
        self.by_id: dict[int, list] = {}  # id(stored tensor) -> layer names holding it
        self.found = 0

    def __enter__(self) -> "_Session":
        try:
            for qualified, sub in self.module.named_modules():
                kind = captured_kind(sub)
                if kind is not None:
                    self.handles.append(sub.register_forward_hook(self._hook(qualified or "model", sub, kind)))
                if self.store and getattr(sub, "inplace", False) is True:
                    self.handles.append(sub.register_forward_pre_hook(self._before_inplace))
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()

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
            self.infos.append(_layer_info(name, module_name, mod, kind, len(self.infos), inp, output))
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
                    copy = candidate.clone() if copy is None else copy
                    self.outputs[name] = copy
                    self.versions.pop(name, None)
        return None

    def overwritten(self) -> set:
        """Stored outputs whose version counter moved: a functional in-place op hit them."""
        return {name for name, version in self.versions.items()
                if self.outputs[name]._version != version}


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
    """

    def __init__(self, outputs: dict, infos: Sequence[LayerInfo], logits, input_tensor,
                 categories=None, model_name: str = "", device=None):
        self._outputs = outputs
        self.layers: list[str] = [info.name for info in infos]
        self.info: dict[str, LayerInfo] = {info.name: info for info in infos}
        self.logits: Optional[torch.Tensor] = logits
        self.input: torch.Tensor = input_tensor
        self.categories = categories
        self.model_name = model_name
        self.device = device

    def __getitem__(self, name: str) -> torch.Tensor:
        try:
            tensor = self._outputs[name]
        except KeyError:
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


def capture(model, image_or_input, layers: Optional[Sequence[str]] = None,
            progress: Optional[ProgressCallback] = None, cancel: Optional[CancelToken] = None, *,
            store_dtype: Optional[torch.dtype] = None) -> CaptureResult:
    """Capture the conv/pool outputs of one image in one forward pass.

    ``model``: a LoadedModel (``.module``, ``.device``, ``.preprocess``, ``.categories``,
    ``.name``) or a bare ``nn.Module``. ``image_or_input``: a PIL image (run through
    ``model.preprocess``) or a (1, 3, H, W) tensor used as is. ``layers``: names to
    capture (default all); the forward pass stops right after the last of them, so
    ``logits`` is then None unless the pass ran to the end. ``progress(done, total,
    name)`` is called per captured layer; ``cancel`` is checked at every captured layer
    (raises ``progress.Cancelled``). ``store_dtype`` (e.g. torch.float16) stores outputs
    compactly for huge inputs. Raises ModelError for a layer name the model does not have.
    Hooks are removed whatever happens.
    """
    if isinstance(model, nn.Module):  # a bare network: no preprocessing, labels or name
        module, loaded = model, None
    else:
        module, loaded = model.module, model
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
    total = len(wanted) if wanted is not None else len(getattr(loaded, "layers", None) or []) or \
        sum(1 for m in module.modules() if captured_kind(m) is not None)

    trusted = _trusted(module)
    grad_free = torch.inference_mode if trusted else torch.no_grad
    module.eval()
    for attempt in range(3):
        clone = _CLONE_ON_STORE.get(module, set())
        session = _Session(module, store=True, wanted=set(wanted) if wanted else None, clone=clone,
                           store_dtype=store_dtype, progress=progress, cancel=cancel, total=total)
        output = _run(module, x, session, grad_free)
        damaged = session.overwritten()
        if not damaged:
            break
        # A functional in-place op overwrote these outputs: clone them from now on.
        _CLONE_ON_STORE.setdefault(module, set()).update(damaged)
    else:  # pragma: no cover - the clone set only grows, so this cannot repeat
        raise ModelError("Capture could not protect the layer outputs from in-place changes.")

    infos = session.infos
    if wanted is not None:
        missing = [layer for layer in wanted if layer not in session.outputs]
        if missing:
            known = describe_layers(module, tuple(x.shape))
            hint = ", ".join(info.name for info in known[:6])
            raise ModelError(f"{model_name} has no captured layer "
                             f"named {', '.join(repr(m) for m in missing)}; its layers start with {hint} "
                             "(`featurescope layers` lists them all).")
    return CaptureResult(session.outputs, infos, _logits(output), input_cpu,
                         categories=getattr(loaded, "categories", None), model_name=model_name,
                         device=torch.device(device))
