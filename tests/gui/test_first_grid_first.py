"""The first grid comes before the receptive fields and the model catalogue: both are
worked out on the worker after it (the first field trace in a process costs ~1.5 s and
the catalogue imports torchvision), and the views show them once they are in."""
from __future__ import annotations


def test_the_first_capture_does_not_wait_for_fields_or_the_catalogue(make_window, qtbot, wait_idle):
    from featurescope.gui.caches import receptive_fields as field_cache

    window = make_window(start=False)
    seen = {}

    def first(result):
        if result is not None and not seen:
            model = window.state.model
            seen.update(fields_known=field_cache.ready(model),
                        catalogue=window.model_panel.filled)
            seen["sentence"] = window.layer_info_panel.browser.toPlainText()

    window.state.result_changed.connect(first)
    ready = []
    window.state.fields_ready.connect(ready.append)
    window.start()
    wait_idle(window)
    # at the first capture neither was there: nothing ahead of the grid but the model
    assert seen == {"fields_known": False, "catalogue": False,
                    "sentence": seen["sentence"]}
    assert "being worked out" in seen["sentence"]
    # then the worker brought both, and the layer info shows the field
    assert ready == [window.state.model]
    qtbot.waitUntil(lambda: window.model_panel.filled, timeout=60000)
    assert window.layer_info_panel.field is not None
    text = window.layer_info_panel.browser.toPlainText()
    assert "Receptive field: " in text and "px of the" in text
    assert window.model_panel.models.topLevelItemCount() > 10
