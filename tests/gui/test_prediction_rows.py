"""While a video plays, the prediction rows keep their order and width from frame to frame."""
from __future__ import annotations

import math

import torch

from featurescope.core.capture.result import CaptureResult
from featurescope.gui.docks.predictions_panel import PredictionsPanel
from featurescope.gui.model.prediction_rows import steady_order
from featurescope.gui.model.state import AppState


def _logits(probabilities: dict[int, float], classes: int = 10) -> torch.Tensor:
    """Logits whose softmax gives ``probabilities`` (the rest share what is left)."""
    rest = (1.0 - sum(probabilities.values())) / (classes - len(probabilities))
    return torch.tensor([math.log(probabilities.get(i, rest)) for i in range(classes)])


def _frame(state, probabilities):
    result = CaptureResult({}, [], _logits(probabilities), torch.zeros(1, 3, 8, 8))
    state.set_frame(None, "clip.mp4", result)


def test_a_class_keeps_its_row_unless_the_one_below_clearly_beats_it():
    assert steady_order([3, 7], [(7, 0.41), (3, 0.40)]) == [3, 7]  # 1 point apart: stays
    assert steady_order([3, 7], [(7, 0.45), (3, 0.40)]) == [7, 3]  # 5 points: swaps
    # a new class that leads clearly goes to the top; one that falls out leaves its row;
    # 7 and 3 stay as they were (1 point apart)
    assert steady_order([3, 7, 1], [(5, 0.6), (7, 0.2), (3, 0.19)]) == [5, 3, 7]
    # a still photo has no previous rows: strict rank order
    assert steady_order([], [(2, 0.5), (4, 0.3), (0, 0.2)]) == [2, 4, 0]


def test_live_rows_do_not_swap_on_a_near_tie_but_a_new_photo_is_ranked(qtbot):
    state = AppState()
    panel = PredictionsPanel(state)
    qtbot.addWidget(panel)
    panel.resize(300, 240)
    panel.show()
    _frame(state, {1: 0.40, 2: 0.39, 3: 0.10})
    first = [label for label, _ in panel.texts()]
    assert first[:3] == ["class 1", "class 2", "class 3"]
    widths = [label.width() for label, _ in panel.rows]
    _frame(state, {1: 0.39, 2: 0.40, 3: 0.10})  # a near tie flips: the rows stay
    assert [label for label, _ in panel.texts()][:3] == ["class 1", "class 2", "class 3"]
    # and the percentages follow their classes
    assert panel.texts()[0][1] == "39.0 %" and panel.texts()[1][1] == "40.0 %"
    _frame(state, {1: 0.30, 2: 0.50, 3: 0.10})  # a clear lead moves up
    assert [label for label, _ in panel.texts()][:2] == ["class 2", "class 1"]
    qtbot.wait(10)
    assert [label.width() for label, _ in panel.rows] == widths  # a new name moves no bar
    # a photo (not a frame) is ranked strictly
    state.set_image(None, "photo.jpg")
    state.set_result(CaptureResult({}, [], _logits({1: 0.40, 2: 0.41}), torch.zeros(1, 3, 8, 8)))
    assert [label for label, _ in panel.texts()][:2] == ["class 2", "class 1"]
