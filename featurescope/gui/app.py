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


def configure_qt() -> None:
    """Process-wide settings that must come before the first QSettings / ImageItem."""
    from PySide6.QtCore import QCoreApplication

    from featurescope.gui.settings import APPLICATION, ORGANIZATION

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
    from featurescope.core.memory import tune_allocator

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
