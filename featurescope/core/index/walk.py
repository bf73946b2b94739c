"""The image files of a folder: every format the app reads, found recursively."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from featurescope.core.errors import ImageError
from featurescope.core.io.images import is_image_file



@dataclass(frozen=True)
class FileRecord:
    """One file: ``path`` relative to the folder (POSIX separators), size and mtime."""

    path: str
    size: int
    mtime_ns: int


def list_images(folder) -> list[FileRecord]:
    """Every image file under ``folder`` (recursively, hidden folders skipped), sorted by
    path. Raises ImageError when ``folder`` is not a folder."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        what = "does not exist" if not root.exists() else "is a file, not a folder"
        raise ImageError(f"{root} {what}; give a folder of images (its sub-folders are read too).")
    found = []
    for directory, subfolders, names in os.walk(root, followlinks=False):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
        for name in names:
            if not is_image_file(name):
                continue
            full = Path(directory) / name
            try:
                stat = full.stat()
            except OSError:
                continue  # vanished or a dangling link: nothing to read
            found.append(FileRecord(full.relative_to(root).as_posix(), int(stat.st_size),
                                    int(stat.st_mtime_ns)))
    found.sort(key=lambda record: record.path)
    return found


def default_index_path(folder, data_folder) -> Path:
    """``data_folder/indexes/NAME-HASH.fsindex`` for the photo ``folder``: the same folder
    always gets the same file (a stopped build resumes), two folders of one name do not
    share one, and nothing is written into the photo folder."""
    import hashlib

    folder = Path(folder).expanduser().resolve()
    digest = hashlib.sha256(str(folder).encode("utf-8")).hexdigest()[:10]
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in folder.name) or "folder"
    return Path(data_folder) / "indexes" / f"{name}-{digest}.fsindex"
