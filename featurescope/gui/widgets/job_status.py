"""The status-bar corner that shows the running job: its label, a progress bar, Cancel,
and the Jobs button whose list holds every background job with its own progress and Cancel."""
from __future__ import annotations

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QLabel, QMenu, QProgressBar, QPushButton, QStatusBar, QToolButton, QWidgetAction

from featurescope.gui.jobs.workers import JobRunner
from featurescope.gui.widgets.jobs_list import JobsList

SHOW_AFTER_MS = 400


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
        # every background job, each with its progress and Cancel, one click away
        self.jobs_list = JobsList(jobs)
        self.jobs_button = QToolButton()
        self.jobs_button.setObjectName("jobsButton")
        self.jobs_button.setText("Jobs")
        self.jobs_button.setToolTip("Every background job with its progress and a Cancel each")
        self.jobs_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        menu = QMenu(self.jobs_button)
        holder = QWidgetAction(menu)
        holder.setDefaultWidget(self.jobs_list)
        menu.addAction(holder)
        self.jobs_button.setMenu(menu)
        bar.addPermanentWidget(self.jobs_button)
        jobs.jobs_changed.connect(self._count_jobs)
        self._delay = QTimer(self.cancel_button)
        self._delay.setSingleShot(True)
        self._delay.setInterval(SHOW_AFTER_MS)
        self._delay.timeout.connect(self._show)
        jobs.busy_changed.connect(self.on_busy_changed)
        jobs.progress.connect(self.on_progress)

    def _count_jobs(self) -> None:
        count = len(self.jobs.running())
        self.jobs_button.setText(f"Jobs ({count})" if count else "Jobs")

    def _widgets(self) -> tuple:
        return self.busy_label, self.progress_bar, self.cancel_button

    def on_busy_changed(self, busy: bool, label: str) -> None:
        """Shown once a labelled job has run for SHOW_AFTER_MS: a stream of short jobs (a
        live video's overview tiles) never makes a permanent busy bar."""
        self.busy_label.setText(label)
        if busy and label:
            if not self.cancel_button.isVisible() and not self._delay.isActive():
                self.progress_bar.setRange(0, 0)  # busy until the job reports numbers
                self._delay.start()
            return
        self._delay.stop()
        for widget in self._widgets():
            widget.hide()

    def _show(self) -> None:
        for widget in self._widgets():
            widget.show()

    def on_progress(self, done: int, total: int, text: str) -> None:
        if total > 0:
            self.progress_bar.setRange(0, total)
            self.progress_bar.setValue(min(done, total))
        if text:
            self.busy_label.setText(text)
