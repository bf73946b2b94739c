"""The ``featurescope`` command: the desktop app, and the engine without a window.

    featurescope                      open the app (same as ``featurescope gui``)
    featurescope models               the networks it knows
    featurescope layers [--all]       the conv and pooling layers of one (--all: every module)
    featurescope predict IMAGE        what the network thinks the image shows (classes, boxes or a class mask)
    featurescope export IMAGE... -o DIR   feature grids (PNG), activations (NPZ), a JSON sidecar
    featurescope compare A B --layer L -o DIR   two images at one layer: A, B, |A - B|, similarity
    featurescope explain IMAGE --layer L --channel C --at Y,X   the arithmetic at one position
    featurescope overview IMAGE -o poster.png   one picture from the photo to the last layer
    featurescope ablate IMAGE --layer L --channels 1,2   predictions with channels switched off
    featurescope visualize --layer L -o DIR   the image each channel responds to most
    featurescope circuit IMAGE --layer L --channel C   the channels of an earlier layer that build it
    featurescope screenshot OUT.png   a picture of the app, made offscreen
    featurescope index FOLDER -o I    the images of a folder that excite each channel most
    featurescope examples I --layer L --channel C   one channel's top images (JSON, sheet)
    featurescope atlas --images DIR -o SITE/   every unit of a model on one static site
    featurescope video CLIP --layer L -o OUT.mp4   a clip beside one layer's view, as a video
    featurescope graph -o net.svg     the network's dataflow as a picture (SVG or PNG)
    featurescope why IMAGE            which channels carried the class, checked by switching them off
    featurescope backprop IMAGE --layer L --channel C -o P.png   the pattern that drives a channel

Only argparse and the standard library are imported at start-up: torch, torchvision
and Qt are imported inside the command that needs them, so ``--help`` and
``--version`` answer at once. Every user error (:class:`FeaturescopeError`) becomes one
line ``featurescope: <sentence>`` on stderr and exit status 2; Ctrl-C or a cancel exits
with 130 quietly.

This module is the parser and the dispatch; the handlers live in featurescope/cli/ (one module per command).
"""
from __future__ import annotations

import argparse
import os
import sys
import warnings
from typing import Optional, Sequence

from featurescope import __version__
# The handler modules import only the standard library at the top (engine and Qt inside
# the handlers), so importing them here keeps --help and --version instant.
from featurescope.cli.app import run_gui, run_screenshot
from featurescope.cli.backprop import add_backprop_parser, run_backprop
from featurescope.cli.circuit import add_circuit_parser, run_circuit
from featurescope.cli.atlas import add_atlas_parser, run_atlas
from featurescope.cli.arguments import (
    add_model_options, add_preprocessing_options, channel_list, frame_rate, non_negative_int,
    position, positive_int, window_size,
)
from featurescope.cli.common import EXIT_INTERRUPTED, EXIT_USER_ERROR
from featurescope.gui.views.registry import view_names
from featurescope.cli.compare import run_compare
from featurescope.cli.export import run_export
from featurescope.cli.index import add_parsers as add_index_parsers, run_examples, run_index
from featurescope.cli.info import run_layers, run_models, run_predict
from featurescope.cli.teach import run_ablate, run_explain, run_overview
from featurescope.cli.visualize import add_visualize_parser, run_visualize
from featurescope.cli.graph import add_graph_parser, run_graph
from featurescope.cli.video import run_video
from featurescope.cli.why import add_why_parser, run_why


