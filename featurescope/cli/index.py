"""``featurescope index`` and ``featurescope examples``: a folder's dataset examples.

    featurescope index FOLDER -o photos.fsindex          top 9 images per channel
    featurescope examples photos.fsindex --layer L --channel C -o sheet.png
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from featurescope.cli.common import ProgressBar, load_model_from_args, plural, warn

DEFAULT_INDEX = "featurescope.fsindex"


def run_index(args) -> int:
    """Build or continue the index of a folder; Ctrl-C saves and exits 130."""
    from featurescope.cli.common import select_layers
    from featurescope.core.index.build import build_index

    address = args.ray_address or os.environ.get("RAY_ADDRESS")
    if args.engine == "ray":  # an unreachable cluster is said before the model loads
        from featurescope.core.cluster import check_address

        check_address(address)
    model = load_model_from_args(args)
    layers = select_layers(model, args.layers)
    output = Path(args.output or DEFAULT_INDEX)
    bar = ProgressBar(prefix="indexing ")
    try:
        index = build_index(model, args.folder, layers=layers, top=args.top, batch_size=args.batch,
                            workers=args.workers, engine=args.engine, progress=bar, output=output,
                            rebuild=args.rebuild, ray_address=address,
                            checkpoint_seconds=args.checkpoint_every)
    except KeyboardInterrupt:
        bar.finish()
        print(f"featurescope: stopped; {output} keeps what was read, run the same command to "
              "resume.", file=sys.stderr)
        raise
    finally:
        bar.finish()
    skipped = index.skipped
    print(f"{output}: {plural(index.images, 'image')}, {plural(len(index.layers), 'layer')}, "
          f"top {index.k} per channel" + (f", {plural(len(skipped), 'file')} skipped" if skipped else ""))
    for entry in skipped[:20]:
        warn(f"skipped {entry['path']}: {entry['reason']}")
    if len(skipped) > 20:
        warn(f"... and {len(skipped) - 20} more skipped files (listed in the index).")
    return 0


def run_examples(args) -> int:
    """A channel's top images: JSON, a table, or a contact sheet PNG."""
    from featurescope.core.index.sheet import printable
    from featurescope.core.index.store import open_index

    index = open_index(args.index)
    root = Path(args.root).expanduser() if args.root else None
    if root is not None and not root.is_dir():
        from featurescope.core.errors import IndexFileError

        raise IndexFileError(f"--root {root} is not a folder; name the folder the indexed images moved to.")
    examples = index.top(args.layer, args.channel, args.top or index.k, root=root)
    dead = args.channel in index.dead_channels(args.layer)
    problems = [(e, e.problem()) for e in examples]
    problems = [(e, p) for e, p in problems if p]
    if problems:
        where = index.folder if root is None else root
        hint = (f"; {where} no longer exists: if the folder moved, pass --root NEW_FOLDER"
                if not where.is_dir() else "")
        listed = ", ".join(f"{printable(Path(e.path).name)} ({p})" for e, p in problems[:3])
        more = f" and {len(problems) - 3} more" if len(problems) > 3 else ""
        warn(f"{len(problems)} of {len(examples)} example{'s' if len(examples) != 1 else ''} "
             f"changed since indexing: {listed}{more}{hint}.")
    incomplete = "" if index.complete else (
        f"index incomplete: {index.images:,} of {plural(index.images + index.unread, 'image')} read; "
        "run the same `featurescope index` command to finish it")
    if incomplete and not args.json:
        warn(incomplete + ".")
    if args.output:
        from featurescope.core.index.sheet import contact_sheet, overlay_crop
        from featurescope.core.io.writers import write_png

        crops = None
        if args.overlay:
            from featurescope.core.models.load import load_model

            prep = index.preprocessing
            model = load_model(index.model.get("source") or index.model["name"],
                               weights=_weights_of(index, args), device="cpu",
                               input_size=prep.crop, mean=prep.mean, std=prep.std)
            crops = [None if e.problem() == "missing" else overlay_crop(model, e, args.layer, args.channel)
                     for e in examples]
        title = f"{args.layer} channel {args.channel} - {index.model.get('display_name')}"
        write_png(args.output, contact_sheet(examples, crops=crops, title=title, note=incomplete),
                  force=args.force)
    if args.json:
        print(json.dumps({"layer": args.layer, "channel": args.channel, "complete": index.complete,
                          "images": index.images, "unread": index.unread,
                          "never_fired": dead, "examples": [e.to_dict() for e in examples]}, indent=2))
    elif not args.output:
        note = " (never fired on this collection)" if dead else ""
        print(f"{args.layer} channel {args.channel}{note}:")
        for e in examples:
            mark = f"  [{e.problem()}]" if e.problem() else ""
            print(f"{e.rank + 1:>3}  {e.activation:10.4f}  at {e.position}  box {list(e.box)}  "
                  f"{printable(e.path)}{mark}")
    return 0


