"""``featurescope gui`` and ``screenshot``: the desktop app, on screen or offscreen.

Qt is imported inside the handlers only (cli -> gui -> core).
"""
from __future__ import annotations

import os

# The model options that pass through to the app only when given (keyword arguments of
# run_app and save_screenshot: device, input_size, mean, std).
_MODEL_OPTIONS = ("input_size", "mean", "std")


def model_options(args, names=_MODEL_OPTIONS) -> dict:
    """The model options of ``args`` that were given, as keyword arguments."""
    return {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}


def run_gui(args) -> int:
    """Open the app, with the image and model the arguments name (if any)."""
    from featurescope.gui.app import run_app

    return int(run_app(image=getattr(args, "image", None), model=getattr(args, "model", None),
                       weights=getattr(args, "weights", None), device=getattr(args, "device", None),
                       video=getattr(args, "video", None), **model_options(args)) or 0)


def run_screenshot(args) -> int:
    """Save a PNG of the real main window, built offscreen; prints its path."""
    # The window is built offscreen: no display is needed.
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from featurescope.gui.screenshot import save_screenshot

    path = save_screenshot(args.out, image=args.image, model=args.model, weights=args.weights,
                           layer=args.layer, view=args.view, channel=args.channel, size=args.size,
                           position=args.position, compare_with=args.compare_with,
                           switch_off=getattr(args, "switch_off", None),
                           backprop=getattr(args, "backprop", None),
                           score_threshold=getattr(args, "score_threshold", None),
                           **model_options(args, ("device", *_MODEL_OPTIONS)))
    print(path)
    return 0
