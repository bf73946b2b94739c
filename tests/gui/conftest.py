"""Fixtures for driving the real main window offscreen."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def _session_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("featurescope-cache")


@pytest.fixture(autouse=True)
def _own_cache(_session_cache, monkeypatch):
    """Feature visualisations the views make in the background (Why, Circuits) go to a
    cache of the test session's own, never the user's (a test may set its own)."""
    monkeypatch.setenv("FEATURESCOPE_CACHE_DIR", str(_session_cache))


@pytest.fixture
def settings_path(tmp_path):
    """An INI file of our own: tests never touch the user's settings."""
    return tmp_path / "settings.ini"


def _wait_idle(qtbot, window, timeout=60000):
    """Until every request has been answered and the state holds a capture."""
    qtbot.waitUntil(lambda: window.jobs.is_idle() and window.state.result is not None, timeout=timeout)


@pytest.fixture
def wait_idle(qtbot):
    return lambda window, timeout=60000: _wait_idle(qtbot, window, timeout)


@pytest.fixture
def make_window(qtbot, settings_path):
    """Build MainWindows that are closed and whose worker thread is drained at teardown."""
    from featurescope.gui.main_window import MainWindow

    made = []

    def make(start=True, settings=None, **kwargs):
        window = MainWindow(settings=settings or settings_path, start=start, **kwargs)
        qtbot.addWidget(window)
        window.show()
        made.append(window)
        return window

    yield make
    for window in made:
        window.jobs.shutdown()
        window.close()


@pytest.fixture
def window(make_window, qtbot):
    """The main window after its first start: efficientnet_lite0 and the cat, captured."""
    window = make_window()
    _wait_idle(qtbot, window)
    return window
