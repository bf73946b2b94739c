"""A still of the live view, for the README: the real window playing a generated clip
(moving shapes) offscreen, grabbed after a few frames.

    python -m featurescope.gui.live_screenshot resources/screenshots/live.png
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path


def save_live_screenshot(out, layer: str = "blocks.1.expand", frames: int = 8,
                         size: tuple[int, int] = (1280, 800)) -> Path:
    """Play the moving-shapes clip live in the main window (efficientnet_lite0,
    embedded weights) and save the window after ``frames`` frames as a PNG."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from featurescope.core.live.sources import write_shapes_video
    from featurescope.gui.app import application
    from featurescope.gui.main_window import MainWindow
    from featurescope.core.models.registry import DEFAULT_MODEL
    from featurescope.gui.screenshot import wait_until_idle

    app = application()
    with tempfile.TemporaryDirectory(prefix="featurescope-live-") as folder:
        clip = write_shapes_video(Path(folder, "shapes.mp4"), frames=200, size=(320, 240), fps=25)
        window = MainWindow(settings=str(Path(folder, "settings.ini")), start=False)
        window.resize(*size)
        window.show()
        window.start(model=DEFAULT_MODEL)
        wait_until_idle(window, app)
        window.state.set_layer(layer)
        shown = []
        window.live.frame_shown.connect(shown.append)
        window.live.open_video(str(clip))
        deadline = time.monotonic() + 300
        while len(shown) < frames and time.monotonic() < deadline:
            app.processEvents()
            time.sleep(0.005)
        window.grid_view.fit()
        app.processEvents()
        out = Path(out)
        window.grab().save(str(out))
        window.live.stop()
        window.close()
        app.processEvents()
    return out


if __name__ == "__main__":  # pragma: no cover
    print(save_live_screenshot(sys.argv[1] if len(sys.argv) > 1 else "live.png"))