def build_parser() -> argparse.ArgumentParser:
    """The parser of every subcommand; building it imports nothing beyond argparse."""
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
    gui.add_argument("--model", "-m", metavar="M",
                     help="a model name, timm:NAME, path/to/model.onnx or path/to/file.py:factory")
    gui.add_argument("--weights", "-w", metavar="W", help="default, none or a state-dict file")
    gui.add_argument("--device", "-d", metavar="D", help="auto, cpu, cuda, cuda:N or mps")
    gui.add_argument("--video", metavar="CLIP", help="open a video file and play it live")
    add_preprocessing_options(gui)

    models = commands.add_parser("models", help="list the networks featurescope knows",
                                 description="List the convolutional networks featurescope can load, "
                                             "with where their pretrained weights are.")
    models.add_argument("--json", action="store_true", help="print JSON instead of a table")

    layers = commands.add_parser(
        "layers", help="list the conv and pooling layers of a network",
        description="List every captured layer (convolution and pooling) in network order, with "
                    "its type, channels, kernel, stride, padding, output shape and parameters. "
                    "The names are the keys used by export, the NPZ file and the app.")
    add_model_options(layers, weights_default=None, device=False)
    layers.add_argument("--json", action="store_true", help="print JSON instead of a table")
    layers.add_argument("--all", action="store_true",
                        help="every module with a (C, H, W) output (activations, batch norms, "
                             "blocks, stages), not only convolutions and pooling")

    predict = commands.add_parser("predict", help="classify an image",
                                  description="Print the network's top predictions for an image.")
    predict.add_argument("image", metavar="IMAGE", help="a JPEG, PNG, WebP, BMP, TIFF or GIF file")
    add_model_options(predict)
    predict.add_argument("--top", "-k", type=positive_int, default=None, metavar="K",
                         help="how many predictions (default 5; a detector's boxes: 20)")
    predict.add_argument("--json", action="store_true",
                         help='print {"predictions": [{"label", "index", "probability"}, ...]} only; '
                              'a detector: {"detections": [{"label", "score", "box"}, ...]} (box: '
                              'x0, y0, x1, y1 in the image\'s pixels); a segmenter: '
                              '{"segmentation": [{"label", "fraction"}, ...]}')
    predict.add_argument("--score-threshold", type=float, default=0.5, metavar="S",
                         help="a detector's boxes from this score on (default 0.5; --top of them "
                              "at most, default 20 for a detector)")

    export = commands.add_parser(
        "export", help="write feature grids (PNG), activations (NPZ) and a JSON sidecar",
        description="Run images through the network and write, per layer, a PNG grid of its "
                    "feature maps; with --format npz or both, one NPZ of the raw activations "
                    "(keys = layer names, plus 'input'); always a JSON sidecar. Several images "
                    "or a folder give one sub-folder per image.")
    export.add_argument("images", nargs="+", metavar="IMAGE|FOLDER",
                        help="image files, or folders of images (one sub-folder of DIR per image)")
    add_model_options(export)
    export.add_argument("--layers", "-l", default="conv,pool", metavar="GROUP|NAME[,...]",
                        help="module names and groups conv, pool, act, block, all "
                             "(every module with a feature map); default conv,pool")
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
    export.add_argument("--upscale", type=positive_int, default=1, metavar="N",
                        help="enlarge every pixel N times (default 1: exact size)")
    export.add_argument("--columns", type=positive_int, metavar="N",
                        help="tiles per row of the grid (default: near-square, as in the app)")
    export.add_argument("--clip", type=float, metavar="P",
                        help="clip each scale to the P-th..(100-P)-th percentile, as the app's "
                             "clipping does (default: no clipping)")
    export.add_argument("--annotate", action="store_true",
                        help="also write a version with the layer name and channel numbers")
    export.add_argument("--gradcam", action="store_true",
                        help="also write gradcam_<layer>.png: the Grad-CAM of the top class over the "
                             "input (inferno), at the last convolution of the network, where "
                             "Grad-CAM is usually read, and gradcam_<layer>.json (class, score)")
    export.add_argument("--cam-method", default="gradcam", metavar="M",
                        choices=("gradcam", "gradcam++", "xgradcam", "layercam", "hirescam",
                                 "eigencam", "scorecam", "ablationcam"),
                        help="the class activation map: gradcam (default), gradcam++, xgradcam, "
                             "layercam, hirescam, eigencam, scorecam or ablationcam (implies --gradcam)")
    export.add_argument("--gradcam-layer", metavar="NAME",
                        help="explain this layer instead of the last convolution; for a "
                             "pooling layer, the nearest convolution before it (implies --gradcam)")
    export.add_argument("--gradcam-target", metavar="T",
                        help="what Grad-CAM explains: class:NAME (or class:N), or a detector's "
                             "box:N (0 = its best box, as `featurescope predict` lists them); "
                             "default the top class, a detector's best box, a segmenter's "
                             "largest class over its region (implies --gradcam)")
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
    add_model_options(compare)
    compare.add_argument("--colormap", "-c", default="viridis", metavar="C",
                         help="gray, viridis, magma, inferno, plasma, coolwarm, ... (default: viridis)")
    compare.add_argument("--upscale", type=positive_int, default=1, metavar="N",
                         help="enlarge every pixel N times (default 1: exact size)")
    compare.add_argument("--annotate", action="store_true",
                         help="draw the layer name and channel numbers on the grids")
    compare.add_argument("--output", "-o", required=True, metavar="DIR", help="output folder (created if needed)")
    compare.add_argument("--force", action="store_true", help="overwrite files that exist")

    add_index_parsers(commands, add_model_options, positive_int)
    add_visualize_parser(commands)
    add_circuit_parser(commands)
    add_graph_parser(commands)
    add_why_parser(commands)
    add_backprop_parser(commands)
    add_atlas_parser(commands)

    explain = commands.add_parser(
        "explain", help="the arithmetic behind one value of a feature map",
        description="Recompute one output value of a convolution or pooling layer by hand: the "
                    "input window it reads (zeros where it hangs over the padding), the kernel, "
                    "the element-wise products, their sum, the bias and the result, which equals "
                    "the captured activation. For pooling: the window and the maximum or average.")
    explain.add_argument("image", metavar="IMAGE")
    add_model_options(explain)
    explain.add_argument("--layer", "-l", required=True, metavar="L",
                         help="the layer (names as `featurescope layers` prints them)")
    explain.add_argument("--channel", "-c", required=True, type=non_negative_int, metavar="C")
    explain.add_argument("--at", required=True, type=position, metavar="Y,X",
                         help="the feature-map position: row, column")
    explain.add_argument("--max-channels", type=positive_int, default=3, metavar="N",
                         help="input channels printed in full (default 3; --json gives all)")
    explain.add_argument("--json", action="store_true", help="print every number as JSON")

    overview = commands.add_parser(
        "overview", help="one picture of the whole network: the photo and a tile per layer",
        description="Write one labelled PNG: the photo the network sees and, for every captured "
                    "layer in network order, its most active channel (or a reduction), drawn at a "
                    "size that shows the spatial size shrinking: edges to shapes at a glance.")
    overview.add_argument("image", metavar="IMAGE")
    add_model_options(overview)
    overview.add_argument("--reduction", default="most_active", choices=("most_active", "mean", "max"),
                          help="the map per layer: its most active channel, or the mean or max "
                               "over channels (default most_active)")
    overview.add_argument("--colormap", "-c", default="viridis", metavar="C")
    overview.add_argument("--width", type=positive_int, default=1600, metavar="PX",
                          help="poster width in pixels (default 1600)")
    overview.add_argument("--output", "-o", required=True, metavar="OUT.png")
    overview.add_argument("--force", action="store_true", help="overwrite the file if it exists")

    ablate = commands.add_parser(
        "ablate", help="switch channels of a layer off and compare the predictions",
        description="Run the image twice, the second time with the given channels of one layer "
                    "set to zero, and print the top classes before and after.")
    ablate.add_argument("image", metavar="IMAGE")
    add_model_options(ablate)
    ablate.add_argument("--layer", "-l", required=True, metavar="L")
    ablate.add_argument("--channels", required=True, type=channel_list, metavar="C[,C...]",
                        help="channel numbers, e.g. 3,17,40 or 0-7")
    ablate.add_argument("--top", "-k", type=positive_int, default=5, metavar="K")
    ablate.add_argument("--json", action="store_true", help="print JSON")

    shot = commands.add_parser("screenshot", help="save a picture of the app window (offscreen)",
                               description="Build the real main window offscreen, load, select, "
                                           "wait until all work is done and save it as a PNG.")
    shot.add_argument("out", metavar="OUT.png")
    shot.add_argument("image", nargs="?", metavar="IMAGE")
    shot.add_argument("--model", "-m", metavar="M")
    shot.add_argument("--weights", "-w", metavar="W")
    shot.add_argument("--device", "-d", metavar="D", help="auto, cpu, cuda, cuda:N or mps")
    add_preprocessing_options(shot)
    shot.add_argument("--layer", metavar="NAME")
    shot.add_argument("--view", default="grid", choices=view_names())
    shot.add_argument("--channel", type=non_negative_int, metavar="N")
    shot.add_argument("--position", type=position, metavar="Y,X",
                      help="channel view: draw the receptive field of this feature-map position")
    shot.add_argument("--compare-with", metavar="IMAGE_B",
                      help="compare view: image B (default: another bundled sample)")
    shot.add_argument("--switch-off", type=channel_list, metavar="C[,C...]",
                      help="ablation view: switch these channels of the layer off (e.g. 0-19)")
    shot.add_argument("--backprop", choices=("guided", "deconvnet"),
                      help="channel view: show the channel's (or the --position unit's) pattern")
    shot.add_argument("--size", type=window_size, default=(1280, 800), metavar="WxH",
                      help="window size (default 1280x800)")
    shot.add_argument("--score-threshold", type=float, metavar="S",
                      help="a detector's boxes from this score on (default 0.5)")
    video = commands.add_parser(
        "video", help="render a clip beside one layer's feature maps into a video file",
        description="Run every frame of a video through the network and write a video of the "
                    "frame (left) beside the chosen view of one layer (right): the feature-map "
                    "grid, one channel, or the Grad-CAM of the top class. Headless.")
    video.add_argument("input", metavar="INPUT", help="a video file (.mp4, .avi, .mov, .mkv, ...)")
    add_model_options(video)
    video.add_argument("--layer", "-l", required=True, metavar="L",
                       help="the layer (names as `featurescope layers` prints them)")
    video.add_argument("--view", default="grid", metavar="grid|channel:C|gradcam",
                       help="the feature-map grid, channel C large, or the Grad-CAM (default: grid)")
    video.add_argument("--fps", type=frame_rate, metavar="F",
                       help="frame rate of OUT, 0.5 to 600 (default: INPUT's)")
    video.add_argument("--max-frames", type=positive_int, metavar="N", help="stop after N frames")
    video.add_argument("--output", "-o", required=True, metavar="OUT.mp4",
                       help="the video to write: .mp4, .m4v, .mov (mp4v) or .avi (MJPG)")
    video.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    return parser


_COMMANDS = {
    "gui": run_gui,
    "models": run_models,
    "layers": run_layers,
    "predict": run_predict,
    "export": run_export,
    "compare": run_compare,
    "screenshot": run_screenshot,
    "index": run_index,
    "examples": run_examples,
    "explain": run_explain,
    "overview": run_overview,
    "ablate": run_ablate,
    "visualize": run_visualize,
    "circuit": run_circuit,
    "video": run_video,
    "graph": run_graph,
    "why": run_why,
    "backprop": run_backprop,
    "atlas": run_atlas,
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
