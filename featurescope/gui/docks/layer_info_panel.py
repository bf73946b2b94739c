"""Layer info dock: what the selected layer does, with its own numbers filled in.

Below the explanation: the layer's receptive field (size and jump, from the per-model
cache in ``gui.caches.receptive_fields``), how many of its channels are dead for this image
(``stats.dead_channels``) and a histogram of its activations (``stats.activation_histogram``).
With a job runner the statistics are computed on the worker thread after each capture
(``gui.caches.layer_stats``), so selecting a layer only displays them.
"""
from __future__ import annotations

import html
from typing import Any, Optional

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QSplitter, QTextBrowser, QVBoxLayout, QWidget

from featurescope.core.analysis.explain import LayerExplanation, explain_layer
from featurescope.gui.caches import receptive_fields as field_cache
from featurescope.gui.caches.layer_stats import LayerStats, StatsCache, compute
from featurescope.gui.controllers.throttle import Throttle

EMPTY_TEXT = "Select a layer to see what it does."
LIVE_INTERVAL = 0.5  # seconds between two statistics of a stream of captures
_STANDARD = "out = floor((in + 2*padding - dilation*(kernel-1) - 1) / stride) + 1"
GENERAL_FORMULA = {"Conv2d": _STANDARD, "MaxPool2d": _STANDARD, "AvgPool2d": _STANDARD}


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


def _pair_text(value, unit: str = "") -> str:
    if isinstance(value, (tuple, list)):
        return " x ".join(f"{v:g}" for v in value) + unit
    return f"{value:g}{unit}"


def field_html(field: Any, model: Any) -> str:
    """The receptive-field paragraph: size and jump in input pixels, in words."""
    esc = html.escape
    if field is None and field_cache.is_pending(model):
        return "<p><b>Receptive field</b>: being worked out in the background...</p>"
    if field is None:
        reason = field_cache.error_for(model)
        return ("<p><b>Receptive field</b>: unknown for this layer"
                + (f" ({esc(reason)})" if reason else "") + ".</p>")
    size = field.size if isinstance(field.size, tuple) else (field.size, field.size)
    image_h, image_w = field.input_size
    bigger = " - larger than the image, so it is clipped at the edges" \
        if size[0] > image_h or size[1] > image_w else ""
    return (f"<p><b>Receptive field</b>: <b>{size[0]} x {size[1]} px</b> of the "
            f"{image_h} x {image_w} input{bigger}; <b>jump {_pair_text(field.jump, ' px')}</b> "
            f"(neighbouring positions look {_pair_text(field.jump)} input pixels apart). "
            f"Hover the channel view to see where one position looks.</p>")


def dead_html(dead: Optional[np.ndarray], channels: int) -> str:
    if dead is None:
        return ""
    share = f" ({100.0 * len(dead) / channels:.0f} %)" if channels else ""
    listed = ", ".join(str(int(c)) for c in dead[:12]) + (", ..." if len(dead) > 12 else "")
    tail = f": {listed}" if len(dead) else ""
    return (f"<p><b>Dead channels</b> (never positive for this image): "
            f"<b>{len(dead)} of {channels}</b>{share}{tail}</p>")


