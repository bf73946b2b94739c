"""``video --view gradcam``: the map covers exactly the centre crop the network saw, drawn
where that crop lies in the frame; what the network never saw has no map over it."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from featurescope.core.live.render import crop_box, view_picture
from featurescope.core.models.load import load_model
from featurescope.core.render.grids import colormap_lut
from featurescope.core.render.options import DisplayOptions

NET = '''
import torch
from torch import nn


class RedSpot(nn.Module):
    """Class 0 = how much pure red there is: a 1x1 conv that fires on red only."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 1, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(1, 2)
        with torch.no_grad():
            self.conv.weight[:] = torch.tensor([1.0, -1.0, -1.0]).view(1, 3, 1, 1)
            self.conv.bias.zero_()
            self.fc.weight[:] = torch.tensor([[1.0], [-1.0]])
            self.fc.bias.zero_()

    def forward(self, x):
        return self.fc(self.pool(torch.relu(self.conv(x))).flatten(1))
'''


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("nets")
    (folder / "redspot.py").write_text(NET)
    return load_model(f"{folder / 'redspot.py'}:RedSpot", weights="default", device="cpu", input_size=64)


def _heat(picture: np.ndarray, frame: np.ndarray) -> np.ndarray:
    """The map value under each pixel, read back from the inferno overlay (alpha 0.5)."""
    lut = colormap_lut("inferno")[1:].astype(np.float32)
    colour = (picture.astype(np.float32) - 0.5 * frame.astype(np.float32)) / 0.5
    distance = ((colour[:, :, None, :] - lut[None, None]) ** 2).sum(-1)
    return distance.argmin(-1) / (len(lut) - 1)


def test_gradcam_is_drawn_over_the_crop_where_it_lies_in_the_frame(model):
    frame = Image.new("RGB", (320, 240), (128, 128, 128))
    draw = ImageDraw.Draw(frame)
    draw.ellipse((190, 110, 210, 130), fill=(255, 0, 0))  # seen: inside the centre crop
    draw.ellipse((10, 110, 30, 130), fill=(255, 0, 0))  # never seen: left of the crop
    top, left, bottom, right = crop_box(model, 240, 320)
    side = 64 * 240 / 73  # resized to 73 px high, a 64 px crop: in frame pixels
    assert (bottom - top, right - left) == pytest.approx((side, side), abs=1)  # widths round down
    assert (top + bottom) / 2 == pytest.approx(120, abs=4) and (left + right) / 2 == pytest.approx(160, abs=4)
    picture = view_picture(model, frame, "conv", "gradcam", None, DisplayOptions())
    pixels = np.asarray(frame)
    assert picture.shape == pixels.shape  # the frame as it is, not squashed to a square
    # outside the crop: the frame dimmed, no map (the unseen dot is not marked)
    dimmed = (pixels * 0.4 + 0.5).astype(int)
    for strip in (np.s_[:, : int(left) - 1], np.s_[: int(top) - 1], np.s_[int(bottom) + 1:]):
        assert np.abs(picture[strip].astype(int) - dimmed[strip]).max() <= 1
    inside = (slice(int(top) + 1, int(bottom) - 1), slice(int(left) + 1, int(right) - 1))
    heat = _heat(picture[inside], pixels[inside])
    y, x = np.unravel_index(np.argmax(heat), heat.shape)
    assert abs(y + inside[0].start - 120) <= 6 and abs(x + inside[1].start - 200) <= 6
    assert heat.max() > 0.9 and np.median(heat) < 0.05
