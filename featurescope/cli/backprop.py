"""``featurescope backprop IMAGE --layer L --channel C``: a unit's pattern in the image,
guided backpropagation or the deconvnet of one channel or one position of its map
(core/analysis/guided.py), written beside the photo as the model saw it."""
from __future__ import annotations

from pathlib import Path

from featurescope.cli.arguments import add_model_options, non_negative_int, position
from featurescope.cli.common import load_model_from_args


def add_backprop_parser(commands) -> None:
    """The ``backprop`` subcommand's options (argparse only)."""
    backprop = commands.add_parser(
        "backprop", help="the input-space pattern that drives one channel (guided backprop)",
        description="Pass the gradient of one channel (the sum of its map, or its value at one "
                    "position with --at) back to the photo through the ReLUs by the guided "
                    "backpropagation rule or the deconvnet rule (the Deep Visualization "
                    "Toolbox's backprop view), and write one PNG: the photo as the model saw "
                    "it on the left, the pattern on the right (mid-grey is zero).")
    backprop.add_argument("image", metavar="IMAGE")
    add_model_options(backprop)
    backprop.add_argument("--layer", "-l", required=True, metavar="L",
                          help="the layer (names as `featurescope layers` prints them)")
    backprop.add_argument("--channel", "-c", required=True, type=non_negative_int, metavar="C")
    backprop.add_argument("--at", type=position, metavar="Y,X",
                          help="one feature-map position (row, column) instead of the whole channel")
    backprop.add_argument("--method", default="guided", choices=("guided", "deconvnet"),
                          help="guided (guided backpropagation, the default) or deconvnet")
    backprop.add_argument("--output", "-o", required=True, metavar="PATTERN.png")
    backprop.add_argument("--force", action="store_true", help="overwrite the file if it exists")


def run_backprop(args) -> int:
    """Write the photo beside the unit's pattern; print where it went."""
    import numpy as np

    from featurescope.core.analysis.guided import guided_backprop
    from featurescope.core.errors import ExportError
    from featurescope.core.io.images import load_image
    from featurescope.core.io.writers import refuse_existing, write_png

    out = Path(args.output)
    if out.suffix.lower() != ".png":
        raise ExportError(f"{out} should end in .png: the pattern is written as a PNG picture.")
    refuse_existing([out], args.force)
    image = load_image(args.image)
    model = load_model_from_args(args)
    found = guided_backprop(model, image, args.layer, args.channel, position=args.at, method=args.method)
    photo = np.asarray(model.deprocess(model.preprocess(image)))
    write_png(out, np.concatenate([photo, found.picture], axis=1), force=args.force)
    where = f" at y {found.position[0]}, x {found.position[1]}" if found.position is not None else ""
    print(f"{args.method} pattern of {args.layer} channel {found.channel}{where} "
          f"(activation {found.activation:.4g}) -> {out}")
    return 0
