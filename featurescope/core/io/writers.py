"""Writing one file atomically: PNG, NPZ or JSON, never half written, never overwritten
by accident.

Every write goes to a temporary file in the target folder, is flushed and fsynced, and
only then renamed over the target with ``os.replace``. A failure at any point (full disk,
read-only folder, cancel) removes the temporary file, so no half-written file is ever
left behind. An existing file is never replaced unless ``force=True``. Problems a user
can fix raise :class:`~featurescope.core.errors.ExportError` (or its subclass
:class:`~featurescope.core.errors.FileExistsExportError`, which carries the path so the
GUI can ask before overwriting), each one sentence naming the file.
"""
from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import re
import secrets
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence, Union

import numpy as np
from PIL import Image

from featurescope.core.errors import ExportError, FileExistsExportError

PathLike = Union[str, os.PathLike]
# Asked with the files that exist; True means replace them (the app's "Replace?" box).
Confirm = Callable[[list[Path]], bool]


def _write_atomic(path: PathLike, write: Callable[[io.BufferedWriter], None], force: bool) -> Path:
    """Write a file through a temporary sibling and ``os.replace``; see the module docstring."""
    path = Path(path)
    folder = path.parent
    make_folder(folder)
    if path.is_dir():
        raise ExportError(f"{path} is a folder, so no file can be written there; choose another name.")
    if not force and os.path.lexists(path):
        raise FileExistsExportError(
            f"{path} already exists and was not overwritten; use --force to replace it.", path
        )
    temporary = folder / f".{path.name}.{secrets.token_hex(4)}.tmp"
    try:
        # os.open with 0o666 lets the umask decide the final permissions, as for any new file.
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    except OSError as error:
        raise _write_error(path, error) from None
    try:
        with os.fdopen(descriptor, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException as error:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        if isinstance(error, OSError):
            raise _write_error(path, error) from None
        raise
    _fsync_folder(folder)
    return path


def make_folder(folder: Path) -> None:
    """Create ``folder`` (and its parents); an ExportError when it is a file or cannot be made."""
    if folder.is_dir():
        return
    if folder.exists():
        raise ExportError(f"{folder} is a file, not a folder; choose another output folder.")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ExportError(f"The output folder {folder} cannot be created ({_reason(error)}).") from None


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable where the platform allows it (POSIX)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def _write_error(path: Path, error: OSError) -> ExportError:
    code = getattr(error, "errno", None)
    if code in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
        return ExportError(
            f"{path.name} could not be written because the disk holding {path.parent} is full; "
            "free some space or choose another folder."
        )
    if code == errno.EROFS:
        return ExportError(
            f"{path.name} could not be written because the folder {path.parent} is on a "
            "read-only file system; choose a folder on another disk."
        )
    if code in (errno.EACCES, errno.EPERM) or isinstance(error, PermissionError):
        return ExportError(
            f"{path.name} could not be written because the folder {path.parent} is read-only "
            "(permission denied); choose another folder."
        )
    return ExportError(f"{path} could not be written ({_reason(error)}).")


def _reason(error: OSError) -> str:
    if getattr(error, "errno", None) == errno.EROFS:
        return "read-only file system"
    if isinstance(error, PermissionError):
        return "permission denied"
    return (error.strerror or str(error) or type(error).__name__).rstrip(".").lower()


def existing_targets(targets: Iterable[PathLike]) -> list[Path]:
    """The ``targets`` something is at (a file, a folder, a link even when broken)."""
    return [Path(path) for path in targets if os.path.lexists(path)]


def check_overwrite(targets: Iterable[PathLike], force: bool = False,
                    confirm: Optional[Confirm] = None) -> Optional[bool]:
    """The one "exists, confirm, force" check every export makes before its first write.

    Returns the ``force`` to write with: True when ``force`` is set or ``confirm``
    (the app asking the user, with the existing paths) says yes; False when nothing in
    ``targets`` exists; None when ``confirm`` says no (write nothing). Without
    ``confirm`` (the CLI), an existing target raises :class:`FileExistsExportError`
    naming the first (and how many more): nothing is written.
    """
    if force:
        return True
    existing = existing_targets(targets)
    if not existing:
        return False
    if confirm is not None:
        return True if confirm(existing) else None
    more = f" and {len(existing) - 1} more" if len(existing) > 1 else ""
    raise FileExistsExportError(
        f"{existing[0]} already exists{more} and nothing was written; "
        "use --force to overwrite or choose another folder.",
        existing[0],
    )


def refuse_existing(targets: Iterable[PathLike], force: bool = False) -> None:
    """:func:`check_overwrite` without a question: FileExistsExportError for an existing
    target unless ``force``."""
    check_overwrite(targets, force)


def write_all(writes: Sequence[Callable[[], Path]]) -> list[Path]:
    """Run each write in turn and return the paths; when one fails (or is cancelled)
    the files already written by this call are removed, so a set of files that belong
    together (a PNG and its sidecar) is written whole or not at all."""
    written: list[Path] = []
    try:
        for write in writes:
            written.append(write())
    except BaseException:
        for path in written:
            try:
                path.unlink()
            except OSError:
                pass
        raise
    return written


# --- single files -----------------------------------------------------------------------------


def write_png(path: PathLike, rgb_uint8: np.ndarray, force: bool = False, *, upscale: int = 1) -> Path:
    """Write an (H, W, 3) uint8 array as a PNG with exactly those pixels (no resampling).

    (H, W) gray and (H, W, 4) RGBA arrays are written as such. ``upscale`` repeats every
    pixel ``upscale`` times in both directions (nearest neighbour). Returns the path.
    Raises :class:`FileExistsExportError` if the file exists and ``force`` is False,
    :class:`ExportError` when it cannot be written.
    """
    array = np.asarray(rgb_uint8)
    if array.dtype != np.uint8:
        raise ValueError(f"write_png needs a uint8 array, not {array.dtype}")
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4))):
        raise ValueError(f"write_png needs an (H, W), (H, W, 3) or (H, W, 4) array, not {array.shape}")
    array = upscale_array(array, upscale)
    image = Image.fromarray(np.ascontiguousarray(array))
    # zlib level 1: a 2000x2000 grid encodes about 4x faster than Pillow's default 6
    # for files about 10% larger, which matters when a whole network is exported.
    return _write_atomic(path, lambda handle: image.save(handle, format="PNG", compress_level=1), force)


