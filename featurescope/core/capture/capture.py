"""Capture the output of every convolution and pooling layer in one forward pass.

:func:`capture` runs a capture session (core/capture/taps.py: forward wrappers on
every Conv2d / MaxPool2d / AvgPool2d / AdaptiveAvgPool2d / AdaptiveMaxPool2d, subclasses
included, with in-place protection and early stop) and returns a :class:`CaptureResult`
that keeps a reference to each output, on the model's device; ``result[name]`` converts
one layer to a CPU float32 tensor when it is shown. Layer metadata (:class:`LayerInfo`)
lives in core/capture/layers.py; both are re-exported here, where callers have always found them.

Memory: ``memory_budget=bytes`` keeps the stored outputs under a budget (float16, or
only some layers with the others listed in ``result.missing`` and fetched later by
:func:`capture_missing`); see core/capture/memory.py.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Iterator, Optional, Sequence

import torch
from torch import nn

from featurescope.core.capture import memory
from featurescope.core.capture.taps import (  # noqa: F401  (describe_layers, forward_error re-exported)
    CLONE_ON_STORE, INPLACE_HITS, CaptureSession, describe_layers, forward_error, is_trusted,
    module_device, run_forward, walk_captured,
)
from featurescope.core.errors import ImageError, ModelError
from featurescope.core.capture.layers import (  # noqa: F401  (re-exported: callers import them from here)
    CAPTURED_CLASSES, CAPTURED_TYPES, CONV_TYPES, POOL_TYPES, LayerInfo, captured_kind,
)
from featurescope.core.progress import CancelToken, ProgressCallback, check

# The old private name of the per-model clone set; tests read it through this module.
_CLONE_ON_STORE = CLONE_ON_STORE
# bare module -> its describe_layers at 224 px (for memory estimates); LoadedModels
# have .layer_info instead.
_NOMINAL_INFOS: "weakref.WeakKeyDictionary[nn.Module, list]" = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class Prediction:
    label: str
    index: int
    probability: float


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
    device = getattr(loaded, "device", None) or module_device(module)
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
    total = len(wanted) if wanted is not None else len(walk_captured(module, modules)[0])

    plan = None
    if memory_budget is not None and wanted is None:
        plan = _plan(module, loaded, x, int(memory_budget), store_dtype, focus)
        if plan.dtype_name == "float16" and store_dtype is None:
            store_dtype = torch.float16
    keep = plan.keep if plan is not None else None

    grad_free = torch.inference_mode if is_trusted(modules) else torch.no_grad
    if any(m.training for m in modules):
        module.eval()
    for attempt in range(3):
        clone = CLONE_ON_STORE.get(module, set())
        session = CaptureSession(module, store=True, wanted=set(wanted) if wanted else None, clone=clone,
                           store_dtype=store_dtype, progress=progress, cancel=cancel, total=total,
                           keep=keep, budget=memory_budget, modules=modules)
        output = run_forward(module, x, session, grad_free)
        damaged = session.overwritten()
        if not damaged:
            break
        # A functional in-place op overwrote these outputs: clone them from now on.
        CLONE_ON_STORE.setdefault(module, set()).update(damaged)
    else:  # pragma: no cover - the clone set only grows, so this cannot repeat
        raise ModelError("Capture could not protect the layer outputs from in-place changes.")
    learned = INPLACE_HITS.get(module)
    if output is not None and wanted is None and keep is None and store_dtype is None \
            and (learned is None or learned[0] != session.inplace_ids):
        INPLACE_HITS[module] = (session.inplace_ids, frozenset(session.inplace_hits))

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
