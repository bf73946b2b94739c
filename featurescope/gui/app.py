"""Start the desktop app: display check, QApplication set-up, the main window."""
from __future__ import annotations

import os
import sys
from typing import Any, Optional

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


# Qt's offscreen (and some minimal) platform plugins say this on every window resize;
# it is about window-manager hints that do not exist there, and means nothing to a user.
QUIET_QT_MESSAGES = ("This plugin does not support propagateSizeHints()",)
_previous_handler = None


def _qt_message(mode, context, message) -> None:
    if message in QUIET_QT_MESSAGES:
        return
    if _previous_handler is not None:
        _previous_handler(mode, context, message)
        return
    sys.stderr.write(message + "\n")


def quiet_qt_messages() -> None:
    """Drop exactly the Qt messages in QUIET_QT_MESSAGES; every other message still prints."""
    global _previous_handler
    from PySide6.QtCore import qInstallMessageHandler

    if getattr(quiet_qt_messages, "installed", False):
        return
    _previous_handler = qInstallMessageHandler(_qt_message)
    quiet_qt_messages.installed = True


def configure_qt() -> None:
    """Process-wide settings that must come before the first QSettings / ImageItem."""
    from PySide6.QtCore import QCoreApplication

    from featurescope.gui.model.settings import APPLICATION, ORGANIZATION

    QCoreApplication.setOrganizationName(ORGANIZATION)
    QCoreApplication.setApplicationName(APPLICATION)
    # pyqtgraph's global config is left alone (another library in the process may own
    # it): every ImageItem sets axisOrder="row-major" itself, and OpenGL and antialiasing
    # are off by pyqtgraph's own defaults.


def open_settings(where: Any = None):
    """The app's :class:`Settings` over a QSettings: the user's (``None``), an INI file
    (a path: tests and scripts never touch the user's settings), or a QSettings given."""
    from PySide6.QtCore import QSettings

    from featurescope.gui.model.settings import Settings

    if isinstance(where, Settings):
        return where
    if where is None:
        configure_qt()
        where = QSettings()
    elif not isinstance(where, QSettings):
        where = QSettings(str(where), QSettings.IniFormat)
    return Settings(where)


def app_icon():
    """featurescope's icon (resources/icons/featurescope.png) as a QIcon."""
    from PySide6.QtGui import QIcon

    from featurescope.core.resources import resource_path

    return QIcon(str(resource_path("icons", "featurescope.png")))


def application():
    """The QApplication, created (with names and pyqtgraph options) if there is none."""
    from PySide6.QtWidgets import QApplication

    configure_qt()
    quiet_qt_messages()
    app = QApplication.instance()
    if app is None:
        app = QApplication(sys.argv[:1])
        from featurescope import __version__

        app.setApplicationVersion(__version__)
        app.setApplicationDisplayName("featurescope")
        app.setWindowIcon(app_icon())
    return app


# FEATURESCOPE_STARTUP_PROBE=shown|grid: print "featurescope-startup: shown torch=0|1" when
# the window is first on screen and "featurescope-startup: grid" when the first feature grid
# is drawn, then quit after the named one. For the start-up test and benchmark only.
PROBE_ENV = "FEATURESCOPE_STARTUP_PROBE"


def when_shown(window, callback) -> None:
    """Call ``callback`` once, right after ``window`` is first exposed (painted) on screen;
    after 2 s at the latest, should the platform never say so."""
    from PySide6.QtCore import QEvent, QObject, QTimer

    done = []

    def fire() -> None:
        if not done:
            done.append(True)
            callback()

    class ExposeWatcher(QObject):
        def eventFilter(self, obj, event):  # noqa: N802 (Qt)
            if event.type() == QEvent.Expose and obj.isExposed():
                obj.removeEventFilter(self)
                QTimer.singleShot(0, fire)  # after this expose has painted the window
            return False

    handle = window.windowHandle()
    if handle is not None and not handle.isExposed():
        watcher = ExposeWatcher(window)
        handle.installEventFilter(watcher)
        QTimer.singleShot(2000, fire)
    else:
        QTimer.singleShot(0, fire)


def _probe(window, app, until: str) -> None:
    def shown() -> None:
        print(f"featurescope-startup: shown torch={int('torch' in sys.modules)}", flush=True)
        if until == "shown":
            window.close()  # cancels and waits for the worker, as a user's quit does

    def grid(*_args) -> None:
        if window.grid_view.image_item.image is not None and not getattr(grid, "said", False):
            grid.said = True
            print("featurescope-startup: grid", flush=True)
            if until == "grid":
                window.close()

    when_shown(window, shown)
    window.state.result_changed.connect(grid)


def run_app(image=None, model=None, weights=None, device=None, input_size=None, mean=None,
            std=None, video=None) -> int:
    """Open the main window and run the event loop; return the exit status.

    ``image`` (a path), ``model`` (catalogue name or ``file.py:factory``), ``weights``
    ("default", "none" or a file), ``device``, and for an own model ``input_size``
    (224, (32, 32) or "32x32"), ``mean`` and ``std`` (three numbers or text) override
    what the settings remember; ``video`` (a path) is played live once the window is up.
    The window is shown first, with empty panes; the model and image load once it is on
    screen (torch is imported on the worker then).
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
    probe = os.environ.get(PROBE_ENV, "")
    if probe:
        _probe(window, app, probe)
    window.show()

    def start() -> None:
        if window.isVisible():  # not closed in the meantime
            window.start(image=image, model=model, weights=weights, device=device,
                         input_size=input_size, mean=mean, std=std)
            if video:
                window.live.open_video(str(video))

    when_shown(window, start)
    status = int(app.exec())
    window.jobs.shutdown()  # no worker may outlive the interpreter
    return status


def main() -> int:
    return run_app(*(sys.argv[1:2] or [None]))


if __name__ == "__main__":
    sys.exit(main())
