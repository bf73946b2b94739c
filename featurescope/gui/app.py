"""Start the desktop app: display check, QApplication set-up, the main window."""
from __future__ import annotations

import os
import sys
from typing import Optional

NO_DISPLAY_MESSAGE = (
    "featurescope: no display found (DISPLAY and WAYLAND_DISPLAY are unset); run it on a "
    "desktop, or set QT_QPA_PLATFORM=offscreen and use `featurescope screenshot` or "
    "`featurescope export` to get pictures without a window."
)


def has_display(environ: Optional[dict] = None) -> bool:
    """False on Linux when there is nowhere to show a window and Qt would abort."""
    env = os.environ if environ is None else environ
    if not sys.platform.startswith("linux"):
        return True
    if env.get("QT_QPA_PLATFORM"):
        return True  # the user chose a platform plugin (offscreen, vnc, ...)
    return bool(env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"))


X11_PACKAGES = ("libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-image0 "
                "libxcb-render-util0 libxcb-shape0 libxkbcommon-x11-0")


def missing_x11_library(environ: Optional[dict] = None) -> Optional[str]:
    """The system library Qt's X11 plugin cannot find, or None when it loads (or is not used).

    Since Qt 6.5 the xcb plugin needs xcb libraries that many desktops lack; without them
    QApplication aborts the process with a core dump instead of raising. Loading the plugin
    with ctypes first turns that into a sentence naming the missing file.
    """
    env = os.environ if environ is None else environ
    if not sys.platform.startswith("linux"):
        return None
    platform = env.get("QT_QPA_PLATFORM", "")
    if platform and not platform.startswith("xcb"):
        return None  # offscreen, wayland, vnc, ...
    if not platform and (env.get("WAYLAND_DISPLAY") or not env.get("DISPLAY")):
        return None
    import ctypes
    import re
    from pathlib import Path

    import PySide6

    plugin = Path(PySide6.__file__).parent / "Qt" / "plugins" / "platforms" / "libqxcb.so"
    if not plugin.exists():
        return None
    try:
        ctypes.CDLL(str(plugin))
    except OSError as error:
        found = re.search(r"(lib[\w.+-]+\.so[\w.]*)", str(error))
        return found.group(1) if found else str(error)
    return None


def missing_x11_message(library: str) -> str:
    return (f"featurescope: Qt cannot open a window on this X11 display because the system "
            f"library {library} is missing; install Qt's X11 libraries (Debian/Ubuntu: sudo apt "
            f"install {X11_PACKAGES}), or use `featurescope screenshot` / `featurescope export`, "
            f"which need no window.")


def configure_qt() -> None:
    """Process-wide settings that must come before the first QSettings / ImageItem."""
    from PySide6.QtCore import QCoreApplication

    from featurescope.gui.model.settings import APPLICATION, ORGANIZATION

    QCoreApplication.setOrganizationName(ORGANIZATION)
    QCoreApplication.setApplicationName(APPLICATION)
    import pyqtgraph as pg

    # Row-major so (H, W) arrays are not transposed; no OpenGL so offscreen works.
    pg.setConfigOptions(imageAxisOrder="row-major", useOpenGL=False, antialias=False)


def app_icon():
    """featurescope's icon (resources/icons/featurescope.png) as a QIcon."""
    from PySide6.QtGui import QIcon

    from featurescope.core.resources import resource_path

    return QIcon(str(resource_path("icons", "featurescope.png")))


def application():
    """The QApplication, created (with names and pyqtgraph options) if there is none."""
    from PySide6.QtWidgets import QApplication

    configure_qt()
    app = QApplication.instance()
    if app is None:
        app = QApplication(sys.argv[:1])
        from featurescope import __version__

        app.setApplicationVersion(__version__)
        app.setApplicationDisplayName("featurescope")
        app.setWindowIcon(app_icon())
    return app


def run_app(image=None, model=None, weights=None, device=None) -> int:
    """Open the main window and run the event loop; return the exit status.

    ``image`` (a path), ``model`` (catalogue name or ``file.py:factory``), ``weights``
    ("default", "none" or a file) and ``device`` override what the settings remember.
    Returns 2 without creating a QApplication when there is no display.
    """
    if not has_display():
        print(NO_DISPLAY_MESSAGE, file=sys.stderr)
        return 2
    library = missing_x11_library()
    if library:
        print(missing_x11_message(library), file=sys.stderr)
        return 2
    from featurescope.core.capture.memory import tune_allocator

    tune_allocator()  # reuse freed activation memory between captures (glibc)
    app = application()
    from featurescope.gui.main_window import MainWindow

    window = MainWindow(start=False)
    window.show()
    window.start(image=image, model=model, weights=weights, device=device)
    return int(app.exec())


def main() -> int:
    return run_app(*(sys.argv[1:2] or [None]))


if __name__ == "__main__":
    sys.exit(main())
