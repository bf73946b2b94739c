"""How much each channel of a source layer S gives a target channel c of layer L, for one photo.

The contribution of source channel i is gradient x activation summed over positions:
``sum_yx  d target / d S[i, y, x]  *  S[i, y, x]``, where the target is c's mean
activation (or its value at one pinned position) and S is the source layer's output
on this photo. When S feeds L through linear steps only (a convolution right after
another) the contributions add up exactly to the target minus what does not come from
S (L's bias); through ReLUs they are the first-order account of what switching each
source off would do, which core/circuits/check.py puts to the test.

Every pass goes through :func:`~featurescope.core.capture.grad.run_with_grad`, stopped
right after L. Ranking many target channels at once (an atlas) runs the forward pass
once and one backward pass batched over the targets (autograd's vmap). The switch-off
check (check.py) replaces S's output by a batch of masked copies: the part of the
network before S runs once, at batch 1.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from featurescope.core.capture.grad import run_with_grad
from featurescope.core.capture.inputs import as_input
from featurescope.core.circuits.graph import CLASS, layer_graph
from featurescope.core.errors import ModelError

# Elements of one batched S -> L pass: copies of S's output, kept under this many.
_BATCH_ELEMENTS = 48_000_000


@dataclass(frozen=True)
class Target:
    """What a circuit explains: ``channel`` of ``layer`` (or class ``channel`` of the
    output when ``layer`` is :data:`CLASS`), its mean or its value at ``position``."""

    layer: str
    channel: int
    position: Optional[tuple[int, int]] = None

    def values(self, output: torch.Tensor, channels: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The target per batch row of ``output`` (B, C, H, W) or class scores (B, K);
        ``channels`` (B,) gives each row its own target channel."""
        batch = output.shape[0]
        rows = torch.arange(batch, device=output.device)
        chosen = channels if channels is not None else torch.full((batch,), self.channel, device=output.device)
        picked = output[rows, chosen]
        if picked.dim() == 1:
            return picked
        if self.position is not None:
            y, x = self.position
            return picked[:, y, x]
        return picked.flatten(1).mean(dim=1)

    def every(self, output: torch.Tensor) -> torch.Tensor:
        """The target of every channel (or class) of the first row of ``output``, (C,)."""
        first = output[0]
        if first.dim() == 1:
            return first
        if self.position is not None:
            return first[:, self.position[0], self.position[1]]
        return first.flatten(1).mean(dim=1)


@dataclass(frozen=True)
class Prepared:
    """A network ready for circuit passes: the bare module, its name, the photo's
    input tensor on the model's device and the wiring."""

    model: object
    module: torch.nn.Module
    name: str
    x: torch.Tensor
    graph: object

    def run(self, layers: Sequence[str], stop: Optional[str], replace=None, grad=True):
        return run_with_grad(self.module, self.x, list(layers), model_name=self.name,
                             stop_after=None if stop == CLASS else stop, replace=replace, grad=grad)


def prepare(model, image, layer: str, source: Optional[str], what: str = "A circuit") -> tuple[Prepared, str]:
    """Check the request and get the network ready: returns (prepared, source layer).

    Raises ModelError (one sentence) for a model without gradients, an unknown layer,
    a source that does not feed the layer, or a first layer (nothing captured feeds it)."""
    from featurescope.core.models.spec import require_gradients

    require_gradients(model, what)
    module = getattr(model, "module", model)
    name = getattr(model, "name", None) or type(module).__name__
    graph = layer_graph(model)
    modules = dict(module.named_modules())
    for asked in (layer, source):
        if asked and asked != CLASS and asked not in graph.order and asked.partition("#")[0] not in modules:
            raise _unknown(name, asked, graph)
    extra = tuple(n for n in (layer, source) if n and n not in graph.order)
    if extra:  # modules that are not captured layers by default (a block, an activation)
        graph = layer_graph(model, extra)
    if layer != CLASS and layer not in graph.order:
        raise _unknown(name, layer, graph)
    if source is None:
        source = graph.default_source(layer)
        if source is None:
            raise ModelError(f"Nothing captured feeds {layer} in {name}: it is a first layer, "
                             "made from the image's pixels.")
    elif source not in graph.order:
        raise _unknown(name, source, graph)
    elif source not in graph.upstream(layer):
        raise ModelError(f"{source} does not feed {layer} in {name}; choose a layer that runs "
                         f"before it on a path into it (the default is {graph.default_source(layer)}).")
    device = getattr(model, "device", None) or next((p.device for p in module.parameters()), "cpu")
    x = as_input(model, image).to(device)
    return Prepared(model, module, name, x, graph), source


