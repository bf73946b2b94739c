"""The single-thread job runner: latest request wins, cancel, errors, shutdown."""
from __future__ import annotations

import threading

import pytest

from featurescope.core.errors import ImageError
from featurescope.gui.jobs.workers import JobRunner


@pytest.fixture
def jobs(qtbot):
    runner = JobRunner()
    yield runner
    runner.shutdown()


def test_only_one_worker_thread(jobs):
    assert jobs.pool.maxThreadCount() == 1


def test_result_arrives_in_gui_thread(jobs, qtbot):
    seen = []
    main = threading.get_ident()

    def work(progress, cancel):
        progress(1, 2, "half")
        return threading.get_ident()

    with qtbot.waitSignal(jobs.idle, timeout=5000):
        jobs.submit("x", work, on_result=lambda r: seen.append((r, threading.get_ident())))
    assert len(seen) == 1
    worker_thread, delivered_in = seen[0]
    assert worker_thread != main and delivered_in == main
    assert jobs.is_idle()


def test_new_request_of_same_kind_drops_the_old(jobs, qtbot):
    gate = threading.Event()
    seen, cancelled = [], []

    def slow(progress, cancel):
        gate.wait(5)
        cancel.raise_if_cancelled()
        return "old"

    with qtbot.waitSignal(jobs.idle, timeout=5000):
        first = jobs.submit("capture", slow, on_result=seen.append,
                            on_cancelled=lambda: cancelled.append(1))
        jobs.submit("capture", lambda progress, cancel: "new", on_result=seen.append)
        assert first.token.is_cancelled
        gate.set()
    assert seen == ["new"]
    assert cancelled == [1]


def test_stale_result_is_dropped_even_if_the_job_ignores_cancel(jobs, qtbot):
    gate = threading.Event()
    seen = []

    def stubborn(progress, cancel):
        gate.wait(5)
        return "stale"  # never looks at the token

    with qtbot.waitSignal(jobs.idle, timeout=5000):
        jobs.submit("image", stubborn, on_result=seen.append)
        jobs.submit("image", lambda progress, cancel: "fresh", on_result=seen.append)
        gate.set()
    assert seen == ["fresh"]


def test_user_error_is_one_sentence(jobs, qtbot):
    errors = []

    def bad(progress, cancel):
        raise ImageError("cat.jpg is not an image.")

    with qtbot.waitSignal(jobs.idle, timeout=5000):
        jobs.submit("image", bad, on_error=lambda m, e: errors.append((m, type(e))))
    assert errors == [("cat.jpg is not an image.", ImageError)]


def test_progress_and_busy_label(jobs, qtbot):
    progress, busy = [], []
    jobs.progress.connect(lambda d, t, s: progress.append((d, t, s)))
    jobs.busy_changed.connect(lambda b, label: busy.append((b, label)))

    def work(progress, cancel):
        for i in range(3):
            progress(i + 1, 3, f"step {i + 1}")

    with qtbot.waitSignal(jobs.idle, timeout=5000):
        jobs.submit("export", work, label="Exporting")
    assert progress == [(1, 3, "step 1"), (2, 3, "step 2"), (3, 3, "step 3")]
    assert busy[0] == (True, "Exporting") and busy[-1] == (False, "")


def test_shutdown_cancels_and_waits(qtbot):
    runner = JobRunner()
    started = threading.Event()
    stopped = []

    def long_job(progress, cancel):
        started.set()
        while not cancel.is_cancelled:
            cancel_wait = threading.Event()
            cancel_wait.wait(0.01)
        stopped.append(True)
        cancel.raise_if_cancelled()

    runner.submit("export", long_job, label="long")
    runner.submit("capture", lambda progress, cancel: None)  # queued behind, never runs
    assert started.wait(5)
    assert runner.shutdown(5000)
    assert stopped == [True]
    assert runner.is_idle()


def test_a_job_outliving_its_signals_object_drops_its_answer_quietly(jobs, qtbot, capfd):
    """Quitting while a job runs deletes the JobSignals first; the worker must not print
    "RuntimeError: Signal source has been deleted" tracebacks."""
    import shiboken6

    release = threading.Event()
    ran = []

    def work(progress, cancel):
        release.wait(10)
        progress(1, 2, "half way")
        ran.append(True)
        return 42

    request = jobs.submit("slow", work, label="slow")
    signals = jobs._pending[request.id][1]
    shiboken6.delete(signals)  # what application shutdown does to it
    jobs._pending.pop(request.id)  # ... together with the runner that held it
    release.set()
    assert jobs.pool.waitForDone(10000)
    assert ran == [True]
    assert "Signal source has been deleted" not in capfd.readouterr().err
