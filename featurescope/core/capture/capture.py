"""Capture the output of every convolution and pooling layer in one forward pass.

:func:`capture` (one image -> :class:`CaptureResult`) and :func:`capture_batch` (N
images -> :class:`BatchResult`) run the model once with its taps routed to a
:class:`~featurescope.core.capture.sinks.StoreSink` (core/capture/taps.py: forward
wrappers on every Conv2d / ConvTranspose2d / MaxPool2d / AvgPool2d / AdaptiveAvgPool2d /
AdaptiveMaxPool2d, subclasses included). :func:`capture_into` hands a batch to any
sinks (a reducer, for a dataset index). Results keep a reference to each output on the
model's device and convert one layer to CPU float32 when it is read.

Memory: ``memory_budget=bytes`` keeps the stored outputs under a budget (float16, or
only some layers with the others listed in ``result.missing`` and fetched later by
:func:`capture_missing`); see core/capture/memory.py. Safe to call from several
threads at once on one model (see taps.py).
"""
from __future__ import annotations

import weakref
from typing import Optional, Sequence

import torch
from torch import nn

from featurescope.core.capture import memory
from featurescope.core.capture.dense import dense_output
from featurescope.core.capture.inputs import as_batch, as_input, logits_of
from featurescope.core.capture.layers import LayerInfo
from featurescope.core.capture.result import BatchResult, CaptureResult
from featurescope.core.capture.selection import Selection, select
from featurescope.core.capture.sinks import EarlyStop, StoreSink
from featurescope.core.capture.taps import (
    Run, clone_set, info_cache, install, learn_clones, module_device, run_forward, tap,
)
from featurescope.core.errors import ModelError
from featurescope.core.progress import CancelToken, ProgressCallback, check

# module -> {selection key: its describe_layers at the nominal size} (memory estimates
# of a capture of groups; the default layers of a LoadedModel are its .layer_info).
_NOMINAL_INFOS: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()


def _unpack(model):
    if isinstance(model, nn.Module):  # a bare network: no preprocessing, labels or name
        return model, None
    return model.module, model


def _nominal_infos(module: nn.Module, loaded, selection: Selection, layers) -> list[LayerInfo]:
    """Layer shapes at the model's own input size, for memory estimates."""
    infos = getattr(loaded, "layer_info", None) if loaded is not None and selection.default \
        and not selection.named else None
    if infos:
        return list(infos)
    cached = _NOMINAL_INFOS.setdefault(module, {})
    if selection.key not in cached:
        channels = getattr(loaded, "channels", 3)
        size = tuple(getattr(loaded, "input_size", None) or (224, 224))
        cached[selection.key] = describe_layers(module, (1, channels, *size), layers=layers)
    return cached[selection.key]


def _plan(module: nn.Module, loaded, x: torch.Tensor, memory_budget, store_dtype,
          focus: Optional[str], selection: Selection, layers) -> memory.StoragePlan:
    infos = _nominal_infos(module, loaded, selection, layers)
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


def _selection(module: nn.Module, layers, model_name: str):
    """(Taps, Selection) for ``layers`` (names and groups, see selection.py), with every
    selected module tapped."""
    taps = install(module)
    selection = select(module, taps.targets, layers, model_name)
    for sub in selection.modules:
        tap(sub)
    return taps, selection


def _run(taps, selection: Selection, sinks, **kwargs) -> Run:
    total = len(selection.named) if selection.early_stop else len(selection.targets)
    return Run(selection.targets, sinks, wanted=selection.wanted, every=selection.every,
               spatial_only=not selection.default, inplace=taps.inplace, total=total, **kwargs)


def _grad_free(taps, selection: Selection):
    # Outside the conv/pool set a trusted torchvision block can still change a stored
    # output in place (BasicBlock's `out += identity` on bn2's output): run where version
    # counters work, so the store notices and clones it (see taps.py).
    return torch.inference_mode if taps.trusted and selection.default else torch.no_grad


