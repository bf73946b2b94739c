"""featurescope screenshot: the real window, offscreen, saved once everything is computed."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from featurescope.core.errors import FeaturescopeError, ImageError
from featurescope.gui.screenshot import save_screenshot


def test_screenshot_of_the_grid(qtbot, tmp_path):
    out = save_screenshot(tmp_path / "grid.png", layer="blocks.1.expand", size=(1280, 800))
    picture = np.asarray(Image.open(out).convert("RGB"))
    assert picture.shape[:2] == (800, 1280)
    assert len(np.unique(picture.reshape(-1, 3), axis=0)) > 1000  # real maps, not a blank window


def test_screenshot_refuses_what_does_not_exist(qtbot, tmp_path):
    with pytest.raises(FeaturescopeError, match="no layer 'nope'"):
        save_screenshot(tmp_path / "x.png", layer="nope")
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(ImageError, match="bad.jpg"):
        save_screenshot(tmp_path / "y.png", image=bad)
    with pytest.raises(FeaturescopeError, match="view"):
        save_screenshot(tmp_path / "z.png", view="sideways")
