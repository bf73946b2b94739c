"""Filter grids: kernels as pictures, with known kernels and real conv layers."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision

from featurescope.core.render.filters import filter_grid, resolve_mode
from featurescope.core.render.grids import SEPARATOR_RGB, colormap_lut


def test_rgb_kernels_are_scaled_symmetrically_around_their_own_zero():
    w = np.zeros((2, 3, 2, 2), np.float32)
    w[0, 0, 0, 0] = 2.0  # red +max
    w[0, 1, 0, 0] = -2.0  # green -max
    w[0, 2, 1, 1] = 1.0  # blue half
    w[1] = 0.001  # a tiny kernel still fills the range: its own scale
    rgb, layout = filter_grid(torch.from_numpy(w), mode="auto", gap=1)
    assert (layout.rows, layout.columns) == (1, 2) and rgb.shape == (2, 5, 3)
    assert rgb[0, 0].tolist() == [255, 0, 128]
    assert rgb[1, 1].tolist() == [128, 128, 191]  # 1.0 of amplitude 2: 127.5 + 63.75 = 191.25
    assert rgb[0, 1].tolist() == [128, 128, 128]  # zero is mid grey
    assert rgb[:, 2].tolist() == [list(SEPARATOR_RGB)] * 2
    assert np.all(rgb[:, 3:] == 255)
    assert layout.locate(1, 4) == (1, 1, 1)
    big, _ = filter_grid(w, upscale=3)
    np.testing.assert_array_equal(big, np.repeat(np.repeat(rgb, 3, axis=0), 3, axis=1))


def test_mean_and_channel_modes_use_the_diverging_colormap():
    w = np.zeros((3, 4, 1, 3), np.float32)
    w[:, 0] = [[-1.0, 0.0, 1.0]]
    w[:, 1] = [[1.0, 0.0, 3.0]]  # mean over the 4 inputs: [0, 0, 1]
    lut = colormap_lut("coolwarm")
    assert resolve_mode(w.shape) == "mean"
    rgb, layout = filter_grid(w, gap=0)
    assert layout.columns * layout.rows >= 3 and rgb.shape[2] == 3
    assert rgb[0, :3].tolist() == lut[[128, 128, 255]].tolist()
    rgb0, _ = filter_grid(w, mode="channel", input_channel=0, gap=0)
    assert rgb0[0, :3].tolist() == lut[[1, 128, 255]].tolist()
    rgb1, _ = filter_grid(w, mode="channel", input_channel=1, colormap="gray", gap=0)
    assert rgb1[0, :3].tolist() == colormap_lut("gray")[[170, 128, 255]].tolist()
    with pytest.raises(ValueError, match="Input channel 4 does not exist"):
        filter_grid(w, mode="channel", input_channel=4)
    with pytest.raises(ValueError, match="3 input channels"):
        filter_grid(w, mode="rgb")


def test_real_layers_first_deep_and_depthwise():
    model = torchvision.models.mobilenet_v2(weights=None)
    first = model.features[0][0].weight  # (32, 3, 3, 3)
    rgb, layout = filter_grid(first)
    assert layout.channels == 32 and rgb.shape == layout.shape + (3,)
    depthwise = model.features[1].conv[0][0].weight  # (32, 1, 3, 3)
    assert resolve_mode(depthwise.shape) == "channel"
    dw_rgb, dw_layout = filter_grid(depthwise, colormap="coolwarm")
    # Each depthwise kernel's largest magnitude reaches an end of the colormap.
    y0, x0 = dw_layout.tile_origin(5)
    kernel = depthwise[5, 0].detach().numpy()
    k = np.unravel_index(np.abs(kernel).argmax(), kernel.shape)
    end = colormap_lut("coolwarm")[255 if kernel[k] > 0 else 1]
    assert dw_rgb[y0 + k[0], x0 + k[1]].tolist() == end.tolist()
    deep = model.features[2].conv[0][0].weight  # (96, 16, 1, 1)
    deep_rgb, deep_layout = filter_grid(deep, upscale=2)
    assert deep_rgb.shape == (deep_layout.shape[0] * 2, deep_layout.shape[1] * 2, 3)


def test_one_by_one_kernels_share_one_scale_so_magnitudes_show():
    # Per-kernel scaling would paint every 1x1 filter full red or full blue.
    weight = np.zeros((4, 2, 1, 1), np.float32)
    weight[:, :, 0, 0] = [[1.0, 1.0], [0.25, 0.25], [-0.5, -0.5], [-1.0, -1.0]]
    rgb, layout = filter_grid(weight, mode="mean", colormap="coolwarm")
    lut = colormap_lut("coolwarm")
    colours = [tuple(rgb[layout.tile_origin(c)]) for c in range(4)]
    assert colours[0] == tuple(lut[255]) and colours[3] == tuple(lut[1])
    assert colours[1] not in (tuple(lut[255]), tuple(lut[1]))  # a quarter: a paler red
    assert colours[2] not in (tuple(lut[255]), tuple(lut[1]))
