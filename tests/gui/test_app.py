"""Start-up without a display, and settings that round-trip through an INI file."""
from __future__ import annotations

import pytest

from featurescope.gui import app


def test_no_display_says_so_and_exits_2(monkeypatch, capsys):
    monkeypatch.setattr(app.sys, "platform", "linux")
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(name, raising=False)
    assert app.run_app() == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "QT_QPA_PLATFORM=offscreen" in err
    assert "featurescope screenshot" in err and "featurescope export" in err


@pytest.mark.parametrize("env, expected", [
    ({}, False),
    ({"DISPLAY": ":0"}, True),
    ({"WAYLAND_DISPLAY": "wayland-0"}, True),
    ({"QT_QPA_PLATFORM": "offscreen"}, True),
])
def test_display_detection(monkeypatch, env, expected):
    monkeypatch.setattr(app.sys, "platform", "linux")
    assert app.has_display(env) is expected


def test_settings_round_trip(tmp_path, qtbot):
    from featurescope.gui.app import open_settings as Settings
    from featurescope.core.render.options import DisplayOptions

    path = tmp_path / "s.ini"
    first = Settings(path)
    first.set_model_spec("resnet18", "none", "cpu", "32x32", "0.5,0.5,0.5", "0.25")
    first.set_display_options(DisplayOptions(colormap="magma", normalize="layer", order="max",
                                             columns=7, upscale=3, clip_percentile=99.5))
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    a.write_bytes(b"x")
    b.write_bytes(b"x")
    first.add_recent_file(a)
    first.add_recent_file(b)
    first.add_recent_file(a)  # moves to the top, no duplicate
    first.set_last_folder("export", tmp_path)
    first.set_annotate_exports(False)
    first.sync()
    assert path.is_file()

    again = Settings(path)
    assert again.model_spec() == {"name": "resnet18", "weights": "none", "device": "cpu",
                                  "input_size": "32x32", "mean": "0.5,0.5,0.5", "std": "0.25"}
    assert again.display_options() == DisplayOptions(colormap="magma", normalize="layer", order="max",
                                                     columns=7, upscale=3, clip_percentile=99.5)
    assert again.recent_files() == [str(a.resolve()), str(b.resolve())]
    assert again.last_folder("export") == str(tmp_path)
    assert again.annotate_exports() is False


def test_fresh_settings_mean_the_default_model(tmp_path, qtbot):
    from featurescope.gui.app import open_settings as Settings
    from featurescope.core.render.options import DisplayOptions

    fresh = Settings(tmp_path / "none.ini")
    assert fresh.model_spec()["name"] == "efficientnet_lite0"
    assert fresh.model_spec()["weights"] == "default"
    assert fresh.display_options() == DisplayOptions()
    assert fresh.recent_files() == []


def test_icon_is_the_app_and_window_icon(make_window):
    from PySide6.QtGui import QImage
    from PySide6.QtWidgets import QApplication

    from featurescope.core.resources import resource_path
    from featurescope.gui.app import application

    path = resource_path("icons", "featurescope.png")
    image = QImage(str(path))
    assert (image.width(), image.height()) == (256, 256) and image.hasAlphaChannel()
    window = make_window(start=False)
    assert not window.windowIcon().isNull()
    assert window.windowIcon().pixmap(64, 64).toImage().pixelColor(32, 32).alpha() == 255
    assert application() is QApplication.instance()


def test_run_app_tunes_the_allocator_first(monkeypatch):
    from PySide6.QtWidgets import QApplication

    from featurescope.core.capture import memory
    from featurescope.gui import app as app_module
    from featurescope.gui.main_window import MainWindow

    calls = []
    monkeypatch.setattr(memory, "tune_allocator", lambda *a, **k: calls.append("tune") or True)
    monkeypatch.setattr(MainWindow, "start", lambda self, **kwargs: calls.append("start"))
    monkeypatch.setattr(MainWindow, "show", lambda self: None)
    monkeypatch.setattr(QApplication, "exec", lambda self: calls.append("exec") or 0)
    monkeypatch.setattr(app_module, "has_display", lambda: True)
    monkeypatch.setattr(app_module, "when_shown", lambda window, callback: callback())
    monkeypatch.setattr(MainWindow, "isVisible", lambda self: True)
    assert app_module.run_app() == 0
    assert calls == ["tune", "start", "exec"]


def test_missing_x11_libraries_are_one_sentence_not_a_core_dump(monkeypatch, capsys):
    # Qt >= 6.5 aborts the whole process when its xcb plugin's system libraries are
    # missing; featurescope checks by loading the plugin first and names the file.
    import ctypes

    from featurescope.gui import app

    def refuse(path, *args, **kwargs):
        raise OSError("libxcb-icccm.so.4: cannot open shared object file: No such file or directory")

    monkeypatch.setattr(ctypes, "CDLL", refuse)
    x11 = {"DISPLAY": ":0"}
    assert app.missing_x11_library(x11) == "libxcb-icccm.so.4"
    assert app.missing_x11_library({"DISPLAY": ":0", "QT_QPA_PLATFORM": "offscreen"}) is None
    assert app.missing_x11_library({"WAYLAND_DISPLAY": "wayland-0", "DISPLAY": ":0"}) is None

    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setenv("DISPLAY", ":0")
    assert app.run_app() == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "libxcb-icccm.so.4 is missing" in err and "apt install" in err


def test_the_window_leaves_pyqtgraphs_global_config_alone(window):
    """Another library in the process (a notebook, napari) owns pyqtgraph's config: the
    app sets the axis order on each ImageItem instead, so (H, W) arrays still come out
    H rows high and W columns wide."""
    import pyqtgraph as pg

    assert pg.getConfigOption("imageAxisOrder") == "col-major"
    items = [attr for view in (window.grid_view, window.channel_view, window.gradcam_view,
                               window.filters_view, window.image_panel)
             for attr in vars(view).values() if isinstance(attr, pg.ImageItem)]
    assert len(items) >= 5 and all(item.axisOrder == "row-major" for item in items)
    mosaic = window.grid_view.image_item.image
    assert (window.grid_view.image_item.height(), window.grid_view.image_item.width()) == mosaic.shape[:2]
