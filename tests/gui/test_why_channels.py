"""The Why view's pictures of each listed channel: its feature visualisation (from the
cache at once, else made in the background) and, with an index open, its top crops."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

SAMPLES = Path(__file__).resolve().parents[2] / "resources" / "samples"
LAYER = "blocks.2.project"


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("FEATURESCOPE_CACHE_DIR", str(tmp_path / "cache"))
    # tiny settings for the pictures made in the background (the app's are 64 steps at 64 px)
    from featurescope.gui.caches import channel_visualisations

    monkeypatch.setattr(channel_visualisations, "THUMB_STEPS", 2)
    monkeypatch.setattr(channel_visualisations, "THUMB_SIZE", 32)
    return tmp_path / "cache"


def _settings(model, steps, size):
    from featurescope.core.optvis.hierarchy import natural_objective
    from featurescope.core.optvis.render import image_size, settings_of
    from featurescope.core.optvis.transforms import Robustness

    return settings_of(steps, image_size(model, size), 0, natural_objective(model, LAYER), Robustness(), 0.05)


def _visualisation_part(view, channel):
    from featurescope.gui.views.why_view import THUMB

    row = view.row_picture(channel)
    return row[:, 2 * THUMB + 8:3 * THUMB + 8]  # after the pair (2 thumbs + 4) and a 4 px gap


def test_each_channel_shows_its_visualisation_cached_or_made(window, qtbot, cache_dir):
    from featurescope.core.analysis.attribution import attribute
    from featurescope.core.optvis.cache import OptvisCache
    from featurescope.core.render.why_report import square_tile
    from featurescope.gui.views.why_view import THUMB

    model, result = window.state.model, window.state.result
    top = attribute(model, result.input, LAYER).top(12)
    cached = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    OptvisCache().put(model, LAYER, top[0], _settings(model, 64, 64), cached, 1.0)

    view = window.why_view
    window.state.set_layer(LAYER)
    window.tabs.setCurrentWidget(view)
    qtbot.waitUntil(lambda: view.answer is not None and view.answer.attribution.layer == LAYER, timeout=60000)
    np.testing.assert_array_equal(view.answer.visualisations[top[0]], cached)  # at once, from the cache
    np.testing.assert_array_equal(_visualisation_part(view, top[0]), square_tile(cached, THUMB))
    # the others are made in the background and fill in as they arrive
    second = top[1]
    qtbot.waitUntil(lambda: view.answer.visualisations.get(second) is not None, timeout=60000)
    made = OptvisCache().get(model, LAYER, second, _settings(model, 2, 32))
    assert made is not None
    np.testing.assert_array_equal(view.answer.visualisations[second], made[0])
    np.testing.assert_array_equal(_visualisation_part(view, second), square_tile(made[0], THUMB))
    row = [view.for_list.item(i).data(256) for i in range(view.for_list.count())].index(second)
    assert view.for_list.item(row).icon().availableSizes()[0].width() == 3 * THUMB + 8
    # no index open: no crops beside the channels
    assert view.row_picture(second).shape[1] == 3 * THUMB + 8
    window.jobs.cancel("why_optvis")


def test_with_an_index_open_each_channel_shows_its_top_crops(window, qtbot, cache_dir, tmp_path):
    from featurescope.core.index.build import build_index
    from featurescope.core.index.sheet import crop_pictures
    from featurescope.core.render.why_report import square_tile
    from featurescope.gui.views.why_view import THUMB

    folder = tmp_path / "photos"
    folder.mkdir()
    for sample in sorted(SAMPLES.iterdir())[:6]:
        if sample.suffix in (".png", ".jpg"):
            shutil.copy(sample, folder / sample.name)
    model = window.state.model
    index = build_index(model, folder, layers=[LAYER], top=3, batch_size=8, workers=0)

    view = window.why_view
    window.state.set_layer(LAYER)
    window.tabs.setCurrentWidget(view)
    qtbot.waitUntil(lambda: view.answer is not None and view.answer.attribution.layer == LAYER, timeout=60000)
    window.jobs.cancel("why_optvis")
    window.state.set_index(index)
    qtbot.waitUntil(lambda: view.answer.examples_of is index
                    and len(view.answer.examples) == len(view.answer.thumbnails), timeout=60000)
    channel = view.for_list.item(0).data(256)
    expected = crop_pictures(index.top(LAYER, channel, 3), THUMB)
    assert len(expected) == 3
    row = view.row_picture(channel)
    assert row.shape[1] == 4 * THUMB + 12  # pair, visualisation, a block of crops
    block = row[:, 3 * THUMB + 12:]
    small = (THUMB - 4) // 2
    np.testing.assert_array_equal(block[:small, :small], square_tile(expected[0], small))
    np.testing.assert_array_equal(block[:small, small + 4:], square_tile(expected[1], small))
    np.testing.assert_array_equal(block[small + 4:, :small], square_tile(expected[2], small))
    # the index closed: the crops go
    window.state.set_index(None)
    assert view.row_picture(channel).shape[1] == 3 * THUMB + 8
