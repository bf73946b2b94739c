"""``featurescope why IMAGE``: which channels of a layer carried the class, checked by
switching them off (core/analysis/attribution.py, faithfulness.py)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from featurescope.cli.arguments import add_model_options, positive_int
from featurescope.cli.common import ProgressBar, load_model_from_args, warn

METHODS = ("grad_x_act", "integrated_gradients")


def add_why_parser(commands) -> None:
    """The ``why`` subcommand's options (argparse only)."""
    why = commands.add_parser(
        "why", help="which channels of a layer carried the class, checked by switching them off",
        description="Rank the channels of one layer by their contribution to a class's score "
                    "(activation x gradient, or integrated gradients from the layer switched "
                    "off), the ones for it and the ones against it; then check the answer: "
                    "switch off the top k channels (k = 1, 2, 5, 10, 20, 50) and compare how the "
                    "class's probability falls with the k strongest channels and with k random "
                    "ones. The area under each curve is its faithfulness score (lower falls "
                    "faster).")
    why.add_argument("image", metavar="IMAGE")
    add_model_options(why)
    why.add_argument("--class", dest="target", metavar="C",
                     help="the class to explain: its index or its name (default: the top class); "
                          "a detector's box: box:N (0 = its best, the default; the score is its "
                          "'probability'); a segmenter's class over its region: class:NAME "
                          "(default: its largest class)")
    why.add_argument("--layer", "-l", metavar="L",
                     help="the layer (default: the last convolution)")
    why.add_argument("--top", "-k", type=positive_int, default=10, metavar="K",
                     help="channels to list for and against the class (default 10)")
    why.add_argument("--method", default="grad_x_act", choices=METHODS,
                     help="grad_x_act (one forward and backward pass, the default) or "
                          "integrated_gradients (32 steps; the contributions add up to the "
                          "class's logit minus its logit with the layer switched off)")
    why.add_argument("--steps", type=positive_int, default=32, metavar="N",
                     help="integrated gradients: steps of the path integral (default 32)")
    why.add_argument("--json", action="store_true", help="print the answer as JSON")
    why.add_argument("--output", "-o", metavar="REPORT.png",
                     help="also write a one-page picture: the top channels over the photo, "
                          "their contribution maps and the deletion curves")
    why.add_argument("--force", action="store_true", help="overwrite the report if it exists")


def class_index(model, text) -> "int | None":
    """The class ``--class`` names: an index, or a category name (any case)."""
    from featurescope.core.errors import ModelError

    if text is None:
        return None
    text = str(text).strip()
    if text.lstrip("-").isdigit():
        return int(text)
    names = [c.lower() for c in (model.categories or [])]
    if text.lower() in names:
        return names.index(text.lower())
    close = [c for c in (model.categories or []) if text.lower() in c.lower()][:3]
    hint = f"; did you mean {', '.join(map(repr, close))}?" if close else \
        "; give its index (0 to {}) or a name `featurescope predict` prints.".format(
            len(names) - 1 if names else "N")
    raise ModelError(f"{model.name} has no class called {text!r}{hint}")


def _box_entry(found) -> dict:
    """A detector's explained box for the JSON: its rank and x0, y0, x1, y1 in input pixels."""
    reference = getattr(found, "reference", None)
    if reference is None or reference.box is None:
        return {}
    return {"box": {"number": int(reference.target),
                    "input_box": [round(float(v), 2) for v in reference.box]}}


