"""Channel statistics with hand-computed expected numbers."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from featurescope.core.analysis.stats import (activation_histogram, channel_scores, dead_channels,
                                     rank_channels, sparsity)


def layer() -> np.ndarray:
    """Five 2x2 channels with known statistics.

    channel  values            mean   max   fraction <= 0
    0        0  0  0  0        0      0     1.0   (dead)
    1        1  2  3  4        2.5    4     0.0
    2       -1 -1 -1 10        1.75   10    0.75
    3        5 -9  5 -1        0      5     0.5
    4        3  3  3  3        3      3     0.0
    """
    return np.array([
        [[0, 0], [0, 0]],
        [[1, 2], [3, 4]],
        [[-1, -1], [-1, 10]],
        [[5, -9], [5, -1]],
        [[3, 3], [3, 3]],
    ], dtype=np.float32)


def test_rank_by_mean_max_and_sparsity():
    chw = layer()
    assert rank_channels(chw, "mean").tolist() == [4, 1, 2, 0, 3]  # 0 and 3 tie: index order
    assert rank_channels(chw, "max").tolist() == [2, 3, 1, 4, 0]
    # Least sparse first; 1 and 4 are both never <= 0, 4 has the larger mean.
    assert rank_channels(chw, "sparsity").tolist() == [4, 1, 3, 2, 0]
    assert sparsity(chw).tolist() == [1.0, 0.0, 0.75, 0.5, 0.0]
    assert channel_scores(chw, "mean").tolist() == [0.0, 2.5, 1.75, 0.0, 3.0]
    assert rank_channels(chw).dtype == np.int64


def test_accepts_torch_tensors():
    assert rank_channels(torch.from_numpy(layer()), "max").tolist() == [2, 3, 1, 4, 0]
    assert dead_channels(torch.from_numpy(layer())).tolist() == [0]


def test_non_finite_values_are_ignored_without_warnings():
    chw = layer()
    chw[1, 0, 0] = np.nan  # channel 1 becomes 2, 3, 4: mean 3
    chw[3, 0, 1] = -np.inf  # channel 3 becomes 5, 5, -1: mean 3, max 5
    broken = np.full((1, 2, 2), np.nan, dtype=np.float32)
    chw = np.concatenate([chw, broken])  # channel 5: no finite value at all
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert channel_scores(chw, "mean").tolist() == [0.0, 3.0, 1.75, 3.0, 3.0, -np.inf]
        assert rank_channels(chw, "mean").tolist() == [1, 3, 4, 2, 0, 5]
        assert rank_channels(chw, "max").tolist() == [2, 3, 1, 4, 0, 5]
        assert dead_channels(chw).tolist() == [0, 5]
        counts, edges = activation_histogram(chw, bins=4)
    # Finite values: 0 0 0 0 | 2 3 4 | -1 -1 -1 10 | 5 5 -1 | 3 3 3 3 -> range -1 .. 10
    assert edges.tolist() == [-1.0, 1.75, 4.5, 7.25, 10.0]
    assert counts.tolist() == [8, 7, 2, 1]


def test_dead_channels_means_never_positive():
    chw = np.array([[[-1.0, 0.0]], [[-1.0, 1e-6]], [[-3.0, -2.0]]])
    assert dead_channels(chw).tolist() == [0, 2]
    assert dead_channels(np.ones((3, 1, 1))).size == 0


def test_histogram_edges_and_degenerate_layers():
    counts, edges = activation_histogram(layer(), bins=64)
    assert counts.shape == (64,) and edges.shape == (65,)
    assert counts.sum() == 20 and edges[0] == -9.0 and edges[-1] == 10.0
    counts, edges = activation_histogram(np.full((2, 3, 3), 7.0), bins=2)
    assert counts.tolist() == [0, 18] and edges.tolist() == [6.5, 7.0, 7.5]
    counts, edges = activation_histogram(np.full((1, 2, 2), np.inf), bins=3)
    assert counts.tolist() == [0, 0, 0] and edges[0] == 0.0 and edges[-1] == 1.0


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown ranking 'median'"):
        rank_channels(layer(), "median")
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        rank_channels(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="bins"):
        activation_histogram(layer(), bins=0)


def test_large_layer_rankings_are_permutations_in_order():
    # Speed is a benchmark figure (benchmarks/), not a timed test.
    rng = np.random.default_rng(0)
    chw = rng.standard_normal((512, 28, 28)).astype(np.float32)
    for by in ("mean", "max", "sparsity"):
        order = rank_channels(chw, by)
        assert sorted(order.tolist()) == list(range(512))
    means = chw.reshape(512, -1).mean(axis=1)
    assert np.all(np.diff(means[rank_channels(chw, "mean")]) <= 1e-6)
