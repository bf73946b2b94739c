"""``featurescope circuit``: which channels of an earlier layer build one channel, on one photo.

Prints the source channels ranked by contribution (those that excite the channel and
those that inhibit it) and the switch-off check; ``--json`` prints the same as JSON;
``-o trail.png`` also walks back from the channel to the first layer and writes the
trail as one picture.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from featurescope.cli.arguments import add_model_options, non_negative_int, position, positive_int


def add_circuit_parser(commands) -> None:
    """The ``circuit`` subcommand's options (argparse only)."""
    parser = commands.add_parser(
        "circuit", help="which channels of an earlier layer build one channel (circuits)",
        description="Rank the channels of a source layer by their contribution to one channel of "
                    "a layer on this photo (gradient x activation summed over positions): those "
                    "that excite it and those that inhibit it, with the check of switching the "
                    "top 5 off against the 5 most active and 5 random ones. --layer class "
                    "--channel K starts from class K's score. -o walks back to the first layer "
                    "and writes the trail as one picture.")
    parser.add_argument("image", metavar="IMAGE")
    add_model_options(parser)
    parser.add_argument("--layer", "-l", required=True, metavar="L",
                        help="the target layer (names as `featurescope layers` prints them), or class")
    parser.add_argument("--channel", "-c", required=True, type=non_negative_int, metavar="C",
                        help="the target channel (or class index with --layer class)")
    parser.add_argument("--from", dest="source", metavar="S",
                        help="the source layer (default: the captured layer that feeds L most directly)")
    parser.add_argument("--at", type=position, metavar="Y,X",
                        help="explain the channel's value at this position of its map, not its mean")
    parser.add_argument("--top", "-k", type=positive_int, default=8, metavar="K",
                        help="sources to list (default 8)")
    parser.add_argument("--steps", type=positive_int, metavar="N",
                        help="-o: stop the walk after N steps (default: down to the first layer)")
    parser.add_argument("--json", action="store_true",
                        help='print {"layer", "channel", "source", "sources": [...], "check": {...}}')
    parser.add_argument("--output", "-o", metavar="TRAIL.png",
                        help="walk back to the first layer and write the trail as one picture")
    parser.add_argument("--force", action="store_true", help="overwrite TRAIL.png if it exists")


def run_circuit(args: argparse.Namespace) -> int:
    from featurescope.cli.common import ProgressBar, load_model_from_args
    from featurescope.core.circuits.circuit import circuit
    from featurescope.core.io.images import load_image
    from featurescope.core.io.writers import refuse_existing
    from featurescope.core.models.spec import require_gradients

    image = load_image(args.image)
    out = Path(args.output) if args.output else None
    if out is not None:
        refuse_existing([out], args.force)
    model = load_model_from_args(args)
    require_gradients(model, "A circuit")
    found = circuit(model, image, args.layer, args.channel, source=args.source, position=args.at, top=args.top)
    trail = None
    if out is not None:
        from featurescope.core.circuits.picture import trail_picture
        from featurescope.core.circuits.trail import walk_back
        from featurescope.core.io.writers import write_png

        bar = ProgressBar(prefix="walking back ")
        try:
            trail = walk_back(model, image, args.layer, args.channel, steps=args.steps, position=args.at,
                              progress=bar)
        finally:
            bar.finish()
        write_png(out, trail_picture(model, image, trail), force=args.force)
    if args.json:
        record = found.as_dict()
        if trail is not None:
            record["trail"] = [{"layer": s.layer, "channel": s.channel, "source": s.source} for s in trail]
            record["picture"] = str(out)
        print(json.dumps(record))
        return 0
    _print(found)
    if trail is not None:
        path = " <- ".join(f"{s.layer}:{s.channel}" for s in trail)
        print(f"\ntrail ({len(trail)} steps): {path} <- {trail[-1].source}:"
              f"{(trail[-1].excitatory or trail[-1].sources)[0].channel} -> {out}")
    return 0


def _print(found) -> None:
    from featurescope.core.circuits.check import describe_check

    where = f" at {found.position[0]},{found.position[1]}" if found.position is not None else ""
    name = f"class {found.channel}" + (f" ({found.label})" if found.label else "") if found.layer == "class" \
        else f"{found.layer} channel {found.channel}{where}"
    print(f"{name} = {found.value:.4g}; its inputs from {found.source} contribute {found.total:.4g} in all")
    for title, sources in (("excite", found.excitatory), ("inhibit", found.inhibitory)):
        if not sources:
            continue
        print(f"\n{title}:")
        print(f"  {'channel':>7}  {'contribution':>12}  {'activation':>10}")
        for s in sources:
            print(f"  {s.channel:>7}  {s.contribution:>+12.4g}  {s.activation:>10.4g}")
    if found.check is not None:
        print("\n" + describe_check(found.check))
    for note in found.notes:
        print(f"note: {note}")