def _weights_of(index, args) -> str:
    if args.weights:
        return args.weights
    return "default" if index.model.get("trained") else "none"


def add_parsers(commands, add_model_options, positive_int) -> None:
    """The ``index`` and ``examples`` subcommands (called by cli.main.build_parser)."""
    from featurescope.cli.arguments import positive_float

    index = commands.add_parser(
        "index", help="find the images of a folder that excite each channel most",
        description="Run every image under FOLDER (recursively) through the network and keep, "
                    "per layer and channel, the K images with the highest activation (the "
                    "spatial maximum of the channel's map) and where it was, plus each "
                    "channel's mean maximum and how often it fired. Ctrl-C saves; running "
                    "the same command again resumes, and after adding images reads only the "
                    "new ones.")
    index.add_argument("folder", metavar="FOLDER")
    add_model_options(index)
    index.add_argument("--layers", "-l", default="conv,pool", metavar="GROUP|NAME[,...]",
                       help="module names and groups conv, pool, act, block, all; default conv,pool")
    index.add_argument("--top", "-k", type=positive_int, default=9, metavar="K",
                       help="images kept per channel (default 9)")
    index.add_argument("--batch", type=positive_int, default=32, metavar="N",
                       help="images per forward pass (default 32)")
    index.add_argument("--workers", type=int, default=None, metavar="N",
                       help="decoding processes (default: one per spare core); Ray: model actors")
    index.add_argument("--engine", default="local", choices=("local", "ray"),
                       help="local (this machine) or ray (Ray Data; needs featurescope[cluster])")
    index.add_argument("--ray-address", metavar="ADDR",
                       help="a Ray cluster (default: RAY_ADDRESS, else a local Ray)")
    index.add_argument("--rebuild", action="store_true",
                       help="start the index again instead of continuing it")
    index.add_argument("--checkpoint-every", type=positive_float, default=30.0, metavar="SECONDS",
                       help="save the index this often while it runs (default 30)")
    index.add_argument("--output", "-o", metavar="INDEX",
                       help=f"the index file (default: {DEFAULT_INDEX})")

    examples = commands.add_parser(
        "examples", help="a channel's top images from an index (JSON or a contact sheet)",
        description="List the images of an index that excite one channel most, with the "
                    "position of the maximum and its receptive field in the original image "
                    "(box = top, left, bottom, right), or draw them as a contact sheet.")
    examples.add_argument("index", metavar="INDEX")
    examples.add_argument("--layer", "-l", required=True, metavar="L")
    examples.add_argument("--channel", "-c", required=True, type=int, metavar="C")
    examples.add_argument("--top", "-k", type=positive_int, metavar="K",
                          help="how many (default: all the index keeps)")
    examples.add_argument("--json", action="store_true",
                          help='print {"examples": [{"path", "activation", "position", "box"}]}')
    examples.add_argument("--output", "-o", metavar="SHEET.png", help="write a contact sheet")
    examples.add_argument("--overlay", action="store_true",
                          help="lay the channel's map over each crop (loads the model)")
    examples.add_argument("--weights", "-w", metavar="W",
                          help="weights for --overlay (default: the indexed model's default "
                               "weights, or none if it was untrained)")
    examples.add_argument("--force", action="store_true", help="overwrite the sheet if it exists")
    examples.add_argument("--root", metavar="FOLDER",
                          help="where the indexed folder is now, if it was moved or copied")
