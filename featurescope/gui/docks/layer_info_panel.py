"""Layer info dock: what the selected layer does, with its own numbers filled in."""
from __future__ import annotations

import html
from typing import Any, Optional

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QTextBrowser, QVBoxLayout, QWidget

from featurescope.core.explain import LayerExplanation, explain_layer

EMPTY_TEXT = "Select a layer to see what it does."
_STANDARD = "out = floor((in + 2*padding - dilation*(kernel-1) - 1) / stride) + 1"
GENERAL_FORMULA = {"Conv2d": _STANDARD, "MaxPool2d": _STANDARD, "AvgPool2d": _STANDARD}


def find_layer_info(state) -> Optional[Any]:
    """The LayerInfo of ``state.layer``, from the capture result or else the model."""
    if not state.layer:
        return None
    if state.result is not None and state.layer in getattr(state.result, "info", {}):
        return state.result.info[state.layer]
    for info in getattr(state.model, "layer_info", None) or ():
        if info.name == state.layer:
            return info
    return None


def explanation_html(e: LayerExplanation) -> str:
    """Rich text for one explanation: title, a table of facts, the formulas, the prose."""
    esc = html.escape
    rows = "".join(
        f"<tr><td style='padding-right:12px; color:#808080'>{esc(k)}</td>"
        f"<td><b>{esc(v)}</b></td></tr>" for k, v in e.facts)
    formulas = "".join(
        f"<div style='margin-left:8px'>{esc(f.axis)}: <code>{esc(f.text)}</code></div>"
        for f in e.formulas)
    general = GENERAL_FORMULA.get(e.kind, "")
    if general and e.formulas and "ceil(in / stride)" not in e.formulas[0].text:
        formulas = f"<div style='margin-left:8px; color:#808080'>in general: <code>{general}</code></div>" + formulas
    prose = "".join(f"<p>{esc(s)}</p>" for s in e.sentences)
    return (f"<h3 style='margin-bottom:4px'>{esc(e.title)}</h3>"
            f"<table cellspacing='0'>{rows}</table>"
            f"<p style='margin-top:8px; margin-bottom:2px'>Output size:</p>{formulas}{prose}")


class LayerInfoPanel(QWidget):
    """Shows :func:`explain_layer` for ``state.layer`` as readable, selectable rich text."""

    def __init__(self, state, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.state = state
        self.browser = QTextBrowser(self)
        self.browser.setOpenLinks(False)
        self.browser.setTextInteractionFlags(
            Qt.TextInteractionFlag.TextSelectableByMouse | Qt.TextInteractionFlag.TextSelectableByKeyboard)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.browser)
        self.explanation: Optional[LayerExplanation] = None
        state.layer_changed.connect(self.refresh)
        state.result_changed.connect(self.refresh)
        state.model_changed.connect(self.refresh)
        self.refresh()

    def refresh(self, *_: Any) -> None:
        info = find_layer_info(self.state)
        if info is None:
            self.explanation = None
            self.browser.setHtml(f"<p>{EMPTY_TEXT}</p>")
            return
        self.explanation = explain_layer(info)
        self.browser.setHtml(explanation_html(self.explanation))

    def text(self) -> str:
        """The plain text shown (for tests and copying)."""
        return self.browser.toPlainText()
