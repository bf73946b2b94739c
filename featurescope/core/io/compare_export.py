"""Write a comparison of two images at one layer: A, B and |A - B| grids on one shared
colour scale (PNG) and a JSON sidecar with the similarities.

Used by ``featurescope compare`` and the app's *Export comparison...*: every file is
planned first, refused when one exists without ``force``, and written atomically; the
sidecar starts with the provenance block (image A is its source image; image B has its
own record beside it).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from featurescope.core.io.provenance import provenance, source_record
from featurescope.core.io.writers import (PathLike, refuse_existing, safe_filename, write_all, write_json,
                                          write_png)

PICTURE_KEYS = ("a", "b", "difference")


def comparison_targets(folder: PathLike, layer: str) -> list[Path]:
    """``<layer>_a.png``, ``<layer>_b.png``, ``<layer>_difference.png`` and
    ``<layer>_compare.json`` in ``folder``."""
    stem = safe_filename(layer)
    folder = Path(folder)
    return [folder / f"{stem}_{key}.png" for key in PICTURE_KEYS] + [folder / f"{stem}_compare.json"]


def export_comparison(comparison, folder: PathLike, model=None, source_a: Optional[PathLike] = None,
                      source_b: Optional[PathLike] = None, colormap: str = "viridis",
                      upscale: int = 1, annotate: bool = False, force: bool = False) -> list[Path]:
    """Write ``comparison`` (a :class:`~featurescope.core.analysis.compare.LayerComparison`)
    into ``folder``: the three pictures of ``shared_index_grids`` coloured with
    ``colormap`` and enlarged ``upscale`` times (annotated with :func:`grid_title` when
    ``annotate``), and the sidecar (shared levels, overall and per-channel similarity,
    least similar channels, file names). Nothing is written when a target exists and
    ``force`` is False. Returns the paths written.
    """
    from featurescope.core.analysis.compare import shared_index_grids
    from featurescope.core.render.annotate import annotate_grid, grid_title
    from featurescope.core.render.grids import apply_lut, colormap_lut

    layer = comparison.layer
    *pngs, sidecar_path = comparison_targets(folder, layer)
    refuse_existing((*pngs, sidecar_path), force)
    pictures, layout = shared_index_grids(comparison)
    lut = colormap_lut(colormap)
    name_a = Path(source_a).name if source_a else "image A"
    name_b = Path(source_b).name if source_b else "image B"
    details = {"a": f"A: {name_a}", "b": f"B: {name_b}", "difference": "|A - B|"}
    rgbs = {}
    for key in PICTURE_KEYS:
        rgb = apply_lut(pictures[key], lut, upscale)
        if annotate:
            rgb = annotate_grid(rgb, layout, grid_title(layer, model, details[key]), upscale=upscale)
        rgbs[key] = rgb
    worst = comparison.most_different_channels()
    sidecar = provenance(model, source_a, {"colormap": colormap, "upscale": int(upscale),
                                           "annotated": bool(annotate)})
    sidecar.update({
        "image_b": source_record(source_b),
        "layer": layer,
        "shape": list(comparison.a.shape),
        "shared_levels": list(comparison.shared_levels),
        "similarity": comparison.similarity,
        "mean_abs_difference": comparison.mean_abs_difference,
        "channel_similarity": [float(v) for v in comparison.channel_similarity],
        "least_similar_channels": [int(c) for c in worst],
        "files": {key: path.name for key, path in zip(PICTURE_KEYS, pngs)},
    })
    writes = [lambda key=key, target=target: write_png(target, rgbs[key], force=force)
              for key, target in zip(PICTURE_KEYS, pngs)]
    return write_all(writes + [lambda: write_json(sidecar_path, sidecar, force=force)])