def _store(module: nn.Module, x: torch.Tensor, taps, selection: Selection, progress, cancel, *,
           store_dtype=None, keep=None, budget=None, model_name: Optional[str] = None, edits=(),
           stop_early: bool = True):
    """One storing pass (repeated once per model if a functional in-place op overwrote
    a stored output: see taps.py). Returns (StoreSink, Run, network output or None)."""
    grad_free = _grad_free(taps, selection)
    if module.training or any(m.training for m in taps.below):
        module.eval()
    cache = info_cache(module)
    for _attempt in range(3):
        store = StoreSink(clone=clone_set(module), store_dtype=store_dtype, keep=keep, budget=budget)
        sinks = [*edits, store]
        if selection.early_stop and stop_early:
            sinks.append(EarlyStop(selection.named))
        run = _run(taps, selection, sinks, describe=True, info_cache=cache, progress=progress,
                   cancel=cancel)
        output = run_forward(module, x, run, grad_free, taps.lazy, model_name)
        damaged = store.overwritten()
        if not damaged:
            return store, run, output
        # A functional in-place op overwrote these outputs: clone them from now on.
        learn_clones(module, damaged)
    raise ModelError("Capture could not protect the layer outputs from in-place changes.")  # pragma: no cover


def _check_found(model_name, layers, run: Run) -> None:
    """ModelError for a layer asked for by name that the pass did not give."""
    if layers is None:
        return
    found = {info.name for info in run.infos}
    missing = [layer for layer in select_named(layers) if layer not in found]
    if not missing:
        return
    first = missing[0]
    if first in run.skipped:
        shape = run.skipped[first]
        what = f"a {'x'.join(map(str, shape))} tensor" if shape else "no tensor"
        raise ModelError(f"{first!r} of {model_name} gives {what}, not a (C, H, W) feature map, "
                         "so featurescope cannot show it.")
    qualified, _, call = first.partition("#")
    calls = run.calls.get(qualified, 0)
    if calls and call:
        raise ModelError(f"{qualified!r} of {model_name} runs {calls} time{'s' * (calls > 1)} in "
                         f"one forward pass, so there is no {first!r}.")
    raise ModelError(f"{first!r} does not run in {model_name}'s forward pass "
                     "(`featurescope layers --all` lists the modules that do).")


def select_named(layers) -> list:
    """The names in ``layers`` that are not groups."""
    from featurescope.core.capture.selection import group_name, split_layers

    return [item for item in split_layers(layers) if group_name(item) is None]


