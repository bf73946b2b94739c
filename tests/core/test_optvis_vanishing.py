"""Feature visualisation where the objective's gradient vanishes from noise (a unit that
is zero on every grey-ish image, as pool layers behind a ReLU6 and dead-looking channels
are): the picture must excite the unit more than the best sample photo does, or the
result says it failed, never a silent flat picture."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import featurescope as fs
from featurescope.core.optvis.render import Visualization, activation_of


class RedOnly(nn.Module):
    """Fires (after a ReLU) only where a pixel is strongly red; zero on noise around grey."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1)
        self.pool = nn.MaxPool2d(2)
        with torch.no_grad():
            self.conv.weight[:] = torch.tensor([[1.0, -1.0, -1.0], [1.0, -1.0, -1.0]]).view(2, 3, 1, 1)
            self.conv.bias[:] = torch.tensor([-0.3, -0.1])

    def forward(self, x):
        return self.pool(torch.relu(self.conv(x)))


def test_a_unit_noise_cannot_move_is_started_from_the_photo_that_drives_it():
    net = RedOnly().eval()
    made = fs.visualize(net, "pool", [0, 1], steps=24, size=32)
    assert np.isfinite(made.photo).all() and (made.photo > 0).all()  # photos do drive it
    assert (made.activations > made.photo).all(), (made.activations, made.photo)
    assert made.failed == []
    # the number is the picture's own, measured again independently of the optimiser
    again = activation_of(net, "pool", [0, 1], made.images)
    assert again == pytest.approx(made.activations, rel=1e-3, abs=1e-3)
    assert made.images.std() > 5  # not a flat grey picture


def test_a_picture_below_the_photo_is_reported_in_one_line(capsys):
    from featurescope.cli.visualize import _warn_failed

    made = Visualization(np.zeros((2, 8, 8, 3), np.uint8), np.array([0.0, 3.0], np.float32), [4, 5],
                         "pool", {}, np.array([0.2, 1.0], np.float32))
    assert made.failed == [4]
    _warn_failed(made)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no visualisation found for pool channel 4" in err[0] and "0.2" in err[0]
