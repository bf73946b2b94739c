"""The status-bar corner that shows the running job: its label, a progress bar, Cancel."""
from __future__ import annotations

from PySide6.QtWidgets import QLabel, QProgressBar, QPushButton, QStatusBar

from featurescope.gui.jobs.workers import JobRunner


class JobStatus:
    """Adds a busy label, a progress bar and a Cancel button to ``bar``, driven by ``jobs``.

    They are hidden while the worker is idle (or runs a job without a label).
    """

    def __init__(self, bar: QStatusBar, jobs: JobRunner) -> None:
        self.jobs = jobs
        self.busy_label = QLabel("")
        self.progress_bar = QProgressBar()
        self.progress_bar.setObjectName("jobProgress")
        self.progress_bar.setMaximumWidth(220)
        self.progress_bar.setTextVisible(True)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setObjectName("cancelJob")
        self.cancel_button.setToolTip("Stop the running job (Esc); what was there before stays")
        for widget in self._widgets():
            bar.addPermanentWidget(widget)
            widget.hide()
        jobs.busy_changed.connect(self.on_busy_changed)
        jobs.progress.connect(self.on_progress)

    def _widgets(self) -> tuple:
        return self.busy_label, self.progress_bar, self.cancel_button

    def on_busy_changed(self, busy: bool, label: str) -> None:
        show = busy and bool(label)
        self.busy_label.setText(label)
        self.progress_bar.setRange(0, 0)  # busy until the job reports numbers
        for widget in self._widgets():
            widget.setVisible(show)

    def on_progress(self, done: int, total: int, text: str) -> None:
        if total > 0:
            self.progress_bar.setRange(0, total)
            self.progress_bar.setValue(min(done, total))
        if text:
            self.busy_label.setText(text)