class LayerInfoPanel(QWidget):
    """Shows :func:`explain_layer` for ``state.layer`` as readable, selectable rich text."""

    def __init__(self, state, parent: Optional[QWidget] = None, jobs: Any = None) -> None:
        super().__init__(parent)
        self.state = state
        self.jobs = jobs
        self.stats = StatsCache()
        self.browser = QTextBrowser(self)
        self.browser.setOpenLinks(False)
        self.browser.setTextInteractionFlags(
            Qt.TextInteractionFlag.TextSelectableByMouse | Qt.TextInteractionFlag.TextSelectableByKeyboard)
        self.histogram_plot = pg.PlotWidget(self)
        self.histogram_plot.setObjectName("activationHistogram")
        self.histogram_plot.setMinimumHeight(90)
        self.histogram_plot.setMenuEnabled(False)
        self.histogram_plot.setMouseEnabled(x=False, y=False)
        self.histogram_plot.hideButtons()
        self.histogram_plot.setTitle("activations of this layer", size="9pt")
        self.histogram_plot.setLabel("left", "count")
        # Bars, not a stepped PlotDataItem: with PySide6 6.12 every PlotDataItem.setData
        # leaks two references to Python's True, which crashes a long test run at exit.
        self.histogram_bars = pg.BarGraphItem(x0=[0.0], x1=[1.0], height=[0.0],
                                              brush=(80, 140, 220, 200), pen=pg.mkPen(None))
        self.histogram_plot.addItem(self.histogram_bars)
        self.zero_line = pg.InfiniteLine(0.0, angle=90, pen=pg.mkPen((200, 80, 80), style=Qt.PenStyle.DashLine))
        self.histogram_plot.addItem(self.zero_line)
        splitter = QSplitter(Qt.Orientation.Vertical, self)
        splitter.addWidget(self.browser)
        splitter.addWidget(self.histogram_plot)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([300, 110])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(splitter)
        self.explanation: Optional[LayerExplanation] = None
        self.field: Any = None  # ReceptiveField of the layer, or None
        self.dead: Optional[np.ndarray] = None  # dead channel indices for this image
        self.histogram: Optional[tuple[np.ndarray, np.ndarray]] = None  # (counts, edges)
        self._stats_key: Any = None
        self._shown_layer = ""  # the layer whose statistics are on screen
        state.layer_changed.connect(self.refresh)
        # a live video brings a capture per frame: statistics at most twice a second
        self.throttle = Throttle(self._on_result_changed, LIVE_INTERVAL, self)
        state.result_changed.connect(self.throttle)
        state.model_changed.connect(self.refresh)
        state.fields_ready.connect(self.refresh)
        self.refresh()

    def _on_result_changed(self, *_: Any) -> None:
        result = self.state.result
        self.stats.keep_only(result)
        self.refresh()
        self._compute_in_background()

    def refresh(self, *_: Any) -> None:
        info = self.state.layer_info()
        self._update_stats()
        if info is None:
            self.explanation = None
            self.field = None
            self.browser.setHtml(f"<p>{EMPTY_TEXT}</p>")
            return
        self.explanation = explain_layer(info)
        self.field = field_cache.field_for(self.state.model, self.state.layer)
        channels = int(info.output_shape[0]) if info.output_shape else 0
        self.browser.setHtml(explanation_html(self.explanation) + field_html(self.field, self.state.model)
                             + dead_html(self.dead, channels))

    def _update_stats(self) -> None:
        """Dead channels and the histogram of the layer in the current capture.

        From the cache when the worker has computed them; else computed on the worker
        (nearest layers first) and shown when they arrive, or here without a job runner.
        """
        result, layer = self.state.result, self.state.layer
        if result is None or not layer or layer not in result:
            self._show_stats(None, None)
            return
        key = (id(result), layer)
        if key == self._stats_key:
            return
        stats = self.stats.get(result, layer)
        if stats is None and self.jobs is None:
            stats = compute(result, layer)
            self.stats.put(result, layer, stats)
        if stats is not None or layer != self._shown_layer:
            # a new capture of the layer shown (a live frame) keeps the last histogram
            # until its own is in: no blank "computing..." flicker
            self._show_stats(key, stats)
        if stats is None:
            self._compute_in_background()

    def _show_stats(self, key: Any, stats: Optional[LayerStats]) -> None:
        self._stats_key = key if stats is not None else None
        self._shown_layer = key[1] if stats is not None else ""
        if stats is None:
            self.dead, self.histogram = None, None
            self.histogram_bars.setOpts(x0=[0.0], x1=[1.0], height=[0.0])
            # Auto-range centres an all-zero plot on 0, showing negative counts.
            self.histogram_plot.setXRange(0.0, 1.0, padding=0.0)
            self.histogram_plot.setYRange(0.0, 1.0, padding=0.0)
            title = "activations of this layer" if key is None else "activations: computing..."
            self.histogram_plot.setTitle(title, size="9pt")
            return
        self.dead = stats.dead
        self.histogram = (stats.counts, stats.edges)
        counts, edges = self.histogram
        self.histogram_bars.setOpts(x0=edges[:-1], x1=edges[1:], height=counts.astype(np.float64))
        self.histogram_plot.setXRange(float(edges[0]), float(edges[-1]), padding=0.02)
        # padding would extend both ends, below zero too: the headroom goes on top only
        self.histogram_plot.setYRange(0.0, 1.05 * float(max(counts.max(), 1)), padding=0.0)
        self.histogram_plot.setTitle(f"activations ({int(counts.sum()):,} values)", size="9pt")

    def _compute_in_background(self) -> None:
        """Statistics of every stored layer on the worker, the selected one first."""
        result, jobs = self.state.result, self.jobs
        if jobs is None or result is None:
            return
        layers = list(result.layers)
        here = layers.index(self.state.layer) if self.state.layer in layers else 0
        order = sorted(range(len(layers)), key=lambda i: (abs(i - here), i < here))
        todo = self.stats.todo(result, [layers[i] for i in order])
        if not todo:
            return

        def unit(layer: str):  # one layer per unit: a click waits for one layer at most
            return lambda progress, cancel: (result, layer, compute(result, layer))

        jobs.submit_units("stats", [unit(layer) for layer in todo], on_partial=self._on_background_stats)

    def _on_background_stats(self, piece: tuple) -> None:
        result, layer, stats = piece
        if result is not self.state.result:
            return
        self.stats.put(result, layer, stats)
        if layer == self.state.layer and self._stats_key is None:
            self.refresh()

    def text(self) -> str:
        """The plain text shown (for tests and copying)."""
        return self.browser.toPlainText()
