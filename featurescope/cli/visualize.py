"""``featurescope visualize``: the image each channel of a layer responds to most (PNG per
channel plus a JSON sidecar), or with ``--hierarchy`` one poster from first layer to last."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from featurescope.cli.arguments import add_model_options, non_negative_int, positive_int


def add_visualize_parser(commands) -> None:
    """The ``visualize`` subcommand's options (argparse only)."""
    vis = commands.add_parser(
        "visualize", help="feature visualisation: the image each channel responds to most",
        description="Optimise an image for each channel of a layer (Fourier parameterisation, "
                    "decorrelated colour, random jitter/scale/rotation, Adam) and write one PNG "
                    "per channel and a JSON sidecar; --hierarchy writes one poster of a few "
                    "layers from the first to the last. Results are cached in the user cache "
                    "folder ($FEATURESCOPE_CACHE_DIR or ~/.cache/featurescope).")
    add_model_options(vis)
    vis.add_argument("--layer", "-l", metavar="L", help="the layer (see `featurescope layers`)")
    vis.add_argument("--channels", "-c", default=None, metavar="0-7|3,9,12",
                     help="which channels (default: the first 8)")
    vis.add_argument("--steps", type=positive_int, default=512, metavar="N",
                     help="optimisation steps (default 512)")
    vis.add_argument("--size", type=positive_int, default=None, metavar="S",
                     help="image side in pixels (default: the model's input size)")
    vis.add_argument("--seed", type=non_negative_int, default=0, metavar="S", help="random seed (default 0)")
    vis.add_argument("--objective", default="channel", choices=("channel", "neuron", "negative"),
                     help="channel: the whole map's mean; neuron: its centre; negative: the "
                          "least liked image (default: channel)")
    vis.add_argument("--hierarchy", action="store_true",
                     help="a poster of a few layers from first to last (OUT is then a .png file)")
    vis.add_argument("--image", metavar="IMAGE",
                     help="--hierarchy: show each layer's strongest channels for this photo "
                          "(default: channels 0, 1, ...)")
    vis.add_argument("--per-layer", type=positive_int, default=6, metavar="K",
                     help="--hierarchy: channels per layer (default 6)")
    vis.add_argument("--no-cache", action="store_true", help="neither read nor write the cache")
    vis.add_argument("--output", "-o", required=True, metavar="DIR|OUT.png",
                     help="the folder for the PNGs and the sidecar (--hierarchy: the poster file)")
    vis.add_argument("--force", action="store_true", help="overwrite existing files")


def run_visualize(args: argparse.Namespace) -> int:
    from featurescope.cli.common import ProgressBar, load_model_from_args
    from featurescope.core.io.writers import refuse_existing
    from featurescope.core.errors import OptvisError
    from featurescope.core.optvis.cache import OptvisCache

    if not args.hierarchy and not args.layer:
        raise OptvisError("visualize needs --layer L (or --hierarchy for a poster of several layers).")
    _check_limits(args)
    image = None
    if args.image:
        from featurescope.core.io.images import load_image

        image = load_image(args.image)  # fail before the model loads
    out = Path(args.output)
    if args.hierarchy and out.suffix.lower() != ".png":
        raise OptvisError(f"{out} should end in .png: the hierarchy poster is a PNG picture.")
    if args.hierarchy:
        refuse_existing([out], args.force)
    model = load_model_from_args(args)
    cache = None if args.no_cache else OptvisCache()
    bar = ProgressBar(prefix="visualize ")
    try:
        if args.hierarchy:
            return _poster(args, model, image, cache, bar, out)
        return _channels(args, model, cache, bar, out)
    finally:
        bar.finish()


