"""The one record of how a layer is turned into a picture.

The app's display panel edits it, the grid view draws with it, and every export path
(the app's grid, all/selected layers, the command line) takes the same record, so an
exported PNG is the picture on screen: :func:`grid_arguments` is the only place where
the record becomes ``grid_indices`` arguments, :func:`render_grid` the only place
where it becomes pixels, and :func:`colour_levels` the colour-bar limits of one of
those channels (the Channel view).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Optional

# Every mosaic has one-pixel separators; the grid view draws its lines over them.
GRID_GAP = 1


@dataclass(frozen=True)
class DisplayOptions:
    """How a layer is turned into a picture; passed straight to render.grids."""

    colormap: str = "viridis"
    normalize: str = "channel"  # "channel" | "layer"
    order: str = "index"  # "index" | "mean" | "max" | "sparsity"
    columns: Optional[int] = None  # None: near-square
    upscale: int = 1
    clip_percentile: Optional[float] = None
    # a convolution followed by (batch norm and) an activation is shown as the activation's
    # output: what the next layer receives (core/graph/activation.py finds the pair)
    after_activation: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (for JSON sidecars)."""
        return dataclasses.asdict(self)


def grid_arguments(options: DisplayOptions) -> dict[str, Any]:
    """The ``grid_indices`` keyword arguments for ``options`` (what ``feature_grid`` uses).

    Upscale and colormap do not change the indices (the lookup table does the colour),
    except through ``signed``: diverging colormaps are scaled symmetrically around 0.
    """
    from featurescope.core.render.grids import DIVERGING

    return dict(normalize=options.normalize, order=options.order, columns=options.columns,
                gap=GRID_GAP, clip_percentile=options.clip_percentile,
                signed=str(options.colormap).lower() in DIVERGING)


def render_grid(chw, options: DisplayOptions, upscale: Optional[int] = None):
    """One layer as the grid view shows it: ((H, W, 3) uint8 RGB, GridLayout).

    ``chw`` is a (C, H, W) tensor or array; the picture is
    ``colormap_lut(options.colormap)[grid_indices(chw, **grid_arguments(options))]``,
    each pixel repeated ``upscale`` times (default ``options.upscale``).
    """
    from featurescope.core.render.grids import apply_lut, colormap_lut, grid_indices

    indices, layout = grid_indices(chw, **grid_arguments(options))
    factor = options.upscale if upscale is None else upscale
    return apply_lut(indices, colormap_lut(options.colormap), factor), layout


def colour_levels(chw, channel: int, options: DisplayOptions) -> tuple[float, float]:
    """The values at the low and high ends of the colormap for channel ``channel`` of
    the (C, H, W) layer ``chw``, exactly as :func:`render_grid` colours that channel
    with ``options`` (core.render.levels.channel_levels)."""
    from featurescope.core.render.levels import channel_levels

    arguments = grid_arguments(options)
    return channel_levels(chw, channel, arguments["normalize"], arguments["clip_percentile"],
                          arguments["signed"])
