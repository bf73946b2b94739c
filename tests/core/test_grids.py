"""Feature-map grids: geometry, normalisation, edge values, colours."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from featurescope.core.render.grids import (
    COLORMAPS,
    SEPARATOR_RGB,
    channel_order,
    colormap_lut,
    feature_grid,
    grid_indices,
    grid_layout,
)


def _expected_channel_indices(x: np.ndarray) -> np.ndarray:
    """Reference per-channel min..max normalisation, written the obvious way."""
    lo = x.min(axis=(1, 2), keepdims=True)
    hi = x.max(axis=(1, 2), keepdims=True)
    return np.floor((x - lo) / (hi - lo) * 254 + 1.5).astype(np.uint8)


@pytest.mark.parametrize("order", ["index", "mean", "max"])
def test_locate_maps_every_tile_pixel_back_to_its_channel_and_position(order):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(7, 3, 5)).astype(np.float32)
    x += np.arange(7, dtype=np.float32)[::-1, None, None] * 10  # distinct means/maxes
    indices, layout = grid_indices(x, order=order, gap=2)
    assert layout.rows * layout.columns >= 7
    assert indices.shape == layout.shape == (layout.rows * 3 + (layout.rows - 1) * 2,
                                             layout.columns * 5 + (layout.columns - 1) * 2)
    expected = _expected_channel_indices(x)
    seen = set()
    for y in range(indices.shape[0]):
        for xx in range(indices.shape[1]):
            hit = layout.locate(y, xx)
            if hit is None:
                assert indices[y, xx] == 0  # separators and the empty tiles
                continue
            channel, ty, tx = hit
            seen.add((channel, ty, tx))
            assert indices[y, xx] == expected[channel, ty, tx]
            y0, x0 = layout.tile_origin(channel)
            assert (y0 + ty, x0 + tx) == (y, xx)
    assert len(seen) == 7 * 3 * 5
    if order != "index":
        # Channel 0 has the largest offset so it is strongest and comes first.
        assert layout.order[0] == 0 and list(layout.order) == list(range(7))
    assert layout.locate(-1, 0) is None and layout.locate(0, indices.shape[1]) is None


def test_order_by_mean_and_max_keeps_true_channel_numbers():
    x = np.zeros((4, 2, 2), np.float32)
    x[0] = 1.0
    x[1, 0, 0] = 100.0  # mean 25, max 100
    x[2] = 30.0  # mean 30, max 30
    x[3] = 2.0
    assert list(channel_order(x, "index")) == [0, 1, 2, 3]
    assert list(channel_order(x, "mean")) == [2, 1, 3, 0]
    assert list(channel_order(torch.from_numpy(x), "max")) == [1, 2, 3, 0]
    indices, layout = grid_indices(x, order="max", gap=1)
    assert list(layout.order) == [1, 2, 3, 0]
    assert layout.tile_origin(1) == (0, 0)
    y0, x0 = layout.tile_origin(0)
    assert layout.locate(y0 + 1, x0 + 1) == (0, 1, 1)
    # Channel 1 (one hot pixel) sits first and keeps its own normalisation.
    assert indices[0, 0] == 255 and indices[0, 1] == 1


def test_near_square_layout_and_forced_columns():
    assert (grid_layout(64, 10, 10).rows, grid_layout(64, 10, 10).columns) == (8, 8)
    layout = grid_layout(512, 14, 14)
    assert layout.columns == 23 and layout.rows == 23
    wide = grid_layout(16, 4, 40)  # wide tiles: fewer columns, mosaic close to square
    h, w = wide.shape
    assert 0.4 < h / w < 2.5
    assert grid_layout(10, 3, 3, columns=5).rows == 2
    assert grid_layout(1, 3, 3).shape == (3, 3)
    with pytest.raises(ValueError):
        grid_layout(3, 2, 2, order=[0, 0, 1])


def test_channel_normalisation_values():
    x = np.array([[[0.0, 1.0], [2.0, 4.0]], [[-10.0, -10.0], [-10.0, 10.0]]], np.float32)
    indices, layout = grid_indices(x, gap=1, columns=2)
    assert indices.shape == (2, 5)
    # channel 0: (v - 0) / 4 * 254 + 1 rounded -> 1, 64.5 -> 65 (floor(65.0)), 128, 255
    assert indices[:, :2].tolist() == [[1, 65], [128, 255]]
    assert indices[:, 2].tolist() == [0, 0]
    assert indices[:, 3:].tolist() == [[1, 1], [1, 255]]


def test_layer_normalisation_shares_one_range():
    x = np.stack([np.full((2, 2), 0.0), np.full((2, 2), 5.0), np.full((2, 2), 10.0)]).astype(np.float32)
    indices, layout = grid_indices(x, normalize="layer", columns=3, gap=1)
    tiles = [indices[:, layout.tile_origin(c)[1]] for c in range(3)]
    assert [int(t[0]) for t in tiles] == [1, 128, 255]


def test_signed_scaling_is_symmetric_around_zero():
    x = np.array([[[-2.0, -1.0, 0.0, 1.0]], [[0.0, 0.0, 0.5, 1.0]]], np.float32)
    indices, _ = grid_indices(x, signed=True, columns=1, gap=0)
    assert indices[0].tolist() == [1, 65, 128, 192]  # -2 is the amplitude: 0 -> 128, halves round up
    assert indices[1].tolist() == [128, 128, 192, 255]


def test_percentile_clipping_saturates_outliers():
    x = np.linspace(0, 1, 10000, dtype=np.float32).reshape(1, 100, 100)
    x[0, 0, 0] = 1000.0  # one outlier
    plain, _ = grid_indices(x)
    clipped, _ = grid_indices(x, clip_percentile=1)
    assert plain[50, 50] <= 2  # the outlier squashes everything else to the bottom
    assert 100 < clipped[50, 50] < 160  # the middle value lands in the middle
    assert clipped[0, 0] == 255 and clipped[0, 1] == 1
    with pytest.raises(ValueError):
        grid_indices(x, clip_percentile=60)


@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("normalize", ["channel", "layer"])
@pytest.mark.parametrize("clip", [None, 2])
def test_nan_inf_and_constant_channels_give_no_warnings(signed, normalize, clip):
    x = np.random.default_rng(0).normal(size=(6, 4, 4)).astype(np.float32)
    x[1] = 3.0  # constant
    x[2, 0, 0] = np.nan
    x[3, 1, 1] = np.inf
    x[3, 2, 2] = -np.inf
    x[4] = np.nan  # nothing finite at all
    x[5] = 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        indices, layout = grid_indices(x, normalize=normalize, signed=signed,
                                       clip_percentile=clip, columns=6, gap=0)
        rgb = feature_grid(x, normalize=normalize, colormap="coolwarm" if signed else "gray",
                           clip_percentile=clip, columns=6, gap=0)
    assert indices.min() >= 1  # every pixel is a real value (no gap, no empty tile)

    def tile(c):
        return indices[:, 4 * c:4 * c + 4]

    assert tile(3)[1, 1] == 255 and tile(3)[2, 2] == 1
    if normalize == "channel":
        assert np.all(tile(1) == (255 if signed else 1))  # constant 3: the top when signed
        assert np.all(tile(5) == (128 if signed else 1))  # constant zero
        assert np.all(tile(4) == (128 if signed else 1))  # all NaN
        assert tile(2)[0, 0] == (128 if signed else 1)
        if clip is None:  # the rest of the NaN channel is normalised as usual
            assert tile(2).max() == 255
    assert rgb.shape == indices.shape + (3,)


def test_extreme_float_values_stay_in_range():
    x = np.array([[[-3e38, 3e38], [0.0, 1.0]]], np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        indices, _ = grid_indices(x)
        indices64, _ = grid_indices(x.astype(np.float64) * 1e10)  # beyond float32
    assert indices[0].tolist() == [1, 255] and indices[1].tolist() == [128, 128]
    assert indices64[0, 0] == 1


def test_colormap_endpoints_match_matplotlib():
    matplotlib = pytest.importorskip("matplotlib")
    names = {"gray": "gray", "viridis": "viridis", "magma": "magma", "inferno": "inferno",
             "plasma": "plasma", "coolwarm": "coolwarm", "rdbu": "RdBu_r"}
    assert set(names) == set(COLORMAPS)
    for ours, theirs in names.items():
        lut = colormap_lut(ours)
        assert lut.shape == (256, 3) and lut.dtype == np.uint8
        assert tuple(lut[0]) == SEPARATOR_RGB
        cmap = matplotlib.colormaps[theirs]
        for index, value in ((1, 0.0), (255, 1.0), (128, 0.5)):
            expected = np.round(np.asarray(cmap(value)[:3]) * 255)
            assert np.abs(lut[index].astype(int) - expected).max() <= 1, (ours, index)
    with pytest.raises(ValueError, match="Unknown colormap"):
        colormap_lut("jet")


def test_feature_grid_is_lut_of_indices_and_upscales_exactly():
    t = torch.randn(5, 6, 7)
    indices, layout = grid_indices(t, order="mean", gap=1)
    lut = colormap_lut("magma")
    rgb = feature_grid(t, colormap="magma", order="mean")
    assert rgb.dtype == np.uint8 and rgb.flags.c_contiguous
    np.testing.assert_array_equal(rgb, lut[indices])
    big = feature_grid(t, colormap="magma", order="mean", upscale=3)
    np.testing.assert_array_equal(big, np.repeat(np.repeat(lut[indices], 3, axis=0), 3, axis=1))
    # Diverging colormaps are signed by default: 0 -> the map's centre.
    signed_idx, _ = grid_indices(t, signed=True)
    np.testing.assert_array_equal(feature_grid(t, colormap="coolwarm"), colormap_lut("coolwarm")[signed_idx])


def test_accepts_half_tensors_and_2d_maps():
    t = torch.arange(12, dtype=torch.float16).reshape(1, 3, 4)
    indices, layout = grid_indices(t)
    assert indices[0, 0] == 1 and indices[-1, -1] == 255
    indices2, _ = grid_indices(np.arange(12.0).reshape(3, 4))
    np.testing.assert_array_equal(indices, indices2)
    with pytest.raises(ValueError):
        grid_indices(np.zeros((2, 3, 4, 5)))


@pytest.mark.parametrize("colormap", ["viridis", "coolwarm"])
def test_a_layer_of_1x1_maps_is_drawn_on_the_layers_scale(colormap):
    # efficientnet_lite0's pool: 1280 x 1 x 1. Scaled per channel every tile was one colour.
    rng = np.random.default_rng(4)
    pooled = rng.normal(size=(40, 1, 1)).astype(np.float32)
    per_channel = feature_grid(pooled, normalize="channel", colormap=colormap)
    layer = feature_grid(pooled, normalize="layer", colormap=colormap)
    np.testing.assert_array_equal(per_channel, layer)
    _, layout = grid_indices(pooled, normalize="channel")
    tiles = per_channel[:: layout.tile_height + layout.gap, :: layout.tile_width + layout.gap]
    assert len({tuple(p) for p in tiles.reshape(-1, 3)}) > 2
    # brute force: the brightest channel gets the top colour, the darkest the bottom one
    indices, layout = grid_indices(pooled, normalize="channel")
    y, x = layout.tile_origin(int(pooled.argmax()))
    assert indices[y, x] == 255
    y, x = layout.tile_origin(int(pooled.argmin()))
    assert indices[y, x] == 1
    assert layout.note == "1x1 maps: one colour scale for the layer"
    # clipping per channel of one value would be flat too
    clipped, _ = grid_indices(pooled, normalize="channel", clip_percentile=5)
    np.testing.assert_array_equal(clipped, grid_indices(pooled, normalize="layer", clip_percentile=5)[0])
    # maps with more than one pixel keep per-channel scaling and have no note
    assert grid_indices(rng.normal(size=(4, 2, 2)), normalize="channel")[1].note == ""


@pytest.mark.parametrize("colormap", ["viridis", "coolwarm"])
@pytest.mark.parametrize("normalize", ["channel", "layer"])
@pytest.mark.parametrize("clip", [None, 2.0])
@pytest.mark.parametrize("shape", [(6, 64, 70), (5, 1, 1)])  # 4480 values: a subsample
def test_the_channel_views_levels_are_the_grids(colormap, normalize, clip, shape):
    """The Channel view's colour bar (colour_levels) maps every value of a channel to the
    colour the grid gives it, for every display option (a 1x1 layer, NaN, a constant
    channel, clipping, diverging maps, per layer)."""
    from featurescope.core.render import grids
    from featurescope.core.render.options import DisplayOptions, colour_levels, grid_arguments

    rng = np.random.default_rng(3)
    chw = (rng.standard_normal(shape) * np.arange(1, shape[0] + 1)[:, None, None]).astype(np.float32)
    chw[1] = 0.25  # constant
    if shape[1] > 1:
        chw[2, 0, :5] = np.nan
    options = DisplayOptions(colormap=colormap, normalize=normalize, clip_percentile=clip)
    indices, layout = grids.grid_indices(chw, **grid_arguments(options))
    c_total, h, w = chw.shape
    for channel in range(c_total):
        lo, hi = colour_levels(chw, channel, options)
        assert hi > lo
        y, x = layout.tile_origin(channel)
        tile = indices[y:y + h, x:x + w].astype(int)
        values = np.nan_to_num(chw[channel].astype(np.float64), nan=np.inf)
        # pyqtgraph's lookup: (value - lo) / (hi - lo) over the 255 colours after the separator
        expected = np.clip(np.floor((values - lo) / (hi - lo) * 254 + 0.5), 0, 254).astype(int) + 1
        finite = np.isfinite(chw[channel])  # (NaN is painted apart)
        diff = np.abs(tile[finite] - expected[finite])
        assert diff.max() <= 1, (channel, lo, hi)
        assert (diff == 0).mean() > 0.97