def _check_limits(args) -> None:
    """Sizes and counts that cannot work, refused before the model loads."""
    from featurescope.core.errors import OptvisError
    from featurescope.core.optvis.hierarchy import MAX_PER_LAYER
    from featurescope.core.optvis.render import MAX_SIDE

    if args.size is not None and args.size > MAX_SIDE:
        raise OptvisError(f"--size {args.size} is too large to visualise (its activations would "
                          f"not fit in memory); use at most {MAX_SIDE} px.")
    if args.hierarchy and args.per_layer > MAX_PER_LAYER:
        raise OptvisError(f"--per-layer {args.per_layer} is more than a poster can show; use at "
                          f"most {MAX_PER_LAYER} channels per layer.")


def _channels(args, model, cache, bar, out: Path) -> int:
    from featurescope.cli.common import plural, select_layers
    from featurescope.core.io.provenance import provenance
    from featurescope.core.io.writers import make_folder, refuse_existing, write_json, write_png
    from featurescope.core.optvis.render import parse_channels, visualize

    layer = select_layers(model, args.layer)
    if len(layer) != 1:
        from featurescope.core.errors import OptvisError

        raise OptvisError(f"visualize takes one layer; {args.layer!r} names {len(layer)}.")
    layer = layer[0]
    info = model.find_layer_info(layer)
    channels = (list(range(min(8, info.out_channels))) if args.channels is None
                else parse_channels(args.channels))
    stem = layer.replace("#", "-")
    targets = [out / f"{stem}_ch{c:04d}.png" for c in channels] + [out / f"{stem}_visualize.json"]
    refuse_existing(targets, args.force)
    run = cache.visualize if cache is not None else visualize
    made = run(model, layer, channels, steps=args.steps, size=args.size, seed=args.seed,
               objective=args.objective, progress=bar)
    bar.finish()
    make_folder(out)
    for target, picture in zip(targets, made.images):
        write_png(target, picture, force=args.force)
    photos = made.photo if made.photo is not None else [float("nan")] * len(channels)
    sidecar = {"provenance": provenance(model), "layer": layer, "settings": made.settings,
               "channels": [{"channel": int(c), "activation": float(a), "file": t.name,
                             "photo": None if not p == p else float(p), "found": c not in made.failed}
                            for c, a, t, p in zip(made.channels, made.activations, targets, photos)]}
    write_json(targets[-1], sidecar, force=args.force)
    cached = len(made.settings.get("cached", []))
    print(f"{layer}: {plural(len(channels), 'channel')}, mean activation {made.activations.mean():.4g}"
          f"{f' ({cached} from the cache)' if cached else ''} -> {out}{os.sep}")
    _warn_failed(made)
    return 0


def _warn_failed(made) -> None:
    """One line when some pictures excite their channel no more than a photo does."""
    from featurescope.cli.common import warn

    failed = made.failed
    if failed:
        where = {c: i for i, c in enumerate(made.channels)}
        first = where[failed[0]]
        more = f" (and {len(failed) - 1} more channels)" if len(failed) > 1 else ""
        warn(f"no visualisation found for {made.layer} channel {failed[0]}{more}: the best "
             f"picture reaches {made.activations[first]:.4g}, a photo {made.photo[first]:.4g} "
             "(the objective's gradient vanishes on these images); its PNG is a failed attempt.")


def _poster(args, model, image, cache, bar, out: Path) -> int:
    from featurescope.cli.common import plural
    from featurescope.core.io.writers import write_png
    from featurescope.core.optvis.hierarchy import hierarchy, poster

    layers = None
    if args.layer:
        from featurescope.cli.common import select_layers

        layers = select_layers(model, args.layer)
    rows = hierarchy(model, layers, per_layer=args.per_layer, image=image, steps=args.steps,
                     size=args.size or 128, seed=args.seed, cache=cache, progress=bar)
    title = f"{model.display_name}: what channels look for, first layer to last"
    if args.image:
        title += f" (strongest for {Path(args.image).name})"
    write_png(out, poster(rows, title), force=args.force)
    bar.finish()
    print(f"hierarchy of {plural(len(rows), 'layer')} ({', '.join(r.layer for r in rows)}) -> {out}")
    return 0
