"""Two lanes on the one worker thread: what the user asked for runs before background units."""
from __future__ import annotations

import threading

import pytest

from featurescope.core.errors import ExportError
from featurescope.gui.jobs.lanes import BACKGROUND, INTERACTIVE
from featurescope.gui.jobs.workers import JobRunner


@pytest.fixture
def jobs(qtbot):
    runner = JobRunner()
    yield runner
    runner.shutdown()


def _unit(ran: list, name, gate: threading.Event = None, started: threading.Event = None):
    def work(progress, cancel):
        if started is not None:
            started.set()
        if gate is not None:
            assert gate.wait(10)
        ran.append(name)
        return name
    return work


def test_kinds_pick_their_lane(jobs, qtbot):
    with qtbot.waitSignal(jobs.idle, timeout=5000):
        grids = jobs.submit_units("grids", [_unit([], 0)])
        image = jobs.submit("image", _unit([], "image"))
        export = jobs.submit("export", _unit([], "export"))
    assert (grids.lane, image.lane, export.lane) == (BACKGROUND, INTERACTIVE, BACKGROUND)


def test_an_interactive_request_waits_for_one_background_unit_at_most(jobs, qtbot):
    gate, started = threading.Event(), threading.Event()
    ran, partials, answers = [], [], []
    units = [_unit(ran, ("grid", 0), gate, started)] + [_unit(ran, ("grid", i)) for i in range(1, 200)]
    with qtbot.waitSignal(jobs.idle, timeout=20000):
        jobs.submit_units("grids", units, on_partial=partials.append,
                          on_result=lambda _: answers.append("grids done"))
        assert started.wait(10)  # the worker is inside the first unit
        jobs.submit("image", _unit(ran, "image"), on_result=answers.append)
        jobs.submit("capture", _unit(ran, "capture"), on_result=answers.append)
        gate.set()
    # the unit already running finishes, then both interactive requests, then the rest
    assert ran[:3] == [("grid", 0), "image", "capture"]
    assert ran[3:] == [("grid", i) for i in range(1, 200)]
    assert partials == [("grid", i) for i in range(200)]
    assert answers == ["image", "capture", "grids done"]


def test_background_units_run_in_submission_order_behind_each_other(jobs, qtbot):
    gate = threading.Event()
    ran = []
    with qtbot.waitSignal(jobs.idle, timeout=10000):
        jobs.submit("model", _unit(ran, "model", gate))
        jobs.submit_units("grids", [_unit(ran, ("grid", i)) for i in range(3)])
        jobs.submit_units("stats", [_unit(ran, ("stats", i)) for i in range(3)])
        jobs.submit("image", _unit(ran, "image"))
        gate.set()
    assert ran == ["model", "image", ("grid", 0), ("grid", 1), ("grid", 2),
                   ("stats", 0), ("stats", 1), ("stats", 2)]


def test_a_new_request_of_a_kind_drops_the_old_ones_units(jobs, qtbot):
    gate, started = threading.Event(), threading.Event()
    ran, partials, cancelled = [], [], []
    with qtbot.waitSignal(jobs.idle, timeout=10000):
        jobs.submit_units("grids", [_unit(ran, ("old", 0), gate, started)]
                          + [_unit(ran, ("old", i)) for i in range(1, 50)],
                          on_partial=partials.append, on_cancelled=lambda: cancelled.append(1))
        assert started.wait(10)
        jobs.submit_units("grids", [_unit(ran, ("new", i)) for i in range(3)], on_partial=partials.append)
        gate.set()
    assert ran == [("old", 0)] + [("new", i) for i in range(3)]
    assert partials == [("new", i) for i in range(3)]  # the old unit's answer is stale
    assert cancelled == [1]  # reported once, not once per unit


def test_a_failing_unit_ends_its_request(jobs, qtbot):
    ran, errors = [], []

    def bad(progress, cancel):
        raise ExportError("conv1.png cannot be written (disk full).")

    with qtbot.waitSignal(jobs.idle, timeout=5000):
        jobs.submit_units("export", [_unit(ran, 0), bad, _unit(ran, 2)],
                          on_error=lambda message, error: errors.append(message))
    assert ran == [0]
    assert errors == ["conv1.png cannot be written (disk full)."]