def write_npz(path: PathLike, arrays: Mapping[str, Any], force: bool = False) -> Path:
    """Write arrays (numpy arrays or torch tensors) to an uncompressed ``.npz``.

    The keys are kept exactly (``"features.0"``, ``"layer1.0.conv1"``, ``"input"``), so
    ``np.load(path)["layer1.0.conv1"]`` gives that layer back. Returns the path.
    """
    plain = {str(key): to_numpy(value) for key, value in arrays.items()}
    return _write_atomic(path, lambda handle: np.savez(handle, **plain), force)


def write_bytes(path: PathLike, data: bytes, force: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically (a picture made elsewhere: an SVG, a PNG)."""
    return _write_atomic(path, lambda handle: handle.write(data), force)


def write_json(path: PathLike, data: Any, force: bool = False) -> Path:
    """Write ``data`` as indented UTF-8 JSON; paths, tuples and numpy values are converted."""
    text = json.dumps(data, indent=2, ensure_ascii=False, default=_json_default) + "\n"
    encoded = text.encode("utf-8")
    return _write_atomic(path, lambda handle: handle.write(encoded), force)


def write_text(path: PathLike, text: str, force: bool = True) -> Path:
    """Write UTF-8 text (a page, a stylesheet) atomically; replaces by default."""
    encoded = text.encode("utf-8")
    return _write_atomic(path, lambda handle: handle.write(encoded), force)


def write_jpeg(path: PathLike, rgb_uint8: np.ndarray, quality: int = 88, force: bool = True) -> Path:
    """Write an (H, W, 3) uint8 array as a JPEG (for pictures where size matters more than
    exact pixels: an atlas has thousands); replaces by default."""
    image = Image.fromarray(np.ascontiguousarray(np.asarray(rgb_uint8, dtype=np.uint8)))
    return _write_atomic(path, lambda handle: image.save(handle, format="JPEG", quality=int(quality)), force)


def upscale_array(array: np.ndarray, factor: int) -> np.ndarray:
    """Repeat every pixel ``factor`` times along both axes (nearest neighbour, exact)."""
    factor = int(factor)
    if factor < 1:
        raise ValueError(f"upscale must be a whole number of at least 1, not {factor}")
    if factor == 1:
        return array
    return np.repeat(np.repeat(array, factor, axis=0), factor, axis=1)


def to_numpy(value: Any) -> np.ndarray:
    """A numpy array or torch tensor (any device) as a numpy array."""
    if hasattr(value, "detach"):  # a torch tensor; no torch import needed
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _json_default(value: Any):
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    return str(value)  # torch.device, dtypes, enums


def file_sha256(path: PathLike) -> str:
    """Hex SHA-256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}


def safe_filename(layer_name: str) -> str:
    """A file-name stem for a layer: ``"layer1.0.conv1"`` stays, ``"relu#2"`` -> ``"relu_2"``.

    Keeps letters, digits, dots, dashes and underscores; safe on Windows, macOS and Linux.
    """
    stem = _UNSAFE.sub("_", layer_name).strip("._ ")
    if not stem:
        stem = "layer"
    if stem.split(".")[0].lower() in _RESERVED:
        stem = "_" + stem
    return stem[:150]