def _unknown(model_name: str, layer: str, graph) -> ModelError:
    import difflib

    close = difflib.get_close_matches(layer, [*graph.order, CLASS], n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return ModelError(f"{model_name} has no layer called {layer!r}; {hint}`featurescope layers` "
                      "lists the layer names (or use class for the class scores).")


def check_target(prepared: Prepared, target: Target, output: torch.Tensor) -> None:
    """ModelError for a channel or position the target layer does not have."""
    if target.layer == CLASS:
        if output is None or output.dim() != 2:
            raise ModelError(f"{prepared.name} gives no class scores to trace back from.")
        count = output.shape[1]
        if not 0 <= target.channel < count:
            raise ModelError(f"{prepared.name} has classes 0 to {count - 1}; {target.channel} is not among them.")
        if target.position is not None:
            raise ModelError("A class score has no positions; --at applies to a layer's channel.")
        return
    if output.dim() < 2:
        raise ModelError(f"{target.layer} gives no channels to trace back from.")
    count = output.shape[1]
    if not 0 <= target.channel < count:
        raise ModelError(f"{target.layer} has channels 0 to {count - 1}; {target.channel} is not among them.")
    if target.position is not None:
        y, x = target.position
        if output.dim() != 4 or not (0 <= y < output.shape[2] and 0 <= x < output.shape[3]):
            size = "x".join(str(s) for s in output.shape[2:]) or "no"
            raise ModelError(f"({y}, {x}) is outside {target.layer}'s {size} map.")


def _output_of(run, target: Target) -> torch.Tensor:
    return run.output if target.layer == CLASS else run.activations[target.layer]


@dataclass
class Contributions:
    """One target's account: ``contributions`` (C_S,) and ``activations`` (C_S,) (each
    source channel's mean on the photo), ``value`` (the target itself), ``maps``
    (C_S, H, W) the source layer's output, all float32 CPU numpy."""

    contributions: np.ndarray
    activations: np.ndarray
    value: float
    maps: np.ndarray
    count: int  # channels (or classes) of the target's layer


def contributions(prepared: Prepared, source: str, target: Target) -> Contributions:
    """Gradient x activation of every channel of ``source`` for ``target``: one forward
    pass stopped after the target's layer, one backward pass to ``source``."""
    layers = [source] if target.layer == CLASS else [source, target.layer]
    run = prepared.run(layers, target.layer)
    output = _output_of(run, target)
    check_target(prepared, target, output)
    activation = run.activations[source]
    value = target.values(output)[0]
    (gradient,) = torch.autograd.grad(value, activation)
    with torch.no_grad():
        total = (gradient * activation)[0].flatten(1).sum(dim=1)
        maps = activation[0].detach()
    return Contributions(total.float().cpu().numpy(), maps.flatten(1).mean(dim=1).float().cpu().numpy(),
                         float(value.detach()), maps.float().cpu().numpy(), int(output.shape[1]))


def batched_pass(prepared: Prepared, source: str, layer: str, rows: Callable[[torch.Tensor], torch.Tensor],
                 layers: Sequence[str], grad: bool):
    """One pass in which ``source``'s output is replaced by ``rows(output)``, a batch:
    the part before ``source`` runs at batch 1. A network that cannot mix batch sizes
    (a ``cat`` with an earlier layer) is run again with the input repeated."""
    try:
        return prepared.run(layers, layer, replace={source: rows}, grad=grad)
    except ModelError as error:
        if not isinstance(error.__cause__, RuntimeError):
            raise
        made = {}

        def probe(output):
            made["batch"] = rows(output)
            raise _Probed()

        try:
            prepared.run([source], source, replace={source: probe}, grad=False)
        except _Probed:
            pass
        batch = made["batch"].shape[0]
        repeated = Prepared(prepared.model, prepared.module, prepared.name,
                            prepared.x.expand(batch, *prepared.x.shape[1:]).contiguous(), prepared.graph)
        return repeated.run(layers, layer, replace={source: lambda output: rows(output[:1])}, grad=grad)


class _Probed(Exception):
    pass


def contribution_matrix(model, image, layer: str, source: Optional[str] = None,
                        channels: Optional[Sequence[int]] = None, position: Optional[tuple[int, int]] = None,
                        progress=None, cancel=None) -> np.ndarray:
    """Contributions of every channel of ``source`` to each of ``channels`` of ``layer``
    (default all), as a (len(channels), C_S) float32 array: row k is what
    :func:`~featurescope.core.circuits.circuit.circuit` gives channel ``channels[k]``.

    Batched: one forward pass to L, then one backward pass per chunk of targets,
    batched over them (``is_grads_batched``: autograd's vmap), chunks sized to keep
    memory bounded. ``progress(done, total, text)`` after each chunk;
    ``cancel.raise_if_cancelled()`` before each."""
    prepared, source = prepare(model, image, layer, source, "Ranking circuits")
    count = prepared.graph.channels.get(layer) if layer != CLASS else None
    if count is None:  # classes: counted on the first pass
        count = _output_of(prepared.run([], layer, grad=False), Target(layer, 0)).shape[1]
    chosen = list(range(count)) if channels is None else [int(c) for c in channels]
    bad = [c for c in chosen if not 0 <= c < count]
    if bad:
        what = f"{prepared.name} has classes" if layer == CLASS else f"{layer} has channels"
        raise ModelError(f"{what} 0 to {count - 1}; {', '.join(map(str, bad[:5]))} "
                         f"{'is' if len(bad) == 1 else 'are'} not among them.")
    target = Target(layer, 0, position)
    layers = [source] if layer == CLASS else [source, layer]
    run = prepared.run(layers, layer)
    output = _output_of(run, target)
    check_target(prepared, Target(layer, chosen[0] if chosen else 0, position), output)
    activation = run.activations[source]
    every = target.every(output)  # (count,): each channel's target
    maps = activation.detach()
    chunk = max(1, _BATCH_ELEMENTS // max(1, maps.numel()))
    result = np.zeros((len(chosen), maps.shape[1]), dtype=np.float32)
    for start in range(0, len(chosen), chunk):
        if cancel is not None:
            cancel.raise_if_cancelled()
        part = chosen[start:start + chunk]
        pick = torch.zeros((len(part), count), dtype=every.dtype, device=every.device)
        pick[torch.arange(len(part)), torch.tensor(part)] = 1
        # one backward pass per chunk, batched over its targets (vmap), from one forward
        (gradient,) = torch.autograd.grad(every, activation, grad_outputs=pick, is_grads_batched=True,
                                          retain_graph=start + chunk < len(chosen))
        with torch.no_grad():
            result[start:start + len(part)] = (gradient[:, 0] * maps).flatten(2).sum(dim=2).float().cpu().numpy()
        if progress is not None:
            progress(min(start + chunk, len(chosen)), len(chosen), f"{layer} <- {source}")
    return result
