"""The ``featurescope`` command: the desktop app, and the engine without a window.

    featurescope                      open the app (same as ``featurescope gui``)
    featurescope models               the networks it knows
    featurescope layers               the conv and pooling layers of one
    featurescope predict IMAGE        what the network thinks the image shows
    featurescope export IMAGE... -o DIR   feature grids (PNG), activations (NPZ), a JSON sidecar
    featurescope compare A B --layer L -o DIR   two images at one layer: A, B, |A - B|, similarity
    featurescope screenshot OUT.png   a picture of the app, made offscreen

Only argparse and the standard library are imported at start-up: torch, torchvision
and Qt are imported inside the command that needs them, so ``--help`` and
``--version`` answer at once. Every user error (:class:`FeaturescopeError`) becomes one
line ``featurescope: <sentence>`` on stderr and exit status 2; Ctrl-C or a cancel exits
with 130 quietly.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Optional, Sequence

from featurescope import __version__

DEFAULT_MODEL = "efficientnet_lite0"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")
EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


# --- argument types (pure Python: --help must not import the engine) -------------------------


def _floats3(text: str) -> tuple[float, float, float]:
    parts = [p for p in text.replace(" ", ",").split(",") if p]
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not three numbers such as 0.485,0.456,0.406") from None
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"{text!r} has {len(values)} numbers; give three, one per R, G, B")
    return values  # type: ignore[return-value]


def _input_size(text: str):
    parts = [p for p in text.lower().replace("x", ",").split(",") if p]
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size such as 224 or 32,32") from None
    if len(values) not in (1, 2) or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size such as 224 or 32,32")
    return values[0] if len(values) == 1 else (values[0], values[1])


def _window_size(text: str) -> tuple[int, int]:
    parts = text.lower().split("x")
    try:
        width, height = (int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size such as 1280x800") from None
    if width < 1 or height < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size such as 1280x800")
    return width, height


def _position(text: str) -> tuple[int, int]:
    parts = [p for p in text.replace(" ", ",").split(",") if p]
    try:
        y, x = (int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a position such as 10,12 (row, column)") from None
    if y < 0 or x < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be 0 or more in both row and column")
    return y, x


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be 0 or more")
    return value


# --- the parser --------------------------------------------------------------------------------


def _add_model_options(parser: argparse.ArgumentParser, *, weights_default: str = "default",
                       device: bool = True, custom: bool = True) -> None:
    group = parser.add_argument_group("model")
    group.add_argument("--model", "-m", default=DEFAULT_MODEL, metavar="M",
                       help=f"a name from `featurescope models` or path/to/file.py:factory "
                            f"(default: {DEFAULT_MODEL}, pretrained, no download)")
    group.add_argument("--weights", "-w", default=weights_default, metavar="W",
                       help="default (pretrained), none (random, untrained) or a state-dict file "
                            + (f"(default: {weights_default})" if weights_default else
                               "(default: none, since the layers do not depend on the weights)"))
    if device:
        group.add_argument("--device", "-d", default="auto", metavar="D",
                           help="auto (CUDA, then MPS, else CPU), cpu, cuda, cuda:N or mps (default: auto)")
    if custom:
        group.add_argument("--input-size", type=_input_size, metavar="N|H,W",
                           help="input size for your own model (default 224)")
        group.add_argument("--mean", type=_floats3, metavar="R,G,B",
                           help="normalisation mean for your own model (default: ImageNet)")
        group.add_argument("--std", type=_floats3, metavar="R,G,B",
                           help="normalisation standard deviation for your own model (default: ImageNet)")
        group.add_argument("--trust-pickle", action="store_true",
                           help="allow --weights to be a whole pickled model (torch.save(model)); "
                                "unpickling runs code from the file, so only for files you trust")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="featurescope",
        description="See what a convolutional network sees: the filters and feature maps of "
                    "every convolution and pooling layer. With no command, opens the app.",
    )
    parser.add_argument("--version", action="version", version=f"featurescope {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    gui = commands.add_parser("gui", help="open the desktop app (the default)",
                              description="Open the desktop app, optionally with an image and a model.")
    gui.add_argument("image", nargs="?", metavar="IMAGE", help="an image to open")
    gui.add_argument("--model", "-m", metavar="M", help="a model name or path/to/file.py:factory")
    gui.add_argument("--weights", "-w", metavar="W", help="default, none or a state-dict file")
    gui.add_argument("--device", "-d", metavar="D", help="auto, cpu, cuda, cuda:N or mps")

    models = commands.add_parser("models", help="list the networks featurescope knows",
                                 description="List the convolutional networks featurescope can load, "
                                             "with where their pretrained weights are.")
    models.add_argument("--json", action="store_true", help="print JSON instead of a table")

    layers = commands.add_parser(
        "layers", help="list the conv and pooling layers of a network",
        description="List every captured layer (convolution and pooling) in network order, with "
                    "its type, channels, kernel, stride, padding, output shape and parameters. "
                    "The names are the keys used by export, the NPZ file and the app.")
    _add_model_options(layers, weights_default=None, device=False)
    layers.add_argument("--json", action="store_true", help="print JSON instead of a table")

    predict = commands.add_parser("predict", help="classify an image",
                                  description="Print the network's top predictions for an image.")
    predict.add_argument("image", metavar="IMAGE", help="a JPEG, PNG, WebP, BMP, TIFF or GIF file")
    _add_model_options(predict)
    predict.add_argument("--top", "-k", type=_positive_int, default=5, metavar="K",
                         help="how many predictions (default 5)")
    predict.add_argument("--json", action="store_true",
                         help='print {"predictions": [{"label", "index", "probability"}, ...]} only')

    export = commands.add_parser(
        "export", help="write feature grids (PNG), activations (NPZ) and a JSON sidecar",
        description="Run images through the network and write, per layer, a PNG grid of its "
                    "feature maps; with --format npz or both, one NPZ of the raw activations "
                    "(keys = layer names, plus 'input'); always a JSON sidecar. Several images "
                    "or a folder give one sub-folder per image.")
    export.add_argument("images", nargs="+", metavar="IMAGE|FOLDER",
                        help="image files, or folders of images (one sub-folder of DIR per image)")
    _add_model_options(export)
    export.add_argument("--layers", "-l", default="all", metavar="all|conv|pool|NAME[,NAME...]",
                        help="which layers (default: all)")
    export.add_argument("--filters", action="store_true", help="also write the kernels of conv layers")
    export.add_argument("--format", "-f", default="png", choices=("png", "npz", "both"),
                        help="png grids, npz activations, or both (default: png)")
    export.add_argument("--colormap", "-c", default="viridis", metavar="C",
                        help="gray, viridis, magma, inferno, plasma, coolwarm, ... (default: viridis)")
    export.add_argument("--normalize", default="channel", choices=("channel", "layer"),
                        help="scale each map on its own, or the whole layer together (default: channel)")
    export.add_argument("--sort", default="index", choices=("index", "mean", "max", "sparsity"),
                        help="channel order in the grid: index, strongest mean or max first, or "
                             "most often active first (sparsity) (default: index)")
    export.add_argument("--upscale", type=_positive_int, default=1, metavar="N",
                        help="enlarge every pixel N times (default 1: exact size)")
    export.add_argument("--annotate", action="store_true",
                        help="also write a version with the layer name and channel numbers")
    export.add_argument("--gradcam", action="store_true",
                        help="also write gradcam_<layer>.png: the Grad-CAM of the top class over the "
                             "input (inferno), at the last convolution of the network, where "
                             "Grad-CAM is usually read, and gradcam_<layer>.json (class, score)")
    export.add_argument("--gradcam-layer", metavar="NAME",
                        help="explain this conv layer instead of the last one (implies --gradcam)")
    export.add_argument("--output", "-o", required=True, metavar="DIR", help="output folder (created if needed)")
    export.add_argument("--force", action="store_true", help="overwrite files that exist")

    compare = commands.add_parser(
        "compare", help="compare two images at one layer (A, B and |A - B| grids, similarity)",
        description="Run two images through the same network and write, for one layer, the "
                    "feature grids of A and B and of |A - B|, all three on one shared colour "
                    "scale (<layer>_a.png, <layer>_b.png, <layer>_difference.png), and "
                    "<layer>_compare.json with the overall and per-channel cosine similarity.")
    compare.add_argument("image_a", metavar="IMAGE_A")
    compare.add_argument("image_b", metavar="IMAGE_B")
    compare.add_argument("--layer", "-l", required=True, metavar="L",
                         help="the layer (names as `featurescope layers` prints them)")
    _add_model_options(compare)
    compare.add_argument("--colormap", "-c", default="viridis", metavar="C",
                         help="gray, viridis, magma, inferno, plasma, coolwarm, ... (default: viridis)")
    compare.add_argument("--upscale", type=_positive_int, default=1, metavar="N",
                         help="enlarge every pixel N times (default 1: exact size)")
    compare.add_argument("--annotate", action="store_true",
                         help="draw the layer name and channel numbers on the grids")
    compare.add_argument("--output", "-o", required=True, metavar="DIR", help="output folder (created if needed)")
    compare.add_argument("--force", action="store_true", help="overwrite files that exist")

    shot = commands.add_parser("screenshot", help="save a picture of the app window (offscreen)",
                               description="Build the real main window offscreen, load, select, "
                                           "wait until all work is done and save it as a PNG.")
    shot.add_argument("out", metavar="OUT.png")
    shot.add_argument("image", nargs="?", metavar="IMAGE")
    shot.add_argument("--model", "-m", metavar="M")
    shot.add_argument("--weights", "-w", metavar="W")
    shot.add_argument("--layer", metavar="NAME")
    shot.add_argument("--view", default="grid", choices=("grid", "filters", "channel", "gradcam", "compare"))
    shot.add_argument("--channel", type=_non_negative_int, metavar="N")
    shot.add_argument("--position", type=_position, metavar="Y,X",
                      help="channel view: draw the receptive field of this feature-map position")
    shot.add_argument("--compare-with", metavar="IMAGE_B",
                      help="compare view: image B (default: another bundled sample)")
    shot.add_argument("--size", type=_window_size, default=(1280, 800), metavar="WxH",
                      help="window size (default 1280x800)")
    return parser


# --- output helpers -----------------------------------------------------------------------------


class _Bar:
    """Progress on stderr: a bar redrawn in place on a terminal, nothing when piped."""

    def __init__(self, stream=None, prefix: str = ""):
        self.stream = stream or sys.stderr
        self.live = bool(getattr(self.stream, "isatty", lambda: False)())
        self.prefix = prefix
        self.drawn = False
        self._last = 0.0

    def __call__(self, done: int, total: int, text: str = "") -> None:
        if not self.live:
            return
        now = time.monotonic()
        if total and done < total and now - self._last < 0.05:
            return
        self._last = now
        width = 24
        if total and total > 0:
            filled = int(width * min(done, total) / total)
            bar = f"[{'#' * filled}{'.' * (width - filled)}] {done}/{total}"
        else:
            bar = "[" + "." * width + "]"
        line = f"{self.prefix}{bar} {text}"
        columns = 100
        try:
            columns = os.get_terminal_size(self.stream.fileno()).columns
        except (OSError, ValueError, AttributeError):
            pass
        self.stream.write("\r" + line[: max(10, columns - 1)].ljust(max(10, columns - 1)))
        self.stream.flush()
        self.drawn = True

    def finish(self) -> None:
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()
            self.drawn = False


def _warn(text: str) -> None:
    print(f"featurescope: warning: {text}", file=sys.stderr)


def _load_model(args, device: Optional[str] = None):
    import warnings

    from featurescope.core.models import load_model

    trust = bool(getattr(args, "trust_pickle", False))
    if trust:
        _warn("--trust-pickle lets the weights file run any code while it is unpickled; "
              "use it only for files you trust.")
    bar = _Bar()
    try:
        with warnings.catch_warnings():
            if trust:  # said once above, in the command's own words
                warnings.filterwarnings("ignore", message=".*unpickl.*")
            return load_model(
                args.model, weights=args.weights, device=device or getattr(args, "device", "cpu"),
                progress=bar, input_size=getattr(args, "input_size", None),
                mean=getattr(args, "mean", None), std=getattr(args, "std", None),
                trust_pickle=trust,
            )
    finally:
        bar.finish()


# --- commands -----------------------------------------------------------------------------------


def _cmd_gui(args) -> int:
    from featurescope.gui.app import run_app

    return int(run_app(image=getattr(args, "image", None), model=getattr(args, "model", None),
                       weights=getattr(args, "weights", None), device=getattr(args, "device", None)) or 0)


def _cmd_models(args) -> int:
    from featurescope.core.models import catalogue

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


def _pair(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if isinstance(value, (tuple, list)):
        return "x".join(str(v) for v in value) if len(set(value)) > 1 else str(value[0])
    return str(value)


def _cmd_layers(args) -> int:
    asked = args.weights
    if asked is None:  # the layers do not depend on the weights: no load, no download
        args.weights = "none"
    model = _load_model(args, device="cpu")
    infos = list(model.layer_info)
    if args.json:
        print(json.dumps({
            "model": model.name, "weights": model.weights_label if asked is not None else None,
            "input_size": list(model.input_size),
            "layers": [_layer_dict(info) for info in infos],
        }, indent=2))
        return 0
    h, w = model.input_size
    title = model.display_name if asked is not None else model.name
    print(f"{title}: {len(infos)} conv and pooling layers, input 3x{h}x{w}")
    name_w = max([len(i.name) for i in infos] + [4])
    print(f"{'#':>3}  {'name':<{name_w}}  {'type':<17} {'channels':>11}  {'kernel':>6} {'stride':>6} "
          f"{'padding':>7}  {'output':>14} {'params':>10}")
    for info in infos:
        channels = f"{info.in_channels}->{info.out_channels}"
        if info.groups and info.groups > 1:
            channels += f" g{info.groups}" if info.groups != info.in_channels else " dw"
        kernel = _pair(info.kernel_size) if info.output_size is None else f"->{_pair(info.output_size)}"
        output = "x".join(str(v) for v in info.output_shape)
        print(f"{info.index:>3}  {info.name:<{name_w}}  {info.kind:<17} {channels:>11}  {kernel:>6} "
              f"{_pair(info.stride):>6} {_pair(info.padding):>7}  {output:>14} {info.parameters:>10,}")
    return 0


def _predictions(model, image, top: int):
    from featurescope.core.capture import capture

    # All layers: asking for fewer stops the forward pass early, before the logits.
    result = capture(model, image)
    if result.logits is None:
        from featurescope.core.errors import ModelError

        raise ModelError(f"{model.name} does not output class scores, so it cannot predict.")
    return result.predictions(top=top)


def _cmd_predict(args) -> int:
    from featurescope.core.images import load_image

    image = load_image(args.image)  # a broken image fails before the model is loaded
    model = _load_model(args)
    predictions = _predictions(model, image, args.top)
    if not model.trained:
        _warn(f"{model.name} is untrained (random weights), so these predictions mean nothing.")
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
    from featurescope.core.export import safe_filename

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


def _select_layers(model, spec: str) -> list[str]:
    from featurescope.core.errors import ModelError

    infos = list(model.layer_info)
    spec = spec.strip()
    if spec.lower() == "all":
        return [i.name for i in infos]
    if spec.lower() == "conv":
        chosen = [i.name for i in infos if i.kind == "Conv2d"]
    elif spec.lower() in ("pool", "pooling"):
        chosen = [i.name for i in infos if "Pool" in i.kind]
    else:
        import difflib

        known = [i.name for i in infos]
        chosen = []
        for name in (part.strip() for part in spec.split(",")):
            if not name:
                continue
            if name not in known:
                close = difflib.get_close_matches(name, known, n=1)
                hint = f"did you mean {close[0]}? " if close else ""
                raise ModelError(f"{name!r} is not a layer of {model.name}; {hint}run "
                                 f"`featurescope layers --model {model.name}` for the names.")
            chosen.append(name)
    if not chosen:
        raise ModelError(f"{model.name} has no {spec} layers to export.")
    return chosen


def _cmd_export(args) -> int:
    from featurescope.core import grids
    from featurescope.core.capture import capture
    from featurescope.core.errors import ExportError, FileExistsExportError, ImageError
    from featurescope.core.export import export_layers, export_targets
    from featurescope.core.images import load_image

    if args.colormap not in grids.COLORMAPS:
        raise ExportError(f"{args.colormap!r} is not a colormap featurescope has; choose one of "
                          f"{', '.join(grids.COLORMAPS)}.")
    files, batch = _image_files(args.images)
    out = Path(args.output)
    folders = _sub_folders(files, out) if batch else [out]

    first_image = load_image(files[0]) if not batch else None  # fail fast on one broken image
    model = _load_model(args)
    names = _select_layers(model, args.layers)
    filter_layers = [i.name for i in model.layer_info if i.name in set(names) and i.kind == "Conv2d"] \
        if args.filters else []
    formats = ("png", "npz") if args.format == "both" else (args.format,)
    gradcam_layer = _gradcam_layer(model, args) if (args.gradcam or args.gradcam_layer) else None
    if gradcam_layer and not model.trained:
        _warn(f"{model.name} is untrained (random weights), so its Grad-CAM means little.")

    if not args.force:  # check every image's files before writing the first one
        for folder in folders:
            extra = _gradcam_targets(folder, gradcam_layer) if gradcam_layer else []
            for target in export_targets(names, folder, formats, args.annotate, filter_layers) + extra:
                if os.path.lexists(target):
                    raise FileExistsExportError(
                        f"{target} already exists and nothing was written; use --force to "
                        "overwrite or choose another folder.", target)

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
        bar = _Bar(prefix=prefix)
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
    from featurescope.core.export import safe_filename

    stem = f"gradcam_{safe_filename(layer)}"
    return [folder / f"{stem}.png", folder / f"{stem}.json"]


def _write_gradcam(model, result, folder: Path, layer: str, source: Path, force: bool) -> list[Path]:
    """The Grad-CAM overlay (top class) PNG and a small JSON about it; atomic writes."""
    from featurescope.core.export import write_json, write_png
    from featurescope.core.gradcam import compute_grad_cam, overlay

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


def _cmd_compare(args) -> int:
    import numpy as np

    from featurescope.core import grids
    from featurescope.core.capture import capture
    from featurescope.core.compare import compare_layer, shared_index_grids
    from featurescope.core.errors import ExportError, FileExistsExportError
    from featurescope.core.export import annotate_grid, safe_filename, write_json, write_png
    from featurescope.core.images import load_image

    if args.colormap not in grids.COLORMAPS:
        raise ExportError(f"{args.colormap!r} is not a colormap featurescope has; choose one of "
                          f"{', '.join(grids.COLORMAPS)}.")
    image_a, image_b = load_image(args.image_a), load_image(args.image_b)  # fail before the model
    model = _load_model(args)
    layer = _select_layers(model, args.layer)
    if len(layer) != 1:
        raise ExportError(f"compare takes one layer; {args.layer!r} names {len(layer)}.")
    layer = layer[0]
    out = Path(args.output)
    stem = safe_filename(layer)
    targets = {key: out / f"{stem}_{key}.png" for key in ("a", "b", "difference")}
    sidecar = out / f"{stem}_compare.json"
    if not args.force:
        for target in (*targets.values(), sidecar):
            if os.path.lexists(target):
                raise FileExistsExportError(
                    f"{target} already exists and nothing was written; use --force to "
                    "overwrite or choose another folder.", target)
    result_a = capture(model, image_a)
    result_b = capture(model, image_b)
    comparison = compare_layer(result_a, result_b, layer)
    pictures, layout = shared_index_grids(comparison)
    lut = grids.colormap_lut(args.colormap)
    titles = {"a": f"{layer}  A: {Path(args.image_a).name}", "b": f"{layer}  B: {Path(args.image_b).name}",
              "difference": f"{layer}  |A - B|"}
    written = []
    for key, target in targets.items():
        rgb = lut[pictures[key]]
        if args.upscale > 1:
            rgb = np.repeat(np.repeat(rgb, args.upscale, axis=0), args.upscale, axis=1)
        if args.annotate:
            rgb = annotate_grid(rgb, layout, titles[key], upscale=args.upscale)
        written.append(write_png(target, rgb, force=args.force))
    worst = comparison.most_different_channels()
    written.append(write_json(sidecar, {
        "image_a": str(args.image_a), "image_b": str(args.image_b), "model": model.name,
        "weights": model.weights_label, "layer": layer, "shape": list(comparison.a.shape),
        "colormap": args.colormap, "shared_levels": list(comparison.shared_levels),
        "similarity": comparison.similarity,
        "mean_abs_difference": comparison.mean_abs_difference,
        "channel_similarity": [float(v) for v in comparison.channel_similarity],
        "least_similar_channels": [int(c) for c in worst],
        "files": {key: path.name for key, path in targets.items()},
    }, force=args.force))
    print(f"{layer}: similarity {comparison.similarity:.4f}, mean |A - B| "
          f"{comparison.mean_abs_difference:.4g}; least similar channels "
          f"{', '.join(str(int(c)) for c in worst[:5])}")
    print(f"{Path(args.image_a).name} vs {Path(args.image_b).name} -> {out}{os.sep} ({len(written)} files)")
    return 0


def _cmd_screenshot(args) -> int:
    # The window is built offscreen: no display is needed.
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from featurescope.gui.screenshot import save_screenshot

    path = save_screenshot(args.out, image=args.image, model=args.model, weights=args.weights,
                           layer=args.layer, view=args.view, channel=args.channel, size=args.size,
                           position=args.position, compare_with=args.compare_with)
    print(path)
    return 0


_COMMANDS = {
    "gui": _cmd_gui,
    "models": _cmd_models,
    "layers": _cmd_layers,
    "predict": _cmd_predict,
    "export": _cmd_export,
    "compare": _cmd_compare,
    "screenshot": _cmd_screenshot,
}


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; returns the exit status (0 ok, 2 user error, 130 interrupted)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as done:  # --help, --version, or a usage error (argparse says why)
        return done.code if isinstance(done.code, int) else (0 if done.code is None else EXIT_USER_ERROR)
    handler = _COMMANDS.get(args.command or "gui")
    # load_image refuses images over Pillow's pixel limit with one sentence; Pillow's own
    # warning for those just over it would be a second, noisier line. Matched by message
    # so that PIL is not imported for --help.
    warnings.filterwarnings("ignore", message=r"Image size \(\d+ pixels\) exceeds limit")
    try:
        return handler(args)
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `featurescope models | head`
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 0
    except Exception as error:
        from featurescope.core.errors import FeaturescopeError
        from featurescope.core.progress import Cancelled

        if isinstance(error, Cancelled):
            return EXIT_INTERRUPTED
        if isinstance(error, FeaturescopeError):
            print(f"featurescope: {error}", file=sys.stderr)
            return EXIT_USER_ERROR
        raise


if __name__ == "__main__":
    sys.exit(main())
