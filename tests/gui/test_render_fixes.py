"""What the user saw wrong: a 1x1 layer in one colour, a histogram with negative counts,
Compare's tile boundaries vanishing when small."""
from __future__ import annotations


def test_a_1x1_layer_shows_different_colours_and_says_why(window):
    state, view = window.state, window.grid_view
    pooled = [name for name in state.result.layers if state.result[name].shape[-2:] == (1, 1)]
    assert pooled  # efficientnet_lite0's pool: 1280 x 1 x 1
    state.set_display(normalize="channel", clip_percentile=None, columns=None)
    state.set_layer(pooled[-1])
    assert view.shown_key[0] == pooled[-1]
    screen = view.lut()[view.image_item.image]
    layout = view.layout_
    tiles = screen[:: layout.tile_height + layout.gap, :: layout.tile_width + layout.gap]
    assert len({tuple(p) for p in tiles.reshape(-1, 3)}) > 2
    assert "1x1 maps: one colour scale for the layer" in view.title.text()


def test_the_histogram_never_shows_a_negative_count(qtbot, window):
    from featurescope.gui.docks.layer_info_panel import LayerInfoPanel
    from featurescope.gui.model.state import AppState

    empty = LayerInfoPanel(AppState())
    qtbot.addWidget(empty)
    empty.show()
    (x0, x1), (y0, y1) = empty.histogram_plot.getViewBox().viewRange()
    assert y0 >= 0.0 and y1 > y0
    panel = window.layer_info_panel
    qtbot.waitUntil(lambda: panel.histogram is not None, timeout=30000)
    (_, _), (y0, y1) = panel.histogram_plot.getViewBox().viewRange()
    assert y0 == 0.0 and y1 >= panel.histogram[0].max()


def test_compare_draws_its_tile_boundaries_as_one_pixel_lines(window, qtbot):
    from featurescope.core.resources import sample_images
    from featurescope.gui.views.grid_view import separator_path

    view = window.compare_view
    window.tabs.setCurrentWidget(view)
    view.set_image_b(str(sample_images()[-1]))
    qtbot.waitUntil(lambda: view.compare.comparison is not None, timeout=60000)
    layout = view.grid_layout
    assert layout.rows > 1 and layout.columns > 1
    expected = separator_path(layout)
    for key, lines in view.separators.items():
        assert lines.pen().isCosmetic() and lines.pen().widthF() == 0
        assert lines.path() == expected, key
        assert lines.path().elementCount() == 2 * (layout.rows - 1 + layout.columns - 1)
        assert lines.parentItem() is not None  # inside that picture's view box
