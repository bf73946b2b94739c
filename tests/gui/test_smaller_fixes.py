"""Small things a user noticed: "-0.0 pts", "R, G, B" for a grey model, a squeezed table."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from featurescope.gui.model.state import AppState

GREY_NET = '''
import torch.nn as nn

def Net():
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(4, 10))
'''


def test_switch_off_table_shows_its_rows_and_never_minus_zero(qtbot):
    from featurescope.gui.views.ablation_view import AblationView

    view = AblationView(AppState())
    qtbot.addWidget(view)
    view.resize(700, 420)
    view.show()
    changes = [SimpleNamespace(label=f"class {i}", index=i, before=0.3 - i / 20, after=0.3 - i / 20 - d, change=-d)
               for i, d in enumerate((0.02, -0.0004, 0.00001, -0.00002, 0.0))]
    first = SimpleNamespace(label="class 0", probability=0.3, index=0)
    view.ablation = SimpleNamespace(changes=changes, before=[first], after=[first], channels=[1, 2],
                                    top_changed=False, layer="0")
    view._show_table()
    texts = [view.table.item(r, 3).text() for r in range(view.table.rowCount())]
    assert texts == ["-2.0 pts", "0.0 pts", "0.0 pts", "0.0 pts", "0.0 pts"]
    qtbot.wait(50)
    row = view.table.rowHeight(0)
    assert view.table.height() >= view.table.horizontalHeader().height() + 5 * row


def test_playground_says_grey_for_a_one_channel_model(qtbot, tmp_path):
    from featurescope.core.analysis.playground import similar_filters
    from featurescope.core.models.load import load_model
    from featurescope.gui.views.playground_view import PlaygroundView

    (tmp_path / "grey.py").write_text(GREY_NET)
    model = load_model(f"{tmp_path / 'grey.py'}:Net", weights="none", device="cpu", input_size=32)
    state = AppState()
    view = PlaygroundView(state)
    qtbot.addWidget(view)
    state.set_model(model)
    view._show_similar(similar_filters, np.eye(3, dtype=np.float32))
    text = view.similar_title.text()
    assert "R, G, B" not in text and "grey" in text
