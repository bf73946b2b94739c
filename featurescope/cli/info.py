"""``featurescope models``, ``layers`` and ``predict``: what the engine knows, printed."""
from __future__ import annotations

import json
from pathlib import Path

from featurescope.cli.common import load_model_from_args, warn


def run_models(args) -> int:
    """The catalogue as a table, or JSON with --json."""
    from featurescope.core.models.load import catalogue

    entries = catalogue()
    if args.json:
        rows = [{"name": e.name, "family": e.family, "weights_status": e.weights_status,
                 "weights_name": e.weights_name} for e in entries]
        print(json.dumps({"models": rows}, indent=2))
        return 0
    name_w = max(len(e.name) for e in entries)
    family_w = max(len(e.family) for e in entries)
    print(f"{'name':<{name_w}}  {'family':<{family_w}}  weights")
    for e in entries:
        print(f"{e.name:<{name_w}}  {e.family:<{family_w}}  {e.weights_status} ({e.weights_name})")
    return 0


def _shape(value):
    return list(value) if isinstance(value, (tuple, list)) else value


def _layer_dict(info) -> dict:
    return {
        "name": info.name, "module": info.module_name, "kind": info.kind, "index": info.index,
        "in_channels": info.in_channels, "out_channels": info.out_channels,
        "kernel_size": _shape(info.kernel_size), "stride": _shape(info.stride),
        "padding": _shape(info.padding), "dilation": _shape(info.dilation), "groups": info.groups,
        "input_shape": _shape(info.input_shape), "output_shape": _shape(info.output_shape),
        "parameters": info.parameters, "output_size": _shape(info.output_size),
    }


def _size_text(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if isinstance(value, (tuple, list)):
        return "x".join(str(v) for v in value) if len(set(value)) > 1 else str(value[0])
    return str(value)


def run_layers(args) -> int:
    """Every captured layer of the model as a table, or JSON with --json."""
    asked = args.weights
    if asked is None:  # the layers do not depend on the weights: no load, no download
        args.weights = "none"
    model = load_model_from_args(args, device="cpu")
    others: dict = {}
    if getattr(args, "all", False):
        from featurescope.core.capture.capture import describe_modules

        infos, others = describe_modules(model.module, (1, model.channels, *model.input_size),
                                         name=model.name)
    else:
        infos = list(model.layer_info)
    if args.json:
        listing = {
            "model": model.name, "weights": model.weights_label if asked is not None else None,
            "input_size": list(model.input_size), "channels": model.channels,
            "layers": [_layer_dict(info) for info in infos],
        }
        if getattr(args, "all", False):
            listing["not_feature_maps"] = [{"name": n, "output_shape": _shape(s[1:]) if s else None}
                                           for n, s in others.items()]
        print(json.dumps(listing, indent=2))
        return 0
    h, w = model.input_size
    title = model.display_name if asked is not None else model.name
    what = "modules with a feature map" if getattr(args, "all", False) else "conv and pooling layers"
    print(f"{title}: {len(infos)} {what}, input {model.channels}x{h}x{w}")
    name_w = max([len(i.name) for i in infos] + [4])
    print(f"{'#':>3}  {'name':<{name_w}}  {'type':<17} {'channels':>11}  {'kernel':>6} {'stride':>6} "
          f"{'padding':>7}  {'output':>14} {'params':>10}")
    for info in infos:
        channels = f"{info.in_channels}->{info.out_channels}"
        if info.groups and info.groups > 1:
            channels += f" g{info.groups}" if info.groups != info.in_channels else " dw"
        kernel = _size_text(info.kernel_size) if info.output_size is None else f"->{_size_text(info.output_size)}"
        if info.groups is None:  # not a conv or pool: no kernel, channels in -> out as shapes say
            channels = f"{info.in_channels}->{info.out_channels}"
        output = "x".join(str(v) for v in info.output_shape)
        print(f"{info.index:>3}  {info.name:<{name_w}}  {info.kind:<17} {channels:>11}  {kernel:>6} "
              f"{_size_text(info.stride):>6} {_size_text(info.padding):>7}  {output:>14} {info.parameters:>10,}")
    if others:
        print("not feature maps (not shown): " + ", ".join(
            f"{n} {'x'.join(map(str, s[1:])) if s else '(no tensor)'}" for n, s in others.items()))
    return 0


def _predictions(model, image, top: int):
    from featurescope.core.capture.capture import capture

    # All layers: asking for fewer stops the forward pass early, before the logits.
    result = capture(model, image)
    if result.logits is None:
        from featurescope.core.errors import ModelError

        raise ModelError(f"{model.name} does not output class scores, so it cannot predict.")
    return result.predictions(top=top)


def run_predict(args) -> int:
    """The top predictions for one image, as lines or JSON with --json."""
    from featurescope.core.io.images import load_image

    image = load_image(args.image)  # a broken image fails before the model is loaded
    model = load_model_from_args(args)
    if model.task != "classification":
        return _print_dense(args, model, image)
    predictions = _predictions(model, image, args.top or 5)
    if not model.trained:
        warn(f"{model.name} is untrained (random weights), so these predictions mean nothing.")
    if args.json:
        rows = [{"label": p.label, "index": int(p.index), "probability": float(p.probability)}
                for p in predictions]
        print(json.dumps({"predictions": rows}, indent=2))
        return 0
    print(f"{Path(args.image).name}, {model.display_name}:")
    label_w = max([len(p.label) for p in predictions] + [5])
    for rank, p in enumerate(predictions, 1):
        # Models without category names are labelled "class N" already.
        index = "" if p.label == f"class {p.index}" else f"  (class {p.index})"
        print(f"{rank:>2}. {p.label:<{label_w}}  {p.probability * 100:6.2f} %{index}")
    return 0


def _print_dense(args, model, image) -> int:
    """A detector's boxes or a segmenter's classes, as lines or JSON with --json."""
    from featurescope.core.analysis.detection import DEFAULT_TOP, predict_dense

    found = predict_dense(model, image, threshold=args.score_threshold, top=args.top or DEFAULT_TOP)
    if not model.trained:
        warn(f"{model.name} is untrained (random weights), so these {model.task} results mean nothing.")
    if args.json:
        print(json.dumps(found, indent=2))
        return 0
    print(f"{Path(args.image).name} ({image.size[0]} x {image.size[1]}), {model.display_name}:")
    rows = found.get("detections")
    if rows is not None:
        if not rows:
            print(f"no box scores {args.score_threshold:g} or more")
        label_w = max([len(r["label"]) for r in rows] + [5])
        for number, row in enumerate(rows):
            x0, y0, x1, y1 = row["box"]
            print(f"{number:>2}. {row['label']:<{label_w}}  {row['score'] * 100:6.2f} %  "
                  f"box {x0:.0f},{y0:.0f} - {x1:.0f},{y1:.0f}")
        return 0
    rows = found["segmentation"][:args.top] if args.top else found["segmentation"]
    label_w = max([len(r["label"]) for r in rows] + [5])
    for row in rows:
        print(f"{row['label']:<{label_w}}  {row['fraction'] * 100:6.2f} % of the pixels")
    return 0
