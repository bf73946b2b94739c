"""Write what featurescope shows to disk: PNG grids, an NPZ of activations, a JSON sidecar.

:func:`export_layers` plans every file first and checks every target before it writes
anything, so an existing file (without ``force=True``) stops the export with nothing
written. Each file is written atomically by :mod:`featurescope.core.io.writers`; annotated
grids come from :mod:`featurescope.core.render.annotate` and the sidecar from
:mod:`featurescope.core.io.provenance`.

Problems a user can fix raise :class:`~featurescope.core.errors.ExportError` (or its
subclass :class:`~featurescope.core.errors.FileExistsExportError`, which carries the
path so the GUI can ask before overwriting).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Optional, Sequence, Union

import numpy as np

from featurescope.core.render.annotate import annotate_grid
from featurescope.core.errors import ExportError, FileExistsExportError
from featurescope.core.progress import CancelToken, ProgressCallback, check, report
from featurescope.core.io.provenance import layer_record, sidecar
# The single-file writers (and upscale_array) stay importable from here, as before the split.
from featurescope.core.io.writers import (PathLike, file_sha256, make_folder, safe_filename, to_numpy,
                                       upscale_array, write_json, write_npz, write_png)

__all__ = [
    "write_png",
    "write_npz",
    "write_json",
    "annotate_grid",
    "export_layers",
    "export_targets",
    "safe_filename",
    "file_sha256",
    "NPZ_NAME",
    "JSON_NAME",
]

NPZ_NAME = "activations.npz"
FILTER_MIN_UPSCALE = 8  # filter grids are enlarged at least this much
JSON_NAME = "featurescope.json"


def _format_set(formats: Union[str, Iterable[str]]) -> set[str]:
    if isinstance(formats, str):
        formats = [formats]
    chosen = set()
    for item in formats:
        item = item.lower()
        if item == "both":
            chosen |= {"png", "npz"}
        elif item in ("png", "npz"):
            chosen.add(item)
        else:
            raise ExportError(f"{item!r} is not an export format; use png, npz or both.")
    return chosen


def export_layers(
    result,
    out_dir: PathLike,
    layers: Optional[Sequence[str]] = None,
    formats: Union[str, Sequence[str]] = ("png",),
    normalize: str = "channel",
    colormap: str = "viridis",
    order: str = "index",
    upscale: int = 1,
    annotate: bool = False,
    filters: bool = False,
    model=None,
    source_path: Optional[PathLike] = None,
    force: bool = False,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
) -> list[Path]:
    """Export the captured layers of ``result`` (a ``CaptureResult``) into ``out_dir``.

    Per layer, with "png" in ``formats``: ``<layer>.png``, the feature grid exactly as
    ``feature_grid(result[layer], normalize, colormap, order, upscale=upscale)`` gives
    it; with ``annotate`` also ``<layer>_annotated.png`` (layer name and channel numbers);
    with ``filters`` (conv layers, needs ``model``) ``<layer>_filters.png``. With "npz":
    one ``activations.npz`` whose keys are the layer names exactly plus ``"input"``.
    Always a JSON sidecar ``featurescope.json`` (model, weights, layers, shapes, grid
    options, channel order, source image and its SHA-256, version, date).

    ``<layer>`` is :func:`safe_filename` of the layer name. Nothing is written when any
    target exists and ``force`` is False (:class:`FileExistsExportError`). ``progress``
    is called once per layer; ``cancel`` is checked between files, and a cancelled or
    failed layer leaves none of its files behind. Returns the paths written.
    """
    chosen = _format_set(formats)
    names = list(result.layers) if layers is None else list(layers)
    unknown = [name for name in names if name not in result]
    if unknown:
        raise ExportError(
            f"Layer {unknown[0]!r} was not captured, so it cannot be exported; "
            f"captured layers are {', '.join(list(result.layers)[:6])}"
            f"{', ...' if len(result.layers) > 6 else ''}."
        )
    if not names:
        raise ExportError("No layers were chosen for export.")
    if filters and model is None:
        raise ExportError("Exporting filters needs the model the activations came from.")
    upscale = int(upscale)
    if upscale < 1:
        raise ExportError(f"The upscale factor must be a whole number of at least 1, not {upscale}.")
    out_dir = Path(out_dir)
    # Kernels are 1x1 to 11x11 pixels: at their true size a filter grid is a smudge.
    filter_upscale = max(upscale, FILTER_MIN_UPSCALE)

    # Plan every file first, so that an existing one stops the export before any write.
    filter_names = [name for name in names if _has_filters(result, name)] if filters else []
    plan = _plan(names, out_dir, chosen, annotate, filter_names)
    npz_path = out_dir / NPZ_NAME if "npz" in chosen else None
    json_path = out_dir / JSON_NAME
    targets = _targets(plan, out_dir, chosen)
    if not force:
        existing = [path for path in targets if os.path.lexists(path)]
        if existing:
            more = f" and {len(existing) - 1} more" if len(existing) > 1 else ""
            raise FileExistsExportError(
                f"{existing[0]} already exists{more} and nothing was written; "
                "use --force to overwrite or choose another folder.",
                existing[0],
            )
    make_folder(out_dir)

    from featurescope.core.render import grids  # torch-free but heavier; only needed here

    total = len(plan) + (1 if npz_path else 0) + 1
    written: list[Path] = []
    layer_records = []
    for done, (name, files) in enumerate(plan):
        check(cancel)
        report(progress, done, total, f"Exporting {name}")
        chw = to_numpy(result[name])
        position_to_channel = np.asarray(grids.channel_order(chw, order))
        layer_files: list[Path] = []
        try:
            grid = filter_picture = None
            for kind, path in files:
                check(cancel)
                if kind in ("grid", "annotated") and grid is None:
                    grid = grids.feature_grid(chw, normalize=normalize, colormap=colormap, order=order, upscale=upscale)
                if kind in ("filters", "filters_annotated") and filter_picture is None:
                    from featurescope.core.render.filters import filter_grid

                    weight = _layer_weight(model, result, name)
                    filter_picture = filter_grid(weight, upscale=filter_upscale)
                if kind == "grid":
                    picture = grid
                elif kind == "annotated":
                    layout = grids.grid_layout(chw.shape[0], chw.shape[1], chw.shape[2], order=position_to_channel)
                    title = f"{name}  ({chw.shape[0]} channels, {chw.shape[1]}x{chw.shape[2]})"
                    picture = annotate_grid(grid, layout, title, upscale=upscale)
                elif kind == "filters":
                    picture = filter_picture[0]
                else:
                    kh, kw = weight.shape[-2:]
                    title = f"{name} filters  ({weight.shape[0]} kernels, {kh}x{kw})"
                    picture = annotate_grid(filter_picture[0], filter_picture[1], title, upscale=filter_upscale)
                layer_files.append(write_png(path, picture, force=True))
        except BaseException:
            # A cancelled or failed layer leaves none of its files behind.
            for path in layer_files:
                try:
                    path.unlink()
                except OSError:
                    pass
            raise
        written.extend(layer_files)
        layer_records.append(layer_record(name, _info(result, name), chw, position_to_channel,
                                          layer_files, out_dir))

    done = len(plan)
    if npz_path is not None:
        check(cancel)
        report(progress, done, total, f"Writing {NPZ_NAME}")
        arrays = {name: result[name] for name in names}
        arrays["input"] = result.input
        written.append(write_npz(npz_path, arrays, force=True))
        done += 1

    check(cancel)
    report(progress, done, total, f"Writing {JSON_NAME}")
    description = sidecar(
        result, model, layer_records, normalize, colormap, order, upscale, annotate,
        filter_upscale if filters else None, source_path, npz_path, out_dir,
    )
    written.append(write_json(json_path, description, force=True))
    report(progress, total, total, "Export finished")
    return written


def _unique_stems(names: Sequence[str]) -> dict[str, str]:
    stems: dict[str, str] = {}
    used: set[str] = set()
    for name in names:
        stem = safe_filename(name)
        candidate, n = stem, 2
        while candidate.lower() in used:
            candidate = f"{stem}_{n}"
            n += 1
        used.add(candidate.lower())
        stems[name] = candidate
    return stems


def _plan(names, out_dir: Path, chosen: set, annotate: bool, filter_names) -> list:
    """(layer name, [(kind, path), ...]) for every layer, in export order."""
    stems = _unique_stems(names)
    filter_names = set(filter_names)
    plan = []
    for name in names:
        files: list[tuple[str, Path]] = []
        if "png" in chosen:
            files.append(("grid", out_dir / f"{stems[name]}.png"))
            if annotate:
                files.append(("annotated", out_dir / f"{stems[name]}_annotated.png"))
            if name in filter_names:
                files.append(("filters", out_dir / f"{stems[name]}_filters.png"))
                if annotate:
                    files.append(("filters_annotated", out_dir / f"{stems[name]}_filters_annotated.png"))
        plan.append((name, files))
    return plan


def export_targets(
    layers: Sequence[str],
    out_dir: PathLike,
    formats: Union[str, Sequence[str]] = ("png",),
    annotate: bool = False,
    filter_layers: Sequence[str] = (),
) -> list[Path]:
    """Every path :func:`export_layers` would write for these layers, without writing.

    ``filter_layers`` are the conv layers whose filters are exported. A batch export
    (several images) checks all of them before the first image is written.
    """
    chosen = _format_set(formats)
    out_dir = Path(out_dir)
    return _targets(_plan(list(layers), out_dir, chosen, annotate, filter_layers), out_dir, chosen)


def _targets(plan, out_dir: Path, chosen: set) -> list[Path]:
    """Every file of ``plan``, then the NPZ (when chosen) and the JSON sidecar."""
    targets = [path for _, files in plan for _, path in files]
    if "npz" in chosen:
        targets.append(out_dir / NPZ_NAME)
    targets.append(out_dir / JSON_NAME)
    return targets


def _info(result, name):
    info = getattr(result, "info", None) or {}
    return info.get(name)


def _has_filters(result, name: str) -> bool:
    info = _info(result, name)
    return info is not None and info.kind == "Conv2d"


def _layer_weight(model, result, name: str) -> np.ndarray:
    info = _info(result, name)
    module_name = info.module_name if info is not None else name.split("#")[0]
    module = model.module.get_submodule(module_name) if module_name else model.module
    return to_numpy(module.weight)
