"""The live toolbar's controls: play/pause, frame steps, the position slider, and the
rate label (frames per second, latency, dropped frames) that sits in the status bar."""
from __future__ import annotations

from typing import Optional

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QSlider, QToolButton, QWidget


class LiveBar(QWidget):
    """Emits ``play_clicked``, ``step_clicked(delta)`` and ``seek_requested(frame)``."""

    play_clicked = Signal()
    step_clicked = Signal(int)
    seek_requested = Signal(int)

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setObjectName("liveBar")
        self.play_button = QToolButton(text="Pause")
        self.play_button.setToolTip("Pause or resume (Space)")
        self.back_button = QToolButton(text="<")
        self.back_button.setToolTip("Previous frame (Ctrl+Left)")
        self.forward_button = QToolButton(text=">")
        self.forward_button.setToolTip("Next frame (Ctrl+Right)")
        self.slider = QSlider(Qt.Horizontal)
        self.slider.setMinimumWidth(200)
        self.slider.setToolTip("Position in the video")
        self.position_label = QLabel("")
        self.rate_label = QLabel("")
        self.rate_label.setObjectName("liveRate")
        box = QHBoxLayout(self)
        box.setContentsMargins(4, 0, 4, 0)
        for widget in (self.play_button, self.back_button, self.forward_button):
            box.addWidget(widget)
        box.addWidget(self.slider, 1)
        box.addWidget(self.position_label)
        self.play_button.clicked.connect(self.play_clicked)
        self.back_button.clicked.connect(lambda: self.step_clicked.emit(-1))
        self.forward_button.clicked.connect(lambda: self.step_clicked.emit(1))
        self.slider.sliderReleased.connect(lambda: self.seek_requested.emit(self.slider.value()))
        self.slider.actionTriggered.connect(self._on_action)
        self._frames = 0

    def _on_action(self, action: int) -> None:
        if action != QSlider.SliderMove:  # page/step clicks on the groove
            self.seek_requested.emit(self.slider.sliderPosition())

    def set_mode(self, running: bool, seekable: bool, paused: bool, frames: int) -> None:
        self._frames = frames
        self.play_button.setText("Play" if paused else "Pause")
        for widget in (self.back_button, self.forward_button):
            widget.setVisible(seekable)
            widget.setEnabled(paused)
        self.slider.setVisible(seekable and frames > 0)
        self.position_label.setVisible(seekable and frames > 0)
        self.slider.setRange(0, max(0, frames - 1))

    def set_position(self, index: int) -> None:
        if not self.slider.isSliderDown():
            self.slider.blockSignals(True)
            self.slider.setValue(int(index))
            self.slider.blockSignals(False)
        if self._frames:  # the slider's value, as the opened frame's name says it
            self.position_label.setText(f"frame {index} / {self._frames - 1}")
