"""One build per index file: a lock next to the output.

Two ``index`` runs on one output would each save their own checkpoints over the other's,
and the last one to finish would silently win. A build therefore holds an exclusive,
non-blocking OS lock (``fcntl.flock`` on POSIX, ``msvcrt.locking`` on Windows) on a small
hidden file beside the output, ``.NAME.lock``, for as long as it runs. The OS drops the
lock when the process ends however it ends (Ctrl-C, SIGKILL, a crash), so a lock left by
a dead run is never "stale": the next run simply takes it. The file itself is removed on
release; a run that opened it just before that checks it still holds the file that is on
disk (same inode) and otherwise tries again.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from featurescope.core.errors import IndexFileError

try:  # POSIX
    import fcntl
except ImportError:  # Windows
    fcntl = None
    import msvcrt


def _try_lock(descriptor: int) -> bool:
    try:
        if fcntl is not None:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        else:
            msvcrt.locking(descriptor, msvcrt.LK_NBLCK, 1)
    except OSError:
        return False
    return True


def _same_file(descriptor: int, path: Path) -> bool:
    try:
        on_disk, held = os.stat(path), os.fstat(descriptor)
    except OSError:
        return False
    return (on_disk.st_dev, on_disk.st_ino) == (held.st_dev, held.st_ino)


class IndexLock:
    """``IndexLock(output)``: ``acquire()`` or an IndexFileError naming the output when
    another run holds it; ``release()`` (idempotent). Also a context manager."""

    def __init__(self, output):
        self.output = Path(output)
        self.path = self.output.parent / f".{self.output.name}.lock"
        self._descriptor: Optional[int] = None

    def acquire(self) -> "IndexLock":
        for _ in range(20):  # a release racing with this run's open: take the new file
            try:
                descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            except OSError as error:
                raise IndexFileError(
                    f"{self.output} cannot be written: the folder {self.output.parent} does not "
                    f"accept new files ({(error.strerror or str(error)).lower()}); choose "
                    "another output file.") from None
            if not _try_lock(descriptor):
                os.close(descriptor)
                holder = self._holder()
                raise IndexFileError(
                    f"{self.output.name} is being written by another featurescope index run"
                    f"{holder}; wait for it to finish or choose another output file.")
            if _same_file(descriptor, self.path):
                self._descriptor = descriptor
                os.ftruncate(descriptor, 0)
                os.write(descriptor, f"{os.getpid()}\n".encode())
                return self
            os.close(descriptor)
        raise IndexFileError(f"{self.output.name} could not be locked; try again.")

    def _holder(self) -> str:
        try:
            pid = int(self.path.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return ""
        return f" (process {pid})"

    def release(self) -> None:
        descriptor, self._descriptor = self._descriptor, None
        if descriptor is None:
            return
        try:
            os.unlink(self.path)  # while still holding it, so no one locks a removed file
        except OSError:
            pass
        os.close(descriptor)  # closing drops the lock

    def __enter__(self) -> "IndexLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
