"""``featurescope atlas``: every unit of a model on one static site.

    featurescope atlas --images ~/data/val --layers layer4 -o site/
    featurescope atlas --index photos.fsindex --channels 0-63 --engine ray -o site/
"""
from __future__ import annotations

import sys

from featurescope.cli.arguments import add_model_options, positive_int
from featurescope.cli.common import ProgressBar, load_model_from_args


def add_atlas_parser(commands) -> None:
    """The ``atlas`` subcommand's options (argparse only)."""
    atlas = commands.add_parser(
        "atlas", help="a static site with every unit of a model (visualisations, examples, labels)",
        description="Build a static site (open index.html from a folder or a USB stick, no server, "
                    "no network): one page per layer with every unit as a tile, one page per unit at "
                    "SITE/<layer>/<channel>.html with its feature visualisations, its top dataset "
                    "examples cropped to what it saw, its label from the folder's sub-folders, and "
                    "SITE/atlas.json. Resumable: Ctrl-C and the same command continues; adding layers "
                    "or channels draws only those. Pictures are shared with the app's Visualise tab.")
    add_model_options(atlas)
    source = atlas.add_mutually_exclusive_group(required=True)
    source.add_argument("--index", metavar="INDEX", help="an index built with `featurescope index`")
    source.add_argument("--images", metavar="FOLDER",
                        help="a folder of images, indexed first into SITE/examples-index.npz "
                             "(one sub-folder per class or concept gives every unit a label)")
    atlas.add_argument("--layers", "-l", default=None, metavar="all|conv|pool|NAME[,NAME...]",
                       help="which layers (default: every layer of the index)")
    atlas.add_argument("--channels", "-c", default="all", metavar="all|0-63|3,9",
                       help="which units of each layer (default: all)")
    atlas.add_argument("--steps", type=positive_int, default=256, metavar="N",
                       help="optimisation steps per picture (default 256)")
    atlas.add_argument("--size", type=positive_int, default=128, metavar="PX",
                       help="side of each visualisation in pixels (default 128)")
    atlas.add_argument("--top", "-k", type=positive_int, default=9, metavar="K",
                       help="dataset examples per unit (default 9)")
    atlas.add_argument("--engine", default="local", choices=("local", "ray"),
                       help="local (this machine) or ray (actors holding the model; featurescope[cluster])")
    atlas.add_argument("--workers", type=positive_int, default=None, metavar="N",
                       help="Ray actors (default 2); for --images also the decoding processes")
    atlas.add_argument("--ray-address", metavar="ADDR", help="a Ray cluster (default: RAY_ADDRESS, else a local Ray)")
    atlas.add_argument("--output", "-o", required=True, metavar="SITE", help="the site's folder (created if needed)")


def run_atlas(args) -> int:
    """Build (or continue) an atlas; Ctrl-C writes what is done and exits 130."""
    from featurescope.cli.common import select_layers
    from featurescope.core.atlas.build import build_atlas
    from featurescope.core.atlas.units import AtlasSettings

    model = load_model_from_args(args)
    layers = select_layers(model, args.layers) if args.layers else None
    settings = AtlasSettings(steps=args.steps, size=args.size, top=args.top)
    bar = ProgressBar(prefix="atlas ")
    try:
        report = build_atlas(model, args.output, index=args.index, images=args.images, layers=layers,
                             channels=args.channels, settings=settings, engine=args.engine,
                             workers=args.workers, ray_address=args.ray_address, progress=bar)
    except KeyboardInterrupt:
        bar.finish()
        print(f"featurescope: stopped; {args.output} shows what is done, run the same command to "
              "continue.", file=sys.stderr)
        raise
    finally:
        bar.finish()
    rate = f", {report.units_per_second:.2f} units/s" if report.rendered else " (all from the cache)"
    print(f"{report.site}: {report.units} units{rate}")
    return 0