def test_labelled_units_report_progress(jobs, qtbot):
    progress = []
    jobs.progress.connect(lambda done, total, text: progress.append((done, total, text)))
    with qtbot.waitSignal(jobs.idle, timeout=5000):
        jobs.submit_units("export", [_unit([], i) for i in range(3)], label="Exporting 3 layers")
    assert progress == [(1, 3, "Exporting 3 layers"), (2, 3, "Exporting 3 layers"),
                        (3, 3, "Exporting 3 layers")]


def test_cancel_drops_queued_background_units(jobs, qtbot):
    gate, started = threading.Event(), threading.Event()
    ran = []
    with qtbot.waitSignal(jobs.idle, timeout=10000):
        jobs.submit_units("stats", [_unit(ran, 0, gate, started)] + [_unit(ran, i) for i in range(1, 100)])
        assert started.wait(10)
        jobs.cancel()  # what Esc does
        gate.set()
    assert ran == [0]


def test_closing_the_window_during_background_work_returns_with_no_thread_left(make_window, qtbot):
    window = make_window(start=False)
    started = threading.Event()
    ran = []

    def long_unit(progress, cancel):  # a unit that respects the cancel, as build_grid's loop does
        started.set()
        ran.append(1)
        while not cancel.is_cancelled:
            threading.Event().wait(0.005)

    window.jobs.submit_units("grids", [long_unit] * 300)
    assert started.wait(10)
    window.close()
    assert window.jobs.pool.activeThreadCount() == 0
    assert window.jobs.is_idle()
    assert ran == [1]  # the 299 queued units never ran


def test_in_the_app_opening_an_image_overtakes_the_grids_being_built(make_window, qtbot, monkeypatch):
    """After a capture the window queues every other layer's grid and statistics; an image
    opened meanwhile is read next, and its capture waits for one background unit at most."""
    from featurescope.core.resources import default_sample, sample_images

    window = make_window(start=False)
    window.request_image(str(default_sample()))
    window.request_model({"name": "resnet18", "weights": "none", "device": "cpu", "input_size": "64"})
    qtbot.waitUntil(lambda: window.jobs.is_idle() and window.state.result is not None, timeout=120000)

    gate, blocked, kinds = threading.Event(), threading.Event(), []

    def started(unit):  # worker thread, before each unit
        kinds.append(unit.request.kind)
        if unit.request.kind == "grids" and not blocked.is_set():
            blocked.set()
            assert gate.wait(10)  # hold the worker inside the first grid unit

    window.jobs.unit_started = started
    submitted_at = []  # how many units had started when each capture entered its lane
    submit = window.jobs.submit

    def recording_submit(kind, fn, **kwargs):
        request = submit(kind, fn, **kwargs)
        if kind == "capture":
            # counted once submit returned: the worker may run units while the GUI thread
            # is still preparing the request (a loaded CI machine ran two in that gap)
            submitted_at.append(len(kinds))
        return request

    monkeypatch.setattr(window.jobs, "submit", recording_submit)
    window.request_capture()  # its answer queues the grids and statistics
    qtbot.waitUntil(blocked.is_set, timeout=60000)  # the GUI thread must deliver the capture
    coffee = next(p for p in sample_images() if p.stem == "coffee")
    window.request_image(str(coffee))
    gate.set()
    qtbot.waitUntil(lambda: window.jobs.is_idle() and window.state.image_source == str(coffee)
                    and window.state.result is not None, timeout=60000)
    first_grid = kinds.index("grids")
    assert kinds[first_grid + 1] == "image"
    # the image's capture is asked for once its answer reached the GUI thread (background
    # units run meanwhile); from then on it waits for the unit running at most
    second_capture = first_grid + 2 + kinds[first_grid + 2:].index("capture")
    assert len(submitted_at) == 2
    assert second_capture - submitted_at[1] <= 1, (kinds, submitted_at)
    assert kinds.count("grids") > 2  # the background work itself still ran