def run_why(args) -> int:
    """Print (or --json) the ranked channels and the deletion check; -o writes a report."""
    from featurescope.core.analysis.attribution import attribute
    from featurescope.core.analysis.faithfulness import faithfulness
    from featurescope.core.analysis.gradcam import grad_cam_layer
    from featurescope.core.errors import ExportError
    from featurescope.core.io.images import load_image
    from featurescope.core.io.writers import refuse_existing
    from featurescope.core.models.spec import require_gradients

    out = Path(args.output) if args.output else None
    if out is not None:
        if out.suffix.lower() != ".png":
            raise ExportError(f"{out} should end in .png: the report is a PNG picture.")
        refuse_existing([out], args.force)
    image = load_image(args.image)
    model = load_model_from_args(args)
    require_gradients(model, "featurescope why")
    layer = args.layer
    if not layer:
        layer, _note = grad_cam_layer(model.layer_info, None, model.name)
    if model.task == "classification":
        target = class_index(model, args.target)
    else:  # a detector's box:N, a segmenter's class:NAME over its region
        from featurescope.core.analysis.dense_cam import parse_cam_target

        text = args.target
        if text and ":" not in text:
            text = ("box:" if model.task == "detection" else "class:") + text
        target = parse_cam_target(model, text, "--class")
    if not model.trained:
        warn(f"{model.name} is untrained (random weights), so its reasons mean little.")
    bar = ProgressBar(prefix="why ") if not args.json else None
    try:
        found = attribute(model, image, layer, target=target, method=args.method, steps=args.steps,
                          progress=bar)
        faith = faithfulness(model, image, layer, found, progress=bar)
    finally:
        if bar is not None:
            bar.finish()
    means = found.mean_activations
    ranked = found.top(len(found.channels))
    listed = ranked[:args.top] + [c for c in found.against(args.top) if c not in ranked[:args.top]]
    answer = {
        "class": {"index": found.target, "label": found.label, "probability": found.probability},
        **_box_entry(found),
        "layer": layer,
        "method": found.method,
        "channels": [{"channel": c, "contribution": float(found.channels[c]),
                      "activation": float(means[c])} for c in listed],
        "faithfulness": faith.as_dict(),
    }
    if out is not None:
        from featurescope.core.io.writers import write_png
        from featurescope.core.render.why_report import why_report

        picture = model.deprocess(model.preprocess(image))
        title = (f"{Path(args.image).name}: why {found.label or found.target} "
                 f"({found.probability:.0%}) at {layer}, {found.method}")
        write_png(out, why_report(picture, found, faith, top=min(args.top, 8), title=title),
                  force=args.force)
    if args.json:
        print(json.dumps(answer))
        return 0
    name = found.label if found.label is not None else f"class {found.target}"
    if _box_entry(found):  # a detector's: its score, not a class probability
        name = f"box {found.target} ({name})"
    elif getattr(found, "reference", None) is not None:
        name = f"{name} over its region"
    print(f"{name} ({found.probability:.1%}) at {layer}, {found.method}:")
    print(f"  {'for':<5}{'channel':>8}{'contribution':>14}{'mean act.':>11}")
    for c in ranked[:args.top]:
        print(f"  {'':<5}{c:>8}{found.channels[c]:>14.4g}{means[c]:>11.4g}")
    against = found.against(args.top)
    if against:
        print(f"  {'against':<5}")
        for c in against:
            print(f"  {'':<5}{c:>8}{found.channels[c]:>14.4g}{means[c]:>11.4g}")
    if found.baseline_logit is not None:
        print(f"  contributions sum to {found.channels.sum():.4g}; logit {found.logit:.4g} minus "
              f"{found.baseline_logit:.4g} with {layer} switched off = {found.logit - found.baseline_logit:.4g}")
    print(f"deletion check (probability of {name} with k channels switched off):")
    print(f"  {'k':<22}" + "".join(f"{k:>7}" for k in faith.k) + f"{'AUC':>8}")
    for ranking, words in (("top", "top by contribution"), ("strongest", "strongest activation"),
                           ("random", f"random ({faith.draws} draws)")):
        values = getattr(faith, ranking)
        print(f"  {words:<22}" + "".join(f"{v:>7.3f}" for v in values) + f"{faith.auc[ranking]:>8.3f}")
    if out is not None:
        print(f"-> {out}", file=sys.stderr if args.json else sys.stdout)
    return 0
