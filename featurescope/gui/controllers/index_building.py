"""Building a dataset index in the app: one batch per background unit.

The core's :class:`~featurescope.core.index.build.IndexBuild` is created in a first unit
and then stepped one batch per unit in the background lane, each unit submitted when the
previous one answers, so whatever the user asks for meanwhile waits for one batch at
most. Cancel (the tab's button or the window's) stops the chain; a last unit then closes
the build, which stops its decoding processes and saves what was read, so the next
build of that folder resumes it. The build object is touched only inside units (on the
worker thread); what comes back to the GUI thread is (done, total, text) or the Index.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

from featurescope.gui.jobs.lanes import BACKGROUND

def decoding_workers(asked: Optional[int]) -> Optional[int]:
    """Decoding processes for a build in the app: ``asked``, else the default where they
    can be started. They are spawned (forking a process that runs Qt threads is unsafe),
    and spawning re-imports the main module: safe from featurescope's own entry points
    (``featurescope``, ``python -m featurescope``), not from a script without a
    ``__main__`` guard, where decoding stays in the worker thread (0)."""
    if asked is not None:
        return asked
    import sys

    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    own = (spec is not None and str(spec.name).endswith("__main__")) or \
        Path(sys.argv[0] if sys.argv else "").stem == "featurescope"
    return None if own else 0



class IndexBuildJob:
    """``IndexBuildJob(jobs, on_progress(done, total, text), on_ended(index or None, message))``."""

    def __init__(self, jobs, on_progress: Callable[[int, int, str], None],
                 on_ended: Callable[[Any, str], None]):
        self.jobs = jobs
        self.on_progress, self.on_ended = on_progress, on_ended
        self._build = None

    def start(self, model, folder: str, output: str, *, top: int = 9, batch_size: int = 16,
              workers: Optional[int] = None) -> None:
        workers = decoding_workers(workers)

        def start(progress, cancel):
            from featurescope.core.index.build import IndexBuild

            self._build = IndexBuild(model, folder, top=top, batch_size=batch_size, workers=workers,
                                     output=output, multiprocessing_context="spawn", cancel=cancel)
            return (self._build.done, self._build.total, self._build.note)

        self._submit(start)

    def cancel(self) -> None:
        self.jobs.cancel("index")

    def _submit(self, fn) -> None:
        self.jobs.submit("index", fn, label="Indexing folder", lane=BACKGROUND,
                         on_result=self._answered, on_error=self._failed,
                         on_cancelled=self._cancelled)

    def _step(self, progress, cancel):
        build = self._build
        if build.step(1, progress, cancel):
            return build.close()
        return (build.done, build.total, build.progress_text())

    def _answered(self, answer: Any) -> None:
        if isinstance(answer, tuple):
            self.on_progress(*answer)
            self._submit(self._step)
            return
        self._build = None
        self.on_ended(answer, "")

    def _close(self, build, message: str) -> None:
        """Stop the decoding processes and save what was read, on the worker thread."""
        self.jobs.submit("index-close", lambda progress, cancel: build.close(), lane=BACKGROUND,
                         on_result=lambda index: self.on_ended(index, message),
                         on_error=lambda text, _e: self.on_ended(None, text))

    def _cancelled(self) -> None:
        build, self._build = self._build, None
        if build is None:
            self.on_ended(None, "")
        else:
            self._close(build, "")

    def _failed(self, message: str, _error: Any) -> None:
        build, self._build = self._build, None
        if build is None:
            self.on_ended(None, message)
        else:
            self._close(build, message)