def capture(model, image_or_input, layers: Optional[Sequence[str]] = None,
            progress: Optional[ProgressCallback] = None, cancel: Optional[CancelToken] = None, *,
            store_dtype: Optional[torch.dtype] = None, memory_budget: Optional[int] = None,
            focus: Optional[str] = None, edits: Sequence = (), stop_early: bool = True) -> CaptureResult:
    """Capture the conv/pool outputs of one image in one forward pass.

    ``model``: a LoadedModel (``.module``, ``.device``, ``.preprocess``, ``.categories``,
    ``.name``) or a bare ``nn.Module``. ``image_or_input``: a PIL image (run through
    ``model.preprocess``) or a (1, 3, H, W) tensor used as is. ``layers``: names to
    capture (default all); the forward pass stops right after the last of them, so
    ``logits`` is then None unless the pass ran to the end. ``progress(done, total,
    name)`` is called per captured layer; ``stop_early=False`` stores only ``layers`` but
    runs the pass to the end, so ``logits`` are there (live frames with predictions); ``cancel`` is checked at every captured layer
    (raises ``progress.Cancelled``). ``store_dtype`` (e.g. torch.float16) stores outputs
    compactly. ``memory_budget`` (bytes, e.g. ``memory.DEFAULT_MEMORY_BUDGET``; None =
    unlimited) bounds the stored outputs: float32 if all fit, else float16, else float16
    for ``focus`` (default the first layer) and then the smallest layers that fit, the
    rest described but listed in ``result.missing`` (with ``result.notice`` saying so);
    the pass still runs to the end, so logits are there. ``edits``: sinks that run
    before the store and may replace a layer's output for the rest of the network
    (e.g. :class:`~featurescope.core.capture.sinks.ZeroChannels`, ablation); the stored
    output is the edited one. Raises ModelError for a layer name the model does not have.
    Nothing stays active afterwards, whatever happens.
    """
    module, loaded = _unpack(model)
    device = getattr(loaded, "device", None) or module_device(module)
    model_name = getattr(loaded, "name", None) or type(module).__name__
    check(cancel)
    x = as_input(model, image_or_input)
    input_cpu = x.to("cpu", copy=True)  # a snapshot: the caller may reuse its tensor
    x = x.to(device)
    taps, selection = _selection(module, layers, model_name)

    plan = None
    if memory_budget is not None and not selection.named:
        plan = _plan(module, loaded, x, int(memory_budget), store_dtype, focus, selection, layers)
        if plan.dtype_name == "float16" and store_dtype is None:
            store_dtype = torch.float16
    keep = plan.keep if plan is not None else None
    store, run, output = _store(module, x, taps, selection, progress, cancel,
                                store_dtype=store_dtype, keep=keep, budget=memory_budget,
                                model_name=model_name, edits=tuple(edits), stop_early=stop_early)
    _check_found(model_name, layers, run)
    notice = _notice(plan, len(store.outputs), len(run.infos)) if plan is not None else ""
    logits = logits_of(output)
    return CaptureResult(store.outputs, run.infos, None if logits is None else logits[0], input_cpu,
                         categories=getattr(loaded, "categories", None), model_name=model_name,
                         device=torch.device(device), notice=notice, memory_budget=memory_budget,
                         dense=dense_output(output, x.shape[-2:]))


def capture_batch(model, inputs, layers: Optional[Sequence[str]] = None,
                  progress: Optional[ProgressCallback] = None,
                  cancel: Optional[CancelToken] = None) -> BatchResult:
    """Capture the conv/pool outputs of N inputs in one batched forward pass.

    ``inputs``: a list of PIL images (each run through ``model.preprocess``; they must
    come out the same size) or an (N, C, H, W) tensor used as is. ``layers``,
    ``progress`` and ``cancel`` as for :func:`capture`. Returns a :class:`BatchResult`:
    layer name -> (N, C, H, W) CPU float32 tensor, with ``.logits`` (N, classes).
    Raises ImageError for inputs it cannot batch, ModelError for unknown layer names.
    """
    module, loaded = _unpack(model)
    device = getattr(loaded, "device", None) or module_device(module)
    model_name = getattr(loaded, "name", None) or type(module).__name__
    check(cancel)
    x = as_batch(model, inputs)
    input_cpu = x.to("cpu", copy=True)
    x = x.to(device)
    taps, selection = _selection(module, layers, model_name)
    store, run, output = _store(module, x, taps, selection, progress, cancel, model_name=model_name)
    _check_found(model_name, layers, run)
    return BatchResult(store.outputs, run.infos, logits_of(output, x.shape[0]), input_cpu,
                       model_name=model_name, device=torch.device(device))


def capture_into(model, inputs, sinks: list, layers: Optional[Sequence[str]] = None,
                 progress: Optional[ProgressCallback] = None,
                 cancel: Optional[CancelToken] = None) -> list[LayerInfo]:
    """Run one batch (as for :func:`capture_batch`) and hand the captured layers to
    ``sinks`` (e.g. a :class:`~featurescope.core.capture.sinks.TopKReducer`) instead of
    storing them. Returns the LayerInfo of the layers handed over."""
    module, _loaded = _unpack(model)
    device = getattr(_loaded, "device", None) or module_device(module)
    check(cancel)
    x = as_batch(model, inputs).to(device)
    model_name = getattr(_loaded, "name", None) or type(module).__name__
    taps, selection = _selection(module, layers, model_name)
    if module.training or any(m.training for m in taps.below):
        module.eval()
    sinks = list(sinks) + ([EarlyStop(selection.named)] if selection.early_stop else [])
    run = _run(taps, selection, sinks, describe=True, info_cache=info_cache(module),
               progress=progress, cancel=cancel)
    run_forward(module, x, run, _grad_free(taps, selection), taps.lazy, model_name)
    _check_found(model_name, layers, run)
    return run.infos


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
                         device=result.device, notice=result.notice, memory_budget=budget,
                         dense=result.dense)


