"""``featurescope gui`` and ``screenshot``: the desktop app, on screen or offscreen.

Qt is imported inside the handlers only (cli -> gui -> core).
"""
from __future__ import annotations

import os


def _model_options(args) -> dict:
    """--input-size, --mean, --std (an own model's preprocessing), when the parser has them."""
    return {key: getattr(args, key, None) for key in ("input_size", "mean", "std")}


def run_gui(args) -> int:
    """Open the app, with the image and model the arguments name (if any)."""
    from featurescope.gui.app import run_app

    return int(run_app(image=getattr(args, "image", None), model=getattr(args, "model", None),
                       weights=getattr(args, "weights", None), device=getattr(args, "device", None),
                       **_model_options(args)) or 0)


def run_screenshot(args) -> int:
    """Save a PNG of the real main window, built offscreen; prints its path."""
    # The window is built offscreen: no display is needed.
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from featurescope.gui.screenshot import save_screenshot

    path = save_screenshot(args.out, image=args.image, model=args.model, weights=args.weights,
                           layer=args.layer, view=args.view, channel=args.channel, size=args.size,
                           position=args.position, compare_with=args.compare_with,
                           device=getattr(args, "device", None), **_model_options(args))
    print(path)
    return 0
