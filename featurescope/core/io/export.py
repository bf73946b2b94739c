"""Write what featurescope shows to disk: PNG grids, an NPZ of activations, JSON sidecars.

Every export path takes the one :class:`~featurescope.core.render.options.DisplayOptions`
record the grid view draws with, so an exported grid is the picture on screen.

- :func:`export_layers`: a PNG grid per layer (annotated, filters), one NPZ and a
  ``featurescope.json`` sidecar in a folder (the CLI's ``export``, the app's Export
  all/selected layers). It plans every file first and checks every target before it
  writes anything, so an existing file (without ``force=True``) stops the export with
  nothing written.
- :func:`export_grid`: one layer's grid as a PNG and a JSON beside it (the app's Export grid).
- :func:`export_activations`: every captured layer and the input in one NPZ, and a JSON
  beside it.

Each file is written atomically by :mod:`featurescope.core.io.writers`; annotated grids
come from :mod:`featurescope.core.render.annotate` with :func:`grid_title`, and every
sidecar starts with the provenance block of :mod:`featurescope.core.io.provenance`.

Problems a user can fix raise :class:`~featurescope.core.errors.ExportError` (or its
subclass :class:`~featurescope.core.errors.FileExistsExportError`, which carries the
path so the GUI can ask before overwriting).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Optional, Sequence, Union

import numpy as np

from featurescope.core.errors import ExportError
from featurescope.core.io.provenance import layer_record, layers_sidecar, provenance
from featurescope.core.io.writers import (PathLike, make_folder, refuse_existing,
                                          safe_filename, to_numpy, write_all, write_json,
                                          write_npz, write_png)
from featurescope.core.progress import CancelToken, ProgressCallback, check, report
from featurescope.core.render.annotate import annotate_grid, grid_title
from featurescope.core.render.options import DisplayOptions, render_grid

__all__ = [
    "export_layers",
    "export_layer_steps",
    "export_targets",
    "export_grid",
    "export_activations",
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


def _check_options(options: Optional[DisplayOptions]) -> DisplayOptions:
    options = DisplayOptions() if options is None else options
    if int(options.upscale) < 1:
        raise ExportError(f"The upscale factor must be a whole number of at least 1, not {options.upscale}.")
    return options


def export_layers(
    result,
    out_dir: PathLike,
    layers: Optional[Sequence[str]] = None,
    formats: Union[str, Sequence[str]] = ("png",),
    options: Optional[DisplayOptions] = None,
    annotate: bool = False,
    filters: bool = False,
    model=None,
    source_path: Optional[PathLike] = None,
    force: bool = False,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
) -> list[Path]:
    """Export the captured layers of ``result`` (a ``CaptureResult``) into ``out_dir``.

    Per layer, with "png" in ``formats``: ``<layer>.png``, the grid exactly as the grid
    view shows it with ``options`` (``render_grid(result[layer], options)``: colormap,
    normalisation, clipping, order, columns, upscale); with ``annotate`` also
    ``<layer>_annotated.png`` (:func:`grid_title` and channel numbers); with ``filters``
    (conv layers, needs ``model``) ``<layer>_filters.png``. With "npz": one
    ``activations.npz`` whose keys are the layer names exactly plus ``"input"``. Always a
    JSON sidecar ``featurescope.json`` (the provenance block, the input, the grid
    options, per layer its shape, channel order and files).

    ``<layer>`` is :func:`safe_filename` of the layer name. Nothing is written when any
    target exists and ``force`` is False (:class:`FileExistsExportError`). ``progress``
    is called once per layer; ``cancel`` is checked between files, and a cancelled or
    failed layer leaves none of its files behind. Returns the paths written.
    """
    steps = export_layer_steps(result, out_dir, layers, formats, options, annotate, filters,
                               model, source_path, force)
    total = len(steps)
    written: list[Path] = []
    for done, step in enumerate(steps):
        check(cancel)
        report(progress, done, total, step.label)
        written.extend(step(cancel=cancel))
    report(progress, total, total, "Export finished")
    return written


class ExportStep:
    """One small piece of a layers export (one layer's files, the NPZ, or the sidecar),
    so the app can run an export as units that interactive work can overtake."""

    def __init__(self, label: str, write) -> None:
        self.label = label
        self._write = write

    def __call__(self, progress: Optional[ProgressCallback] = None,
                 cancel: Optional[CancelToken] = None) -> list[Path]:
        check(cancel)
        return self._write(cancel)


def export_layer_steps(
    result,
    out_dir: PathLike,
    layers: Optional[Sequence[str]] = None,
    formats: Union[str, Sequence[str]] = ("png",),
    options: Optional[DisplayOptions] = None,
    annotate: bool = False,
    filters: bool = False,
    model=None,
    source_path: Optional[PathLike] = None,
    force: bool = False,
) -> list[ExportStep]:
    """:func:`export_layers` as steps to run in order: one per layer, then the NPZ (when
    chosen), then the sidecar. Every check (unknown layers, existing files without
    ``force``) happens here, before any step runs; the folder is created here too.
    Each step returns the paths it wrote."""
    chosen = _format_set(formats)
    options = _check_options(options)
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
    upscale = int(options.upscale)
    out_dir = Path(out_dir)
    # Kernels are 1x1 to 11x11 pixels: at their true size a filter grid is a smudge.
    filter_upscale = max(upscale, FILTER_MIN_UPSCALE)

    # Plan every file first, so that an existing one stops the export before any write.
    filter_names = [name for name in names if _has_filters(result, name)] if filters else []
    plan = _plan(names, out_dir, chosen, annotate, filter_names)
    npz_path = out_dir / NPZ_NAME if "npz" in chosen else None
    json_path = out_dir / JSON_NAME
    refuse_existing(_targets(plan, out_dir, chosen), force)
    make_folder(out_dir)
    layer_records: list = []

    def write_layer(name, files, cancel) -> list[Path]:
        chw = to_numpy(result[name])
        layer_files: list[Path] = []
        try:
            grid, layout = render_grid(chw, options)
            filter_picture = None
            for kind, path in files:
                check(cancel)
                if kind in ("filters", "filters_annotated") and filter_picture is None:
                    from featurescope.core.render.filters import filter_grid

                    weight = _layer_weight(model, result, name)
                    filter_picture = filter_grid(weight, upscale=filter_upscale)
                if kind == "grid":
                    picture = grid
                elif kind == "annotated":
                    picture = annotate_grid(grid, layout, grid_title(name, model), upscale=upscale)
                elif kind == "filters":
                    picture = filter_picture[0]
                else:
                    picture = annotate_grid(filter_picture[0], filter_picture[1],
                                            grid_title(name, model, "filters"), upscale=filter_upscale)
                layer_files.append(write_png(path, picture, force=True))
        except BaseException:
            # A cancelled or failed layer leaves none of its files behind.
            for path in layer_files:
                try:
                    path.unlink()
                except OSError:
                    pass
            raise
        layer_records.append(layer_record(name, _info(result, name), chw, layout.order,
                                          layer_files, out_dir, layout.note))
        return layer_files

    def write_activations(cancel) -> list[Path]:
        arrays = {name: result[name] for name in names}
        arrays["input"] = result.input
        return [write_npz(npz_path, arrays, force=True)]

    def write_sidecar(cancel) -> list[Path]:
        description = layers_sidecar(result, model, layer_records, options, annotate,
                                     filter_upscale if filters else None, source_path, npz_path,
                                     out_dir)
        return [write_json(json_path, description, force=True)]

    steps = [ExportStep(f"Exporting {name}", lambda cancel, n=name, f=files: write_layer(n, f, cancel))
             for name, files in plan]
    if npz_path is not None:
        steps.append(ExportStep(f"Writing {NPZ_NAME}", write_activations))
    steps.append(ExportStep(f"Writing {JSON_NAME}", write_sidecar))
    return steps


def export_grid(result, layer: str, path: PathLike, options: Optional[DisplayOptions] = None,
                model=None, source_path: Optional[PathLike] = None, annotate: bool = False,
                force: bool = False) -> list[Path]:
    """One layer's grid as a PNG at ``path`` and a JSON sidecar beside it (``.json``).

    The PNG is :func:`render_grid` of ``result[layer]`` with ``options`` (annotated with
    :func:`grid_title` when ``annotate``); the sidecar is the provenance block plus the
    layer, its kind and shape, the grid geometry and the channel at each position.
    Neither file is written when either exists and ``force`` is False. Returns both paths.
    """
    options = _check_options(options)
    if layer not in result:
        raise ExportError(f"Layer {layer!r} was not captured, so it cannot be exported.")
    path = Path(path)
    sidecar_path = path.with_suffix(".json")
    refuse_existing((path, sidecar_path), force)
    chw = to_numpy(result[layer])
    rgb, layout = render_grid(chw, options)
    if annotate:
        rgb = annotate_grid(rgb, layout, grid_title(layer, model), upscale=options.upscale)
    info = _info(result, layer)
    sidecar = provenance(model, source_path, options, getattr(result, "model_name", None))
    sidecar.update({
        "png": path.name,
        "layer": layer,
        "kind": getattr(info, "kind", None),
        "shape": list(chw.shape),
        "annotated": bool(annotate),
        "grid": {"rows": layout.rows, "columns": layout.columns, "gap": layout.gap,
                 "tile_height": layout.tile_height, "tile_width": layout.tile_width},
        # position in the grid (row-major) -> true channel number
        "channel_order": [int(c) for c in np.asarray(layout.order).ravel()],
        "note": layout.note or None,
    })
    return write_all([lambda: write_png(path, rgb, force=force),
                      lambda: write_json(sidecar_path, sidecar, force=force)])


def export_activations(result, path: PathLike, model=None, source_path: Optional[PathLike] = None,
                       force: bool = False, progress: Optional[ProgressCallback] = None,
                       cancel: Optional[CancelToken] = None) -> list[Path]:
    """Every captured layer (keys = layer names) and ``"input"`` in one NPZ at ``path``,
    and a JSON sidecar beside it (the provenance block, the input, the layer shapes).

    Neither file is written when either exists and ``force`` is False. Returns both paths.
    """
    path = Path(path)
    sidecar_path = path.with_suffix(".json")
    refuse_existing((path, sidecar_path), force)
    from featurescope.core.io.provenance import input_record, predictions_record

    names = list(result.layers)

    def npz() -> Path:
        check(cancel)
        report(progress, 0, 2, f"Writing {path.name}")
        arrays = {name: result[name] for name in names}
        arrays["input"] = result.input
        return write_npz(path, arrays, force=force)

    def sidecar() -> Path:
        check(cancel)
        report(progress, 1, 2, f"Writing {sidecar_path.name}")
        block = provenance(model, source_path, None, getattr(result, "model_name", None))
        block.update({
            "npz": path.name,
            "input": input_record(result, model, "input"),
            "layers": [{"name": name, "shape": list(result[name].shape)} for name in names],
            "predictions": predictions_record(result),
        })
        return write_json(sidecar_path, block, force=force)

    written = write_all([npz, sidecar])  # no NPZ without its sidecar
    report(progress, 2, 2, "Export finished")
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