def describe_layers(module: nn.Module, input_shape=(1, 3, 224, 224),
                    name: Optional[str] = None, layers=None) -> list[LayerInfo]:
    """Every captured layer of ``module`` in execution order, with its metadata, from one
    forward pass on zeros of ``input_shape`` (1, C, H, W) (nothing is stored). ``layers``:
    names and groups as for :func:`capture` (default: the conv and pooling layers;
    ``"all"``: every module with a (C, H, W) output). A failing network raises a
    ModelError that calls it ``name`` (default: its class)."""
    if isinstance(input_shape, int):
        input_shape = (1, 3, input_shape, input_shape)
    input_shape = tuple(int(s) for s in input_shape)
    if len(input_shape) == 3:
        input_shape = (1,) + input_shape
    was_training = module.training
    module.eval()
    try:
        x = torch.zeros(input_shape, device=module_device(module))
        taps, selection = _selection(module, layers, name or type(module).__name__)
        run = _run(taps, selection, [], describe=True, info_cache=info_cache(module))
        run_forward(module, x, run, torch.inference_mode, taps.lazy, name)
        _check_found(name or type(module).__name__, layers, run)
    finally:
        module.train(was_training)
    return run.infos


def layer_infos(model, layers=None) -> list[LayerInfo]:
    """The LayerInfo of ``layers`` (names and groups as for :func:`capture`; None: the
    conv and pooling layers) in network order, at the model's own input size. A
    LoadedModel answers from its ``layer_info`` / ``every_layer_info`` (no forward
    pass); a bare module is described on a 224 px input. Raises ModelError for a name
    the model does not have or a module whose output is no feature map."""
    from featurescope.core.capture.selection import group_members, group_name, split_layers

    module, loaded = _unpack(model)
    if loaded is None or not hasattr(loaded, "every_layer_info"):
        return describe_layers(module, (1, 3, 224, 224), layers=layers)
    if layers is None:
        return list(loaded.layer_info)
    items = list(dict.fromkeys(split_layers(layers)))
    if not items:
        raise ModelError("No layers were asked for; pass None to capture every layer.")
    every = loaded.every_layer_info
    known = {info.name for info in every}
    chosen: set = set()
    for item in items:
        group = group_name(item)
        if group is not None:
            members = {name for name, _m in group_members(module, group)}
            chosen.update(info.name for info in every if info.module_name in members)
        elif item in known:
            chosen.add(item)
        else:  # an unknown name, or one that gives no feature map: the capture's sentence
            describe_layers(module, (1, loaded.channels, *loaded.input_size), name=loaded.name,
                            layers=[item])
            chosen.add(item)
    return [info for info in every if info.name in chosen]


def describe_modules(module: nn.Module, input_shape=(1, 3, 224, 224),
                     name: Optional[str] = None) -> tuple[list[LayerInfo], dict]:
    """Every module of ``module`` run on zeros of ``input_shape``: (the LayerInfo of those
    with a (C, H, W) output, {layer name: output shape or None} of the others, such as
    a classifier's ``fc``), both in network order. Raises as :func:`describe_layers`."""
    input_shape = tuple(int(s) for s in input_shape)
    was_training = module.training
    module.eval()
    try:
        x = torch.zeros(input_shape, device=module_device(module))
        taps, selection = _selection(module, "all", name or type(module).__name__)
        run = _run(taps, selection, [], describe=True, info_cache=info_cache(module))
        run_forward(module, x, run, torch.inference_mode, taps.lazy, name)
    finally:
        module.train(was_training)
    return run.infos, dict(run.skipped)
