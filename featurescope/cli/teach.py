"""``featurescope explain``, ``overview`` and ``ablate``: the lessons on the real network.

explain: the arithmetic behind one value of a feature map (window, kernel, products,
sum, bias, result, and the captured value it equals); overview: one picture from the
photo to the last layer; ablate: the predictions with some channels switched off.
"""
from __future__ import annotations

import json
from pathlib import Path

from featurescope.cli.common import load_model_from_args, plural, require_colormap, select_layers



def _number(value: float, room: int) -> str:
    """``value`` in at most ``room`` characters: 4 significant digits, fewer if it must."""
    for form in (".4g", ".3g", ".2g", ".1g", ".0e"):
        text = f"{value:{form}}"
        if len(text) <= room:
            return text
    return text


def channel_ranges(channels) -> str:
    """[0, 1, 2, 3, 7, 9, 10] -> "0-3, 7, 9-10"; a long list ends in "... (N channels)"."""
    runs = []
    for c in sorted(set(int(c) for c in channels)):
        if runs and c == runs[-1][1] + 1:
            runs[-1][1] = c
        else:
            runs.append([c, c])
    text = [f"{a}-{b}" if b > a else f"{a}" for a, b in runs]
    if len(text) > 12:
        return ", ".join(text[:10]) + f", ... ({len(set(channels)):,} channels)"
    return ", ".join(text)


def _matrix(rows, cols, values, mask=None, width: int = 9) -> list[str]:
    """A kh x kw block of numbers with its input rows and columns; padding as 'pad'."""
    head = " " * 8 + "".join(f"{'x ' + str(c):>{width}}" for c in cols)
    lines = [head]
    for i, r in enumerate(rows):
        cells = []
        for j, _c in enumerate(cols):
            value = float(values[i][j]) + 0.0  # no "-0"
            if mask is not None and mask[i][j]:
                cells.append(f"{'0 pad' if value == 0 else 'pad':>{width}}")
            else:
                cells.append(f" {_number(value, width - 1):>{width - 1}}")  # a space between numbers
        lines.append(f"{'y ' + str(r):>7} " + "".join(cells))
    return lines


def run_explain(args) -> int:
    """Print (or --json) how one output value of a conv or pooling layer is computed."""
    from featurescope.core.analysis.arithmetic import describe_steps, explain_position
    from featurescope.core.capture.capture import capture
    from featurescope.core.io.images import load_image

    image = load_image(args.image)
    model = load_model_from_args(args)
    layer = select_layers(model, args.layer)[0]
    result = capture(model, image)
    y, x = args.at
    e = explain_position(model, result, layer, args.channel, y, x)
    if args.json:
        print(json.dumps(e.as_dict()))
        return 0
    steps = describe_steps(e)
    print(steps[0])
    for line in steps[1:-1]:
        print("  " + line)
    shown = e.input_channels if len(e.input_channels) <= args.max_channels else e.input_channels[:args.max_channels]
    for k, c in enumerate(shown):
        print(f"\ninput channel {c}:")
        print("\n".join(_matrix(e.rows, e.cols, e.window[k], e.padded)))
        if e.kernel is not None:
            print(f"kernel [{e.channel}, {k}]:")
            print("\n".join(_matrix(e.rows, e.cols, e.kernel[k])))
            print("products:")
            print("\n".join(_matrix(e.rows, e.cols, e.products[k])))
            print(f"  sum over this channel: {e.products[k].sum():.6g}")
    if len(shown) < len(e.input_channels):
        print(f"\n... {len(e.input_channels) - len(shown)} more input channels "
              f"(--max-channels N shows more, --json gives all)")
    print()
    print(steps[-1] if not e.notes else "\n".join(steps[-1 - len(e.notes):]))
    return 0


def run_overview(args) -> int:
    """Write one labelled picture: the photo and a tile per layer, in network order."""
    from featurescope.core.analysis.overview import overview_poster
    from featurescope.core.capture.capture import capture
    from featurescope.core.io.images import load_image
    from featurescope.core.io.writers import refuse_existing, write_png
    from featurescope.core.render.annotate import model_label

    require_colormap(args.colormap)
    out = Path(args.output)
    if out.suffix.lower() != ".png":
        from featurescope.core.errors import ExportError

        raise ExportError(f"{out} should end in .png: the overview is a PNG picture.")
    refuse_existing([out], args.force)
    image = load_image(args.image)
    model = load_model_from_args(args)
    result = capture(model, image)
    top = result.predictions(1)
    title = f"{Path(args.image).name} through {model_label(model)}"
    if top:
        title += f"  ->  {top[0].label} ({top[0].probability:.0%})"
    poster = overview_poster(result, model.deprocess(result.input), reduction=args.reduction,
                             colormap=args.colormap, width=args.width, title=title)
    write_png(out, poster, force=args.force)
    print(f"{Path(args.image).name}: {plural(len(result.layers), 'layer')} -> {out}")
    return 0


def run_ablate(args) -> int:
    """Print the top predictions before and after zeroing channels of one layer."""
    from featurescope.core.analysis.ablate import ablate
    from featurescope.core.io.images import load_image

    image = load_image(args.image)
    model = load_model_from_args(args)
    layer = select_layers(model, args.layer)[0]
    ablation = ablate(model, image, layer, args.channels, top=args.top)
    if args.json:
        print(json.dumps({
            "layer": layer, "channels": ablation.channels,
            "before": [p.__dict__ for p in ablation.before],
            "after": [p.__dict__ for p in ablation.after],
            "changes": [dict(c.__dict__, change=c.change) for c in ablation.changes],
        }))
        return 0
    count = len(ablation.channels)
    print(f"{layer}: channel{'s' if count != 1 else ''} {channel_ranges(ablation.channels)} switched off"
          + (f" ({count:,} of them)" if count > 1 else ""))
    print(f"  {'class':<28}{'before':>9}{'after':>9}{'change':>9}")
    for c in ablation.changes:
        print(f"  {c.label[:27]:<28}{c.before:>9.2%}{c.after:>9.2%}{c.change * 100:>+8.2f}%")
    return 0
