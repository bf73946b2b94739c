"""Every background job in one place: one row per job with its progress and a Cancel.

Fed by the job runner (gui/jobs/workers.py): ``jobs_changed`` rebuilds the rows (a few
at most), ``job_progress`` moves one bar. Cancel stops that job only; what it was
computing stays as far as it got, and nothing starts it again until asked.
"""
from __future__ import annotations

from typing import Any, Optional

from PySide6.QtWidgets import QGridLayout, QLabel, QProgressBar, QPushButton, QSizePolicy, QWidget

EMPTY = "No background work: everything shown is up to date."


class JobsList(QWidget):
    """The jobs of ``jobs`` (a JobRunner) as rows: label, progress bar, Cancel."""

    def __init__(self, jobs: Any, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setObjectName("jobsList")
        self.jobs = jobs
        self.rows: dict[int, tuple[QLabel, QProgressBar, QPushButton]] = {}
        self.grid = QGridLayout(self)
        self.grid.setContentsMargins(8, 6, 8, 6)
        self.grid.setColumnStretch(0, 1)
        self.empty = QLabel(EMPTY, self)
        self.setMinimumWidth(420)
        jobs.jobs_changed.connect(self.rebuild)
        jobs.job_progress.connect(self.on_progress)
        self.rebuild()

    def rebuild(self) -> None:
        for widgets in self.rows.values():
            for widget in widgets:
                self.grid.removeWidget(widget)
                widget.hide()  # gone at once: deleteLater waits for the event loop
                widget.deleteLater()
        self.rows.clear()
        running = self.jobs.running()
        self.empty.setVisible(not running)
        self.grid.addWidget(self.empty, 0, 0, 1, 3)
        for row, request in enumerate(running, start=1):
            label = QLabel(request.text or request.label, self)
            label.setToolTip(request.label)
            label.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)  # long text elides, never wraps
            bar = QProgressBar(self)
            bar.setFixedWidth(140)
            cancel = QPushButton("Cancel", self)
            cancel.setObjectName(f"cancelJob{request.id}")
            cancel.setToolTip(f"Stop {request.label.lower()}; it starts again only when you ask")
            cancel.clicked.connect(lambda _checked=False, rid=request.id: self.cancel(rid))
            self._set_bar(bar, request.done, request.total)
            self.grid.addWidget(label, row, 0)
            self.grid.addWidget(bar, row, 1)
            self.grid.addWidget(cancel, row, 2)
            self.rows[request.id] = (label, bar, cancel)
        self.adjustSize()

    @staticmethod
    def _set_bar(bar: QProgressBar, done: int, total: int) -> None:
        if total > 0:
            bar.setRange(0, total)
            bar.setValue(min(done, total))
            bar.setFormat(f"{done} of {total}")
        else:
            bar.setRange(0, 0)  # busy until the job reports numbers

    def on_progress(self, request_id: int, done: int, total: int, text: str) -> None:
        row = self.rows.get(request_id)
        if row is None:
            return
        label, bar, _cancel = row
        self._set_bar(bar, done, total)
        if text:
            label.setText(text)

    def cancel(self, request_id: int) -> None:
        row = self.rows.get(request_id)
        if row is not None:
            row[0].setText(f"Cancelling: {row[0].toolTip()}...")
            row[2].setEnabled(False)
        self.jobs.cancel_request(request_id)

    def labels(self) -> list[str]:
        """The rows' texts (tests)."""
        return [label.text() for label, _bar, _cancel in self.rows.values()]
