"""The one record of how a layer is turned into a picture.

The app's display panel edits it, the grid view draws with it, and every export path
(the app's grid, all/selected layers, the command line) takes the same record, so an
exported PNG is the picture on screen.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class DisplayOptions:
    """How a layer is turned into a picture; passed straight to render.grids."""

    colormap: str = "viridis"
    normalize: str = "channel"  # "channel" | "layer"
    order: str = "index"  # "index" | "mean" | "max" | "sparsity"
    columns: Optional[int] = None  # None: near-square
    upscale: int = 1
    clip_percentile: Optional[float] = None
