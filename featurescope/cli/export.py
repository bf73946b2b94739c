"""``featurescope export``: feature grids (PNG), activations (NPZ), a JSON sidecar and,
with --gradcam, a Grad-CAM overlay, for one image or many (one sub-folder each)."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Sequence

from featurescope.cli.common import (
    EXIT_USER_ERROR, IMAGE_SUFFIXES, ProgressBar, load_model_from_args, refuse_existing,
    require_colormap, select_layers, warn,
)


def _image_files(arguments: Sequence[str]) -> tuple[list[Path], bool]:
    """The image files named or inside the folders named; True when one sub-folder each."""
    from featurescope.core.errors import ImageError

    files: list[Path] = []
    had_folder = False
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            had_folder = True
            found = sorted(p for p in path.iterdir()
                           if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
            if not found:
                raise ImageError(f"The folder {path} holds no image files "
                                 f"({', '.join(s[1:] for s in IMAGE_SUFFIXES)}).")
            files.extend(found)
        elif not path.exists():
            raise ImageError(f"{path.name or path} does not exist (looked for {path}).")
        else:
            files.append(path)
    return files, had_folder or len(files) > 1


def _sub_folders(files: Sequence[Path], out: Path) -> list[Path]:
    from featurescope.core.io.writers import safe_filename

    used: set[str] = set()
    folders = []
    for path in files:
        stem = safe_filename(path.stem) or "image"
        candidate, n = stem, 2
        while candidate.lower() in used:
            candidate = f"{stem}_{n}"
            n += 1
        used.add(candidate.lower())
        folders.append(out / candidate)
    return folders


def display_options(args):
    """The DisplayOptions that ``export``'s flags mean: the record the app's grid view
    draws with, so a CLI export is the picture the app shows with the same settings."""
    from featurescope.core.render.options import DisplayOptions

    return DisplayOptions(colormap=args.colormap, normalize=args.normalize, order=args.sort,
                          columns=getattr(args, "columns", None), upscale=args.upscale,
                          clip_percentile=getattr(args, "clip", None))


def run_export(args) -> int:
    """Export every image; 2 when some could not be read (the others are still written)."""
    from featurescope.core.analysis.gradcam import compute_grad_cam, grad_cam_layer
    from featurescope.core.capture.capture import capture
    from featurescope.core.errors import ExportError, ImageError
    from featurescope.core.io.export import export_layers, export_targets
    from featurescope.core.io.gradcam_export import export_grad_cam, gradcam_targets
    from featurescope.core.io.images import load_image

    if not args.layers.strip():
        raise ExportError("The --layers option is empty; give all, conv, pool or layer names "
                          "separated by commas (`featurescope layers` lists them).")
    clip = getattr(args, "clip", None)
    if clip is not None and not 0.0 <= clip < 50.0:
        raise ExportError(f"--clip must be a percentile from 0 up to (not including) 50, not {clip:g}.")
    require_colormap(args.colormap)
    options = display_options(args)
    files, batch = _image_files(args.images)
    out = Path(args.output)
    folders = _sub_folders(files, out) if batch else [out]

    first_image = load_image(files[0]) if not batch else None  # fail fast on one broken image
    model = load_model_from_args(args)
    names = select_layers(model, args.layers)
    filter_layers = [i.name for i in model.layer_info if i.name in set(names) and i.kind == "Conv2d"] \
        if args.filters else []
    formats = ("png", "npz") if args.format == "both" else (args.format,)
    gradcam_layer = None
    if args.gradcam or args.gradcam_layer or args.cam_method != "gradcam":
        gradcam_layer, note = grad_cam_layer(model.layer_info, args.gradcam_layer, model.name)
        if note:
            warn(note)
    if gradcam_layer and not model.trained:
        warn(f"{model.name} is untrained (random weights), so its Grad-CAM means little.")

    if not args.force:  # check every image's files before writing the first one
        for folder in folders:
            extra = gradcam_targets(folder, gradcam_layer) if gradcam_layer else []
            refuse_existing(export_targets(names, folder, formats, args.annotate, filter_layers) + extra)

    failed = 0
    written_total = 0
    for number, (path, folder) in enumerate(zip(files, folders), 1):
        prefix = f"{number}/{len(files)} {path.name} " if batch else f"{path.name} "
        try:
            image = first_image if (number == 1 and first_image is not None) else load_image(path)
        except ImageError as error:
            print(f"featurescope: {error}", file=sys.stderr)
            failed += 1
            continue
        bar = ProgressBar(prefix=prefix)
        try:
            # Every layer: capture them all, so the pass runs to the end and the
            # sidecar gets the predictions (a partial capture stops early).
            every = len(names) == len(model.layers) and set(names) == set(model.layers)
            result = capture(model, image, layers=None if every else names, progress=None)
            # Grad-CAM first: a model it cannot explain (a dict output, no gradients)
            # stops this image before any file is written, not halfway.
            cam = compute_grad_cam(model, result.input, gradcam_layer, method=args.cam_method) \
                if gradcam_layer else None
            written = export_layers(
                result, folder, layers=names, formats=formats, options=options,
                annotate=args.annotate, filters=args.filters, model=model, source_path=path,
                force=args.force, progress=bar,
            )
            if gradcam_layer:
                png, _ = gradcam_targets(folder, gradcam_layer)
                written += export_grad_cam(model, result, png, cam=cam,
                                           source_path=path, force=args.force)
        finally:
            bar.finish()
        written_total += len(written)
        print(f"{path.name} -> {folder}{os.sep} ({len(written)} files)")
    if failed:
        print(f"featurescope: {failed} of {len(files)} images could not be read and were skipped.",
              file=sys.stderr)
        return EXIT_USER_ERROR
    return 0
