"""How much memory a capture needs, what to keep within a budget, and the allocator.

A capture keeps every conv/pool output alive; at 224 px that is tens of MB, but a
VGG16 capture at 2048 px would keep about 5 GB of float32. ``capture(...,
memory_budget=bytes)`` uses :func:`storage_plan` to decide, before the forward pass,
how to stay under the budget:

1. everything in float32 when it fits (the usual case: exact values);
2. else everything in float16 (half the bytes; plenty for pictures: the grids quantise
   to 255 levels anyway);
3. else float16 for as many layers as fit (the layer the app shows first, then the
   smallest layers first, which keeps the most layers), the rest marked missing in the
   result; the app fetches a missing layer when it is shown (``capture_missing``, an
   early-stopped forward pass on a worker thread).

The estimate scales the layer shapes of the model's nominal input size (from
``describe_layers``) to the actual input, so deciding costs no forward pass.

:func:`tune_allocator` stops glibc from handing freed activation memory back to the
kernel between captures; see its docstring.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import math
import sys
from dataclasses import dataclass
from typing import Optional, Sequence

# A laptop default: the stored activations may take 1 GiB. A plain forward pass of a
# big network on a huge input already needs a few GiB (weights + two activations), so
# this keeps a capture's peak within about 1.5x of the pass itself. A setting in the app.
DEFAULT_MEMORY_BUDGET = 1 << 30

FLOAT32_BYTES = 4
FLOAT16_BYTES = 2


def estimate_layer_bytes(infos: Sequence, nominal_hw: Sequence[int], input_hw: Sequence[int],
                         itemsize: int = FLOAT32_BYTES) -> dict[str, int]:
    """Estimated stored bytes per layer name for an input of ``input_hw`` (H, W), from
    ``infos`` (LayerInfo list) described at ``nominal_hw``."""
    (h0, w0), (ih, iw) = nominal_hw, input_hw
    estimate = {}
    for info in infos:
        c, h, w = info.output_shape
        if not str(info.kind).startswith("Adaptive"):
            h = max(1, math.ceil(h * ih / h0))
            w = max(1, math.ceil(w * iw / w0))
        estimate[info.name] = c * h * w * int(itemsize)
    return estimate


@dataclass(frozen=True)
class StoragePlan:
    """What a capture keeps: ``dtype_name`` "float32" or "float16"; ``keep`` None for
    every layer, else the set of layer names to store; ``estimated_bytes`` of all layers
    at float32; ``budget`` the budget it was planned for (None: unlimited)."""

    dtype_name: str
    keep: Optional[frozenset]
    estimated_bytes: int
    budget: Optional[int]

    @property
    def lazy(self) -> bool:
        return self.keep is not None


def storage_plan(estimate_float32: dict[str, int], budget: Optional[int],
                 focus: Optional[str] = None) -> StoragePlan:
    """Plan a capture within ``budget`` bytes given per-layer float32 estimates (network
    order). ``focus``: the layer kept first in the lazy case (default the first)."""
    total = sum(estimate_float32.values())
    if budget is None or total <= budget:
        return StoragePlan("float32", None, total, budget)
    if total // 2 <= budget:
        return StoragePlan("float16", None, total, budget)
    names = list(estimate_float32)
    if focus not in estimate_float32:
        focus = names[0] if names else None
    half = {name: size // 2 for name, size in estimate_float32.items()}
    keep, used = set(), 0
    if focus is not None and half[focus] <= budget:
        keep.add(focus)
        used = half[focus]
    for name in sorted(names, key=lambda n: (half[n], names.index(n))):
        if name not in keep and used + half[name] <= budget:
            keep.add(name)
            used += half[name]
    return StoragePlan("float16", frozenset(keep), total, budget)


def format_bytes(count: float) -> str:
    """1536 -> '1.5 KiB'; for notices."""
    count = float(count)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} TiB"  # pragma: no cover


# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_tuned = False


def tune_allocator(mmap_threshold: int = 256 << 20, trim_threshold: int = 1 << 30) -> bool:
    """Keep freed activation memory in the process for the next capture (glibc only).

    A capture allocates a fresh buffer for every layer output and frees them all when the
    previous result is dropped. By default glibc serves blocks over its dynamic mmap
    threshold (up to 32 MiB) from fresh mmaps and gives the top of the heap back to the
    kernel, so every capture pays for thousands of page faults on zeroed pages (~2,200
    per resnet18 capture at 224 px, 5-10% of its time). With a fixed mmap threshold of
    ``mmap_threshold`` and a trim threshold of ``trim_threshold`` the blocks are reused
    instead. Outputs of huge inputs (over ``mmap_threshold``) still come from mmap and
    go straight back to the kernel, so memory after a huge capture is returned.

    Call once at start-up (the app and the benchmarks do). Returns True if applied;
    False on other C libraries (macOS, Windows, musl), where it does nothing.
    """
    global _tuned
    mallopt = _glibc_function("mallopt")
    if mallopt is None:
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = bool(mallopt(_M_MMAP_THRESHOLD, int(mmap_threshold))) and \
        bool(mallopt(_M_TRIM_THRESHOLD, int(trim_threshold)))
    _tuned = _tuned or ok
    return ok


def release_freed_memory() -> bool:
    """Give the heap memory freed so far back to the system (glibc only; a no-op elsewhere).

    :func:`tune_allocator` keeps freed activation memory for the next capture, which is
    right while one model is in use; when the model is replaced, its weights and its
    captures are freed in a different pattern than the new model allocates, and the kept
    blocks only fragment the heap (RSS grew ~150 MB a round when cycling vgg16, Lite0,
    resnet18 and a deep own net). The app calls this once after the first capture of a
    newly loaded model. Returns True when the C library's ``malloc_trim`` ran.
    """
    trim = _glibc_function("malloc_trim")
    if trim is None:
        return False
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    trim(0)
    return True


def _glibc_function(name: str):
    """glibc's function ``name`` through ctypes, or None on other systems and C libraries."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return getattr(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), name)
    except (OSError, AttributeError):
        return None
