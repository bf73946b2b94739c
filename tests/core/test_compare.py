"""Comparing two images at one layer, with hand-computed numbers."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from featurescope.core.analysis.compare import ComparisonError, LayerComparison, compare_layer
from featurescope.core.errors import FeaturescopeError


def pair():
    """Five 2x2 channels of image A and image B.

    ch  A            B              cosine       |A - B|
    0   1 0 / 0 1    1 0 / 0 1       1           0 0 / 0 0
    1   1 2 / 3 4   -1 -2 / -3 -4   -1           2 4 / 6 8
    2   0 0 / 0 0    0 0 / 0 0       1 (both 0)  0
    3   0 0 / 0 0    0 3 / 4 0       0 (one 0)   0 3 / 4 0
    4   1 0 / 0 0    1 1 / 0 0       1/sqrt(2)   0 1 / 0 0
    """
    a = np.array([[[1, 0], [0, 1]], [[1, 2], [3, 4]], [[0, 0], [0, 0]],
                  [[0, 0], [0, 0]], [[1, 0], [0, 0]]], dtype=np.float32)
    b = np.array([[[1, 0], [0, 1]], [[-1, -2], [-3, -4]], [[0, 0], [0, 0]],
                  [[0, 3], [4, 0]], [[1, 1], [0, 0]]], dtype=np.float32)
    return a, b


def test_exact_numbers():
    a, b = pair()
    # Tensors, as a CaptureResult holds them.
    result = compare_layer({"conv": torch.from_numpy(a)}, {"conv": torch.from_numpy(b)}, "conv")
    assert isinstance(result, LayerComparison) and result.layer == "conv"
    assert result.a.dtype == np.float32 and (result.a == a).all() and (result.b == b).all()
    assert result.difference[1].tolist() == [[2, 4], [6, 8]]
    assert result.difference[3].tolist() == [[0, 3], [4, 0]]
    assert result.difference.sum() == 28
    # One scale for A, B and |A - B|: lowest value -4 (B), highest 8 (the difference).
    assert result.shared_levels == (-4.0, 8.0)
    assert result.channel_levels.tolist() == [[0, 1], [-4, 8], [0, 0], [0, 4], [0, 1]]
    assert result.channel_similarity.tolist() == pytest.approx([1, -1, 1, 0, 1 / math.sqrt(2)], abs=1e-12)
    # Whole layer: dot -27, |A|^2 = 33, |B|^2 = 59.
    assert result.similarity == pytest.approx(-27 / math.sqrt(33 * 59), abs=1e-12)
    assert result.mean_abs_difference == pytest.approx(1.4)
    assert result.most_different_channels().tolist() == [1, 3, 4, 0, 2]


def test_identical_images_are_fully_similar():
    a, _ = pair()
    result = compare_layer({"x": a}, {"x": a.copy()}, "x")
    assert result.similarity == 1.0 and (result.channel_similarity == 1.0).all()
    assert result.difference.max() == 0 and result.mean_abs_difference == 0.0
    assert result.shared_levels == (0.0, 4.0)


def test_non_finite_values_give_no_nan_similarity_and_no_warning():
    a, b = pair()
    a[0, 0, 0] = np.nan  # channel 0 of A becomes 0 0 / 0 1 for the cosine: 1/sqrt(2)
    b[4, 0, 1] = np.inf  # channel 4 of B becomes 1 0 / 0 0: identical to A
    b[2] = np.nan  # channel 2 of B: no finite value, counts as zeros like A's
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = compare_layer({"x": a}, {"x": b}, "x")
    assert result.channel_similarity.tolist() == pytest.approx([1 / math.sqrt(2), -1, 1, 0, 1], abs=1e-12)
    assert np.isfinite(result.similarity)
    assert result.shared_levels == (-4.0, 8.0)
    assert result.channel_levels[2].tolist() == [0.0, 0.0]  # |0 - NaN| is NaN: nothing finite
    assert result.channel_levels[4].tolist() == [0.0, 1.0]  # inf and |1 - inf| left out
    assert np.isnan(result.difference[0, 0, 0]) and np.isinf(result.difference[4, 0, 1])


def test_errors_are_sentences():
    a, _ = pair()
    with pytest.raises(ComparisonError, match="Image B's capture has no layer 'conv'") as error:
        compare_layer({"conv": a}, {"other": a}, "conv")
    assert isinstance(error.value, FeaturescopeError)
    with pytest.raises(ComparisonError, match=r"shape \(5, 2, 2\) for image A but \(5, 1, 4\)"):
        compare_layer({"conv": a}, {"conv": a.reshape(5, 1, 4)}, "conv")
    with pytest.raises(ComparisonError, match="not a \\(C, H, W\\) feature map"):
        compare_layer({"fc": np.zeros(10)}, {"fc": np.zeros(10)}, "fc")


def test_large_layer_similarity_of_a_slightly_noisy_copy():
    # Speed is a benchmark figure (benchmarks/), not a timed test.
    rng = np.random.default_rng(0)
    a = rng.standard_normal((512, 28, 28)).astype(np.float32)
    b = a + 0.1 * rng.standard_normal((512, 28, 28)).astype(np.float32)
    result = compare_layer({"x": a}, {"x": b}, "x")
    assert result.channel_similarity.shape == (512,)
    assert 0.99 < result.channel_similarity.min() and result.similarity > 0.99


def test_two_real_captures_of_the_default_model():
    from featurescope.core.capture.capture import capture
    from featurescope.core.io.images import load_image
    from featurescope.core.models.load import load_model
    from featurescope.core.resources import resource_path

    model = load_model("efficientnet_lite0", device="cpu")
    layers = ["stem", "head"]
    cat = load_image(resource_path("samples", "chelsea.png"))
    coffee = load_image(resource_path("samples", "coffee.png"))
    result_a = capture(model, cat, layers=layers)
    result_b = capture(model, coffee, layers=layers)
    head = compare_layer(result_a, result_b, "head")
    assert head.a.shape == (1280, 7, 7)
    assert np.array_equal(head.a, result_a["head"].numpy())
    assert np.array_equal(head.difference, np.abs(result_a["head"].numpy() - result_b["head"].numpy()))
    low, high = head.shared_levels
    assert low == min(head.a.min(), head.b.min()) and high >= head.difference.max()
    assert -1 <= head.similarity < 0.99  # a cat is not an espresso
    same = compare_layer(result_a, capture(model, cat, layers=layers), "stem")
    assert same.similarity == pytest.approx(1.0, abs=1e-6) and same.difference.max() == 0
    with pytest.raises(ComparisonError, match="no layer 'blocks.3.project'"):
        compare_layer(result_a, result_b, "blocks.3.project")
