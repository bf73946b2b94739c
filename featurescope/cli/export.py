"""``featurescope export``: feature grids (PNG), activations (NPZ), a JSON sidecar and,
with --gradcam, a Grad-CAM overlay, for one image or many (one sub-folder each)."""
from __future__ import annotations

import os
import sys

from featurescope.cli.common import (
    EXIT_USER_ERROR, ProgressBar, load_model_from_args, require_colormap, select_layers, warn,
)


def display_options(args):
    """The DisplayOptions that ``export``'s flags mean: the record the app's grid view
    draws with, so a CLI export is the picture the app shows with the same settings."""
    from featurescope.core.render.options import DisplayOptions

    return DisplayOptions(colormap=args.colormap, normalize=args.normalize, order=args.sort,
                          columns=getattr(args, "columns", None), upscale=args.upscale,
                          clip_percentile=getattr(args, "clip", None))


def run_export(args) -> int:
    """Export every image; 2 when some could not be read (the others are still written)."""
    from featurescope.core.errors import ExportError
    from featurescope.core.io.export_images import export_images, image_files

    if not args.layers.strip():
        raise ExportError("The --layers option is empty; give all, conv, pool or layer names "
                          "separated by commas (`featurescope layers` lists them).")
    clip = getattr(args, "clip", None)
    if clip is not None and not 0.0 <= clip < 50.0:
        raise ExportError(f"--clip must be a percentile from 0 up to (not including) 50, not {clip:g}.")
    require_colormap(args.colormap)
    options = display_options(args)
    files, batch = image_files(args.images)  # a missing file fails before the model loads
    if not batch:
        from featurescope.core.io.images import load_image

        load_image(files[0])  # so does one broken image
    model = load_model_from_args(args)
    from featurescope.core.analysis.dense_cam import parse_cam_target

    parse_cam_target(model, args.gradcam_target)  # a wrong target fails before any file
    names = select_layers(model, args.layers)
    formats = ("png", "npz") if args.format == "both" else (args.format,)
    bar = ProgressBar()

    def said(record) -> None:
        bar.finish()
        if record.error:
            print(f"featurescope: {record.error}", file=sys.stderr)
        else:
            print(f"{record.source.name} -> {record.folder}{os.sep} ({len(record.written)} files)")

    try:
        done = export_images(model, args.images, args.output, names, formats=formats, options=options,
                             annotate=args.annotate, filters=args.filters,
                             gradcam=args.gradcam or args.cam_method != "gradcam"
                             or bool(args.gradcam_target), cam_method=args.cam_method,
                             gradcam_target=parse_cam_target(model, args.gradcam_target),
                             gradcam_layer=args.gradcam_layer, force=args.force, warn=warn,
                             progress=bar, report=said)
    finally:
        bar.finish()
    failed = sum(1 for record in done if record.error)
    if failed:
        print(f"featurescope: {failed} of {len(done)} images could not be read and were skipped.",
              file=sys.stderr)
        return EXIT_USER_ERROR
    return 0
