"""Which modules a capture records: layer names, module names and groups.

By default a capture records the convolution and pooling layers (``layers.CAPTURED_TYPES``).
Any module found by ``named_modules()`` can be asked for by its name (``"layer3"``,
``"features.1.0.block"``, ``"layer1.0.relu#2"`` for a module's second call), and whole
groups by a word:

- ``conv``: convolutions; ``pool``: pooling layers (the default set is the two);
- ``act``: activation modules (ReLU, ReLU6, SiLU, GELU, Hardswish, ...);
- ``block``: modules whose direct children include a convolution (residual and
  inverted-residual blocks, conv-norm-activation units, squeeze-excitation);
- ``all``: every module whose output is a (C, H, W) feature map.

A group asks for every call of its modules; a name asks for exactly that call. Only
outputs that are (N, C, H, W) tensors are recorded for modules outside the default set:
a classifier's ``fc`` or ``flatten`` is skipped, and so is a module that works on
channels-last tensors between two ``Permute`` modules (ConvNeXt's LayerNorm and MLP),
whose 4-D output is (N, H, W, C) and no feature map.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Iterable, Optional, Sequence, Union

from torch import nn

from featurescope.core.capture.layers import CAPTURED_TYPES, CONV_TYPES, captured_kind
from featurescope.core.errors import ModelError

GROUPS = ("conv", "pool", "act", "block", "all")
_GROUP_ALIASES = {"pooling": "pool", "activation": "act", "activations": "act", "blocks": "block"}

# Activation modules (the ``act`` group). Subclasses count (ReLU6 is a Hardtanh).
ACTIVATION_CLASSES = (nn.ReLU, nn.ReLU6, nn.SiLU, nn.GELU, nn.Hardswish, nn.Hardsigmoid,
                      nn.LeakyReLU, nn.ELU, nn.PReLU, nn.SELU, nn.CELU, nn.Mish, nn.Sigmoid,
                      nn.Tanh, nn.Softplus, nn.Hardtanh)
CONV_CLASSES = (nn.Conv2d, nn.ConvTranspose2d)


def module_kind(module: nn.Module) -> str:
    """LayerInfo.kind of ``module``: "Conv2d", "MaxPool2d", ... for the default layers
    (subclasses included), else its class name ("ReLU", "BatchNorm2d", "BasicBlock")."""
    return captured_kind(module) or type(module).__name__


def is_activation(module: nn.Module) -> bool:
    return isinstance(module, ACTIVATION_CLASSES)


def is_block(module: nn.Module) -> bool:
    """True when one of ``module``'s direct children is a convolution (and it is none)."""
    if isinstance(module, CONV_CLASSES):
        return False
    return any(isinstance(child, CONV_CLASSES) for child in module.children())


def channels_last_modules(model: nn.Module) -> set:
    """ids of the modules that run between a Permute to channels-last and the Permute
    back, in a container's children (torchvision's ConvNeXt block: LayerNorm, Linear,
    GELU, Linear on (N, H, W, C))."""
    inside: set = set()
    for parent in model.modules():
        permuted = False
        for child in parent.children():
            dims = list(getattr(child, "dims", ()) or ())
            if type(child).__name__ == "Permute" and len(dims) == 4:
                permuted = dims == [0, 2, 3, 1]
                if permuted:
                    inside.add(id(child))
                continue
            if permuted:
                inside.update(id(m) for m in child.modules())
    return inside


def group_members(model: nn.Module, group: str) -> list[tuple[str, nn.Module]]:
    """(qualified name, module) of every module in ``group`` (one of GROUPS), in
    registration order; the model itself is never a member."""
    group = _GROUP_ALIASES.get(group.lower(), group.lower())
    if group not in GROUPS:
        raise ValueError(f"unknown layer group {group!r}")
    skip = channels_last_modules(model) if group in ("act", "block", "all") else set()
    members = []
    for qualified, sub in model.named_modules():
        if not qualified or id(sub) in skip:
            continue
        kind = captured_kind(sub)
        if group == "all" or (group == "conv" and kind in CONV_TYPES) \
                or (group == "pool" and kind is not None and "Pool" in kind) \
                or (group == "act" and is_activation(sub)) or (group == "block" and is_block(sub)):
            members.append((qualified, sub))
    return members


def group_name(word: str) -> Optional[str]:
    """The group ``word`` names ("pooling" -> "pool"), or None for a layer name."""
    word = word.strip().lower()
    word = _GROUP_ALIASES.get(word, word)
    return word if word in GROUPS else None


def split_layers(layers: Union[str, Sequence[str]]) -> list[str]:
    """``layers`` as a list of names and groups: a string is split at commas."""
    if isinstance(layers, str):
        layers = layers.split(",")
    return [str(part).strip() for part in layers if str(part).strip()]


@dataclass
class Selection:
    """What one capture records. ``targets`` {id(module): (qualified name, kind)} of the
    modules to watch; ``wanted``: the layer names handed on (None: every call of every
    target); ``every``: qualified names whose every call is wanted besides ``wanted``
    (groups); ``named``: the names asked for one by one (checked after the pass);
    ``modules``: the tapped modules; ``default``: the conv and pooling layers only."""

    targets: dict
    wanted: Optional[set] = None
    every: frozenset = frozenset()
    named: list = field(default_factory=list)
    modules: list = field(default_factory=list)
    default: bool = True

    @property
    def early_stop(self) -> bool:
        """True when the pass may stop after the last named layer (no group asked)."""
        return bool(self.named) and not self.every and self.wanted is not None

    @property
    def key(self) -> tuple:
        return (tuple(sorted(self.every)), tuple(sorted(self.wanted or ())))


def select(model: nn.Module, default_targets: dict, layers, model_name: str) -> Selection:
    """The :class:`Selection` for ``layers`` (None: the conv and pooling layers;
    else names and groups, see the module docstring) of ``model``. Raises ModelError
    naming an unknown layer (with the closest name) or an empty list."""
    if layers is None:
        return Selection(default_targets)
    items = list(dict.fromkeys(split_layers(layers)))
    if not items:
        raise ModelError("No layers were asked for; pass None to capture every layer.")
    modules = None
    targets, named, every, tapped = {}, [], set(), []
    for item in items:
        group = group_name(item)
        if group is not None:
            for qualified, sub in group_members(model, group):
                every.add(qualified)
                targets[id(sub)] = (qualified, module_kind(sub))
                tapped.append(sub)
            continue
        if modules is None:
            modules = dict(model.named_modules())
            modules["model"] = modules.get("model", model)
        sub = _module_named(modules, item, model_name)
        targets[id(sub)] = (item.partition("#")[0], module_kind(sub))
        tapped.append(sub)
        named.append(item)
    default = all(kind in CAPTURED_TYPES for _name, kind in targets.values())
    wanted = set(named) if named else None
    if every and wanted is None:
        every = set()  # groups only: every call of every target
    return Selection(targets, wanted, frozenset(every), named, tapped, default)


def _module_named(modules: dict, layer: str, model_name: str) -> nn.Module:
    name, _, call = layer.partition("#")
    if name in modules and (not call or (call.isdigit() and int(call) >= 1)):
        return modules[name]
    close = difflib.get_close_matches(name, [n for n in modules if n], n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise ModelError(f"{model_name} has no captured layer named {layer!r} (no module is called "
                     f"that); {hint}"
                     f"`featurescope layers --all` lists every module (groups: {', '.join(GROUPS)}).")


def module_names(names: Iterable[str]) -> list[str]:
    """The qualified module name of each layer name ("relu#2" -> "relu"), in order."""
    return list(dict.fromkeys(name.partition("#")[0] for name in names))
