"""Where models come from: each source registers itself, and a name finds its source.

A source is one file in core/models/sources/ with a class decorated by
:func:`register_source`: it says which names are its own (``claims``: an exact name, a
prefix such as ``timm:``, a path suffix such as ``.onnx``), turns one into a
:class:`~featurescope.core.models.spec.ModelSpec` (``spec``) and may list models for the
catalogue (``catalogue``). Every module of that package is imported on first lookup,
so a new source is one new file. Sources are asked in ``priority`` order (lower first);
the torchvision source, the fallback, says which names nobody knows.
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from typing import Callable

from featurescope.core.models.spec import ModelSpec

# The model used wherever none is named: the CLI's --model, the app's first start and
# its fallback, screenshots. Its weights ship inside the package (no download).
DEFAULT_MODEL = "efficientnet_lite0"

_SOURCES: dict[str, object] = {}
_DISCOVERED = False


@dataclass(frozen=True)
class CatalogueEntry:
    name: str  # "resnet50", "efficientnet_lite0"
    family: str  # "ResNet", "VGG", "EfficientNet-Lite", ...
    weights_status: str  # "embedded" | "cached" | "downloadable"
    weights_name: str  # "ResNet50_Weights.IMAGENET1K_V2", "embedded ImageNet"


def register_source(cls):
    """Class decorator: register an instance of ``cls`` under ``cls.name``. The class has
    ``name``, ``priority`` (int), ``claims(name) -> bool``, ``spec(name) -> ModelSpec`` and
    optionally ``catalogue() -> list[CatalogueEntry]`` and ``listed`` (int: where that
    catalogue goes in the list; the priority by default)."""
    _SOURCES[cls.name] = cls()
    return cls


def _discover() -> None:
    global _DISCOVERED
    if _DISCOVERED:
        return
    import featurescope.core.models.sources as package

    for info in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{info.name}")
    _DISCOVERED = True


def sources() -> list:
    """The registered sources, in the order they are asked."""
    _discover()
    return sorted(_SOURCES.values(), key=lambda s: s.priority)


def source_for(name: str):
    """The source that claims ``name`` (the lowest priority number wins)."""
    for source in sources():
        if source.claims(name):
            return source
    raise LookupError(name)  # the fallback source claims everything; not reached


def resolve(name: str) -> ModelSpec:
    """The ModelSpec for ``name`` (ModelError, with a hint, when no source knows it)."""
    return source_for(str(name)).spec(str(name))


def catalogue_entries() -> list[CatalogueEntry]:
    """Every source's catalogue, sources in ``listed`` order (their priority unless they
    say otherwise: detectors must claim names before the torchvision classifiers do, yet
    list after them, since classifiers are what most users come for)."""
    entries: list[CatalogueEntry] = []
    for source in sorted(sources(), key=lambda s: getattr(s, "listed", s.priority)):
        listing: Callable = getattr(source, "catalogue", None)
        if listing is not None:
            entries.extend(listing())
    return entries
