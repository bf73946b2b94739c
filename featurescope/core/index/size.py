"""How big an index gets, checked before a run starts, and growing K as files are added.

An index keeps, per channel and rank, a float32 value, an int64 file id and two int32
positions (20 bytes), plus two 8-byte totals per channel: ``channels * (20 K + 16)``
bytes, in memory and on disk alike (NPZ stores the arrays raw). While it runs, a merge
holds the old and the new top-K side by side and a save writes the arrays out, so a build
needs about three times that in memory. ``--top 100000`` on a network's every layer is
tens of gigabytes; a run that would not fit says so before it reads the first image.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Optional

import numpy as np

from featurescope.core.errors import IndexFileError

BYTES_PER_RANK = 4 + 8 + 2 * 4
BYTES_PER_CHANNEL = 8 + 8
WORKING_COPIES = 3


def index_bytes(channels: int, k: int) -> int:
    """Bytes of an index's arrays for ``channels`` channels (all layers) and top ``k``."""
    return int(channels) * (BYTES_PER_RANK * int(k) + BYTES_PER_CHANNEL)


def available_memory() -> Optional[int]:
    """Bytes of memory available to a new allocation, or None where unknown."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
        return None


def free_disk(folder: Path) -> Optional[int]:
    """Free bytes on the disk holding ``folder``, or None where unknown."""
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def _size(nbytes: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{int(nbytes)} bytes"


def check_fits(channels: int, layers: int, k: int, output: Optional[Path]) -> None:
    """An IndexFileError when an index of ``layers`` layers with ``channels`` channels in
    all and top ``k`` would not fit in memory or, with ``output``, on its disk."""
    needed = index_bytes(channels, k)
    what = (f"An index keeping the top {k} of {layers} layer{'s' if layers != 1 else ''} "
            f"({channels:,} channels)")
    fix = "keep fewer images per channel (--top) or index fewer layers (--layers)."
    memory = available_memory()
    if memory is not None and WORKING_COPIES * needed > memory:
        raise IndexFileError(f"{what} needs about {_size(WORKING_COPIES * needed)} of memory while "
                             f"it runs, and {_size(memory)} is available; {fix}")
    if output is not None:
        disk = free_disk(output.parent if output.parent.exists() else Path.cwd())
        if disk is not None and needed > disk:
            raise IndexFileError(f"{what} is about {_size(needed)} on disk, and {output.parent} "
                                 f"has {_size(disk)} free; {fix}")


def grow_k(index, k: int) -> None:
    """Raise ``index``'s K to ``k`` (never lowers it). Exact when K was capped by the
    number of files: every file read so far is already in each channel's list."""
    if k <= index.k:
        return
    for name, data in index.topk.items():
        pad = k - data.values.shape[1]
        rows = data.values.shape[0]
        data.values = np.concatenate([data.values, np.full((rows, pad), -np.inf, np.float32)], 1)
        data.ids = np.concatenate([data.ids, np.full((rows, pad), -1, np.int64)], 1)
        data.positions = np.concatenate([data.positions, np.zeros((rows, pad, 2), np.int32)], 1)
    index.meta["k"] = int(k)
