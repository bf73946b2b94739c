"""Export image files and folders: ``featurescope export``'s work, for any caller.

One image is exported into the output folder itself; several (or a folder of them) get
one sub-folder each, named after the image (``cat``, ``cat_2`` for a second ``cat.png``).
Per image: every chosen layer's grid (and NPZ, annotated grid, filters) through
:func:`~featurescope.core.io.export.export_layers`, and with Grad-CAM the overlay of
:func:`~featurescope.core.io.gradcam_export.export_grad_cam` at the layer
:func:`~featurescope.core.analysis.gradcam.grad_cam_layer` picks.

Every file of every image is checked before the first is written, by the one "exists,
confirm, force" check (:func:`~featurescope.core.io.writers.check_overwrite`): the CLI
refuses unless ``--force``, the app asks through ``confirm``. An image that cannot be
read is skipped and said; the others are still written.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

from featurescope.core.errors import ImageError
from featurescope.core.io.images import IMAGE_SUFFIXES, is_image_file
from featurescope.core.io.writers import Confirm, PathLike, check_overwrite, safe_filename
from featurescope.core.progress import CancelToken, ProgressCallback, check
from featurescope.core.render.options import DisplayOptions


@dataclass
class ImageExport:
    """What happened to one image: the files written into ``folder``, or ``error`` (one
    sentence) when it could not be read and was skipped."""

    source: Path
    folder: Path
    written: list[Path] = field(default_factory=list)
    error: str = ""


def image_files(arguments: Sequence[PathLike]) -> tuple[list[Path], bool]:
    """The image files named, and those directly inside the folders named (sorted,
    hidden files skipped); True when the export makes one sub-folder each (a folder or
    several images). ImageError for a missing path or a folder without images."""
    files: list[Path] = []
    had_folder = False
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            had_folder = True
            found = sorted(p for p in path.iterdir() if p.is_file() and is_image_file(p))
            if not found:
                raise ImageError(f"The folder {path} holds no image files "
                                 f"({', '.join(s[1:] for s in IMAGE_SUFFIXES)}).")
            files.extend(found)
        elif not path.exists():
            raise ImageError(f"{path.name or path} does not exist (looked for {path}).")
        else:
            files.append(path)
    if not files:
        raise ImageError("No image was given to export.")
    return files, had_folder or len(files) > 1


def sub_folders(files: Sequence[Path], out: PathLike) -> list[Path]:
    """One sub-folder of ``out`` per image, named after it, unique ignoring case."""
    used: set[str] = set()
    folders = []
    for path in files:
        stem = safe_filename(Path(path).stem) or "image"
        candidate, n = stem, 2
        while candidate.lower() in used:
            candidate = f"{stem}_{n}"
            n += 1
        used.add(candidate.lower())
        folders.append(Path(out) / candidate)
    return folders


def export_images(model, sources: Sequence[PathLike], out: PathLike, layers: Sequence[str], *,
                  formats: Sequence[str] = ("png",), options: Optional[DisplayOptions] = None,
                  annotate: bool = False, filters: bool = False, gradcam: bool = False,
                  gradcam_layer: Optional[str] = None, cam_method: str = "gradcam",
                  gradcam_target: Optional[int] = None, force: bool = False,
                  confirm: Optional[Confirm] = None, warn: Optional[Callable[[str], None]] = None,
                  progress: Optional[ProgressCallback] = None,
                  cancel: Optional[CancelToken] = None,
                  report: Optional[Callable[[ImageExport], None]] = None) -> list[ImageExport]:
    """Export each image of ``sources`` (files and folders) into ``out``; see the module
    docstring. Returns one :class:`ImageExport` per image (``report`` gets each as soon
    as it is done), or [] when ``confirm`` declined to replace existing files.

    ``model``: a LoadedModel; ``layers``: its layer names; ``formats``: "png", "npz";
    ``gradcam`` (or a ``gradcam_layer``): also ``gradcam_<layer>.png`` and its JSON, made
    with ``cam_method`` (core/analysis/cam_methods.py) for ``gradcam_target`` (a class, a
    detector's box rank; None: the default of compute_grad_cam).
    ``warn(sentence)`` hears what the user should know before the work starts (the
    Grad-CAM layer used instead of the one asked, an untrained model's Grad-CAM).
    ``progress(done, total, text)`` counts one image's files, its text starting with
    the image ("2/5 cat.jpg"). Raises ImageError (a missing path, an empty folder, a
    single image that cannot be read), ModelError (the Grad-CAM layer, a network that
    fails), ExportError / FileExistsExportError (the files).
    """
    from featurescope.core.analysis.gradcam import compute_grad_cam, grad_cam_layer, layer_infos_for
    from featurescope.core.capture.capture import capture
    from featurescope.core.io.export import export_layers, export_targets
    from featurescope.core.io.gradcam_export import export_grad_cam, gradcam_targets
    from featurescope.core.io.images import load_image

    files, batch = image_files(sources)
    folders = sub_folders(files, out) if batch else [Path(out)]
    first_image = load_image(files[0]) if not batch else None  # fail fast on one broken image
    names = list(layers)
    chosen = set(names)
    filter_layers = [i.name for i in model.layer_info if i.name in chosen and i.kind == "Conv2d"] \
        if filters else []
    cam_layer = None
    if gradcam or gradcam_layer:
        cam_layer, note = grad_cam_layer(layer_infos_for(model, gradcam_layer), gradcam_layer, model.name)
        if note and warn is not None:
            warn(note)
        if not model.trained and warn is not None:
            warn(f"{model.name} is untrained (random weights), so its Grad-CAM means little.")

    targets = []
    for folder in folders:
        targets += export_targets(names, folder, formats, annotate, filter_layers)
        targets += gradcam_targets(folder, cam_layer) if cam_layer else []
    force = check_overwrite(targets, force, confirm)
    if force is None:
        return []

    # Every layer: capture them all, so the pass runs to the end and the sidecar gets
    # the predictions (a partial capture stops early).
    every = len(names) == len(model.layers) and chosen == set(model.layers)
    done: list[ImageExport] = []
    for number, (path, folder) in enumerate(zip(files, folders), 1):
        check(cancel)
        record = ImageExport(source=path, folder=folder)
        prefix = f"{number}/{len(files)} {path.name} " if batch else f"{path.name} "
        try:
            image = first_image if first_image is not None else load_image(path)
        except ImageError as error:
            record.error = str(error)
        else:
            result = capture(model, image, layers=None if every else names, cancel=cancel)
            # Grad-CAM first: a model it cannot explain (a dict output, no gradients)
            # stops this image before any file is written, not halfway.
            cam = compute_grad_cam(model, result.input, cam_layer, gradcam_target, method=cam_method) \
                if cam_layer else None
            record.written = export_layers(
                result, folder, layers=names, formats=formats, options=options,
                annotate=annotate, filters=filters, model=model, source_path=path, force=force,
                progress=_prefixed(progress, prefix), cancel=cancel)
            if cam_layer:
                png, _ = gradcam_targets(folder, cam_layer)
                record.written += export_grad_cam(model, result, png, cam=cam, source_path=path,
                                                  force=force)
        done.append(record)
        if report is not None:
            report(record)
    return done


def _prefixed(progress: Optional[ProgressCallback], prefix: str) -> Optional[ProgressCallback]:
    if progress is None:
        return None
    return lambda done, total, text="": progress(done, total, f"{prefix}{text}")
