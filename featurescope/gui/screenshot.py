"""Build the real main window offscreen, load, select, wait, and save a PNG of it.

``featurescope screenshot`` uses this to make the README pictures and to show anyone
what a user would see, on a machine without a display.
"""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any, Optional, Union

from featurescope.core.errors import FeaturescopeError
from featurescope.gui.views.registry import view_index, view_names

TIMEOUT_S = 600.0


def wait_until_idle(window, app, timeout_s: float = TIMEOUT_S) -> None:
    """Process events until no request is pending and nothing new got queued."""
    deadline = time.monotonic() + timeout_s
    quiet = 0
    while quiet < 3:  # idle for a few rounds: answers may queue follow-up work
        if time.monotonic() > deadline:
            raise FeaturescopeError(f"The window was still busy after {timeout_s:.0f} s; nothing was saved.")
        app.processEvents()
        if window.jobs.is_idle():
            quiet += 1
        else:
            quiet = 0
            window.jobs.pool.waitForDone(20)  # block briefly instead of spinning
    app.processEvents()


def save_screenshot(out: Union[str, Path], image: Optional[Union[str, Path]] = None,
                    model: Optional[str] = None, weights: Optional[str] = None,
                    layer: Optional[str] = None, view: str = "grid", channel: Optional[int] = None,
                    size: tuple[int, int] = (1280, 800),
                    position: Optional[tuple[int, int]] = None,
                    compare_with: Optional[Union[str, Path]] = None, device: Optional[str] = None,
                    input_size: Any = None, mean: Any = None, std: Any = None,
                    switch_off: Optional[list] = None, backprop: Optional[str] = None,
                    score_threshold: Optional[float] = None) -> Path:
    """Save a PNG of the whole main window after everything it shows is computed.

    ``image`` defaults to the bundled cat, ``model`` to efficientnet_lite0; ``layer`` to
    the first convolution; ``view`` is a view's short name (gui/views/registry.py:
    "grid", "channel", "gradcam", ...); ``channel`` the channel shown in the channel view; ``position`` (y, x) a
    feature-map position whose receptive field the channel view draws on the input;
    ``compare_with`` image B of the compare view (default: another bundled sample);
    ``device`` (default "auto"); ``input_size`` (224, (32, 32) or "32x32"), ``mean`` and
    ``std`` for an own model (``file.py:factory``); ``switch_off`` channels of the layer
    that the ablation view switches off before the picture is taken; ``backprop``
    ("guided" or "deconvnet") turns the channel view's backprop view on;
    ``score_threshold`` the score a detector's boxes are drawn from (default 0.5).
    Uses throwaway settings, never the user's.
    Raises FeaturescopeError (one sentence) for a bad image, model, layer or view.
    """
    if view not in view_names():
        raise FeaturescopeError(f"'{view}' is not a view; use one of {', '.join(view_names())}.")
    out = Path(out)
    if out.suffix.lower() != ".png":
        raise FeaturescopeError(f"{out} should end in .png: screenshots are PNG files.")
    if not out.parent.exists():
        raise FeaturescopeError(f"{out.parent} does not exist; create the folder first.")
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from featurescope.core.io.images import load_image
    from featurescope.core.models.registry import DEFAULT_MODEL
    from featurescope.core.resources import default_sample

    image_path = str(image) if image is not None else str(default_sample())
    load_image(image_path)  # raises ImageError with its sentence before any window
    if position is not None and view != "channel":
        raise FeaturescopeError("--position marks a receptive field in the channel view; "
                                "add --view channel.")
    if backprop is not None and view != "channel":
        raise FeaturescopeError("--backprop shows a pattern in the channel view; add --view channel.")
    if switch_off and view != "ablation":
        raise FeaturescopeError("--switch-off runs in the ablation view; add --view ablation.")
    image_b = None
    if view == "compare":
        from featurescope.core.resources import sample_images

        if compare_with is not None:
            image_b = str(compare_with)
        else:
            others = [p for p in sample_images() if p.resolve() != Path(image_path).resolve()]
            image_b = str(others[0] if others else default_sample())
        load_image(image_b)

    from featurescope.gui.app import application

    app = application()
    from featurescope.gui.main_window import MainWindow

    errors: list[str] = []
    with tempfile.TemporaryDirectory(prefix="featurescope-shot-") as folder:
        window = MainWindow(settings=Path(folder) / "settings.ini", start=False)
        window.state.error_reported.connect(errors.append)
        try:
            window.resize(*size)
            window.show()
            if score_threshold is not None:
                window.state.set_score_threshold(score_threshold)
            window.start(image=image_path, model=model or DEFAULT_MODEL,
                         weights=weights or "default", device=device or "auto",
                         input_size=input_size, mean=mean, std=std)
            wait_until_idle(window, app)
            if errors:
                raise FeaturescopeError(errors[0])
            result = window.state.result
            if result is None:
                raise FeaturescopeError("Nothing was captured; the model or the image did not load.")
            if layer is not None and layer not in result.layers \
                    and window.state.model.find_layer_info(layer) is not None:
                window.state.set_every_module(True)  # a block or an activation: list every module
                wait_until_idle(window, app)
                result = window.state.result
            if layer is not None:
                if layer not in result.layers:
                    shown = ", ".join(result.layers[:8]) + (", ..." if len(result.layers) > 8 else "")
                    raise FeaturescopeError(f"{window.state.model.name} has no layer '{layer}'; "
                                            f"its layers are {shown}")
                window.state.set_layer(layer)
            window.tabs.setCurrentIndex(view_index(view))
            if channel is not None:
                channels = result[window.state.layer].shape[0]
                if not 0 <= int(channel) < channels:
                    raise FeaturescopeError(f"Layer {window.state.layer} has channels 0 to "
                                            f"{channels - 1}; {channel} is not one of them.")
                window.state.set_channel(int(channel))
            elif view == "channel":
                window.state.set_channel(0)
            if image_b is not None:
                window.compare_view.set_image_b(image_b)
            wait_until_idle(window, app)
            if errors:
                raise FeaturescopeError(errors[0])
            if position is not None:
                height, width = result[window.state.layer].shape[1:]
                y, x = position
                if not (0 <= y < height and 0 <= x < width):
                    raise FeaturescopeError(f"Layer {window.state.layer} is {height} x {width}; "
                                            f"position {y},{x} is outside it.")
                window.channel_view.show_position(int(y), int(x))
            if backprop is not None:
                window.backprop_control.set_method(backprop)
                wait_until_idle(window, app)
            if switch_off:
                channels = result[window.state.layer].shape[0]
                bad = [c for c in switch_off if not 0 <= c < channels]
                if bad:
                    raise FeaturescopeError(f"Layer {window.state.layer} has channels 0 to "
                                            f"{channels - 1}; {bad[0]} is not one of them.")
                window.ablation_view.refresh()
                window.ablation_view.set_checked(switch_off)
                window.ablation_view.run_ablation()
                wait_until_idle(window, app)
            window.grid_view.fit()
            wait_until_idle(window, app)
            window.grid_view.fit()
            app.processEvents()
            window.hide_stray_tab_bars()
            if not window.grab().save(str(out), "PNG"):
                raise FeaturescopeError(f"{out} could not be written; check that the folder is writable.")
        finally:
            window.close()
            window.deleteLater()
            app.processEvents()
    return out
