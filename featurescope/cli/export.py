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
    from featurescope.core.io.export import safe_filename

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


def run_export(args) -> int:
    """Export every image; 2 when some could not be read (the others are still written)."""
    from featurescope.core.capture.capture import capture
    from featurescope.core.errors import ImageError
    from featurescope.core.io.export import export_layers, export_targets
    from featurescope.core.io.images import load_image

    require_colormap(args.colormap)
    files, batch = _image_files(args.images)
    out = Path(args.output)
    folders = _sub_folders(files, out) if batch else [out]

    first_image = load_image(files[0]) if not batch else None  # fail fast on one broken image
    model = load_model_from_args(args)
    names = select_layers(model, args.layers)
    filter_layers = [i.name for i in model.layer_info if i.name in set(names) and i.kind == "Conv2d"] \
        if args.filters else []
    formats = ("png", "npz") if args.format == "both" else (args.format,)
    gradcam_layer = _gradcam_layer(model, args) if (args.gradcam or args.gradcam_layer) else None
    if gradcam_layer and not model.trained:
        warn(f"{model.name} is untrained (random weights), so its Grad-CAM means little.")

    if not args.force:  # check every image's files before writing the first one
        for folder in folders:
            extra = _gradcam_targets(folder, gradcam_layer) if gradcam_layer else []
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
            written = export_layers(
                result, folder, layers=names, formats=formats, normalize=args.normalize,
                colormap=args.colormap, order=args.sort, upscale=args.upscale,
                annotate=args.annotate, filters=args.filters, model=model, source_path=path,
                force=args.force, progress=bar,
            )
            if gradcam_layer:
                written += _write_gradcam(model, result, folder, gradcam_layer, path, args.force)
        finally:
            bar.finish()
        written_total += len(written)
        print(f"{path.name} -> {folder}{os.sep} ({len(written)} files)")
    if failed:
        print(f"featurescope: {failed} of {len(files)} images could not be read and were skipped.",
              file=sys.stderr)
        return EXIT_USER_ERROR
    return 0


def _gradcam_layer(model, args) -> str:
    """The conv layer --gradcam explains: --gradcam-layer, else the network's last conv."""
    from featurescope.core.errors import ModelError

    convs = [i.name for i in model.layer_info if i.kind == "Conv2d"]
    if args.gradcam_layer:
        if args.gradcam_layer not in convs:
            raise ModelError(f"{args.gradcam_layer!r} is not a convolution of {model.name}, so it has "
                             f"no Grad-CAM; `featurescope layers --model {model.name}` lists them.")
        return args.gradcam_layer
    if not convs:
        raise ModelError(f"{model.name} has no convolution layer, so it has no Grad-CAM.")
    return convs[-1]


def _gradcam_targets(folder: Path, layer: str) -> list[Path]:
    from featurescope.core.io.export import safe_filename

    stem = f"gradcam_{safe_filename(layer)}"
    return [folder / f"{stem}.png", folder / f"{stem}.json"]


def _write_gradcam(model, result, folder: Path, layer: str, source: Path, force: bool) -> list[Path]:
    """The Grad-CAM overlay (top class) PNG and a small JSON about it; atomic writes."""
    from featurescope.core.io.export import write_json, write_png
    from featurescope.core.analysis.gradcam import compute_grad_cam, overlay

    cam = compute_grad_cam(model, result.input, layer)
    picture = overlay(model.deprocess(result.input), cam.map, colormap="inferno", alpha=0.5)
    png, sidecar = _gradcam_targets(folder, layer)
    written = [write_png(png, picture, force=force)]
    written.append(write_json(sidecar, {
        "source": str(source), "model": model.name, "weights": model.weights_label,
        "trained": bool(model.trained), "layer": layer, "class_index": cam.target,
        "class_label": cam.label, "score": cam.score, "colormap": "inferno", "alpha": 0.5,
        "input_size": list(cam.map.shape), "layer_map_size": list(cam.layer_map.shape),
    }, force=force))
    return written
