"""``build_index``: one pass over a folder, resumable and incremental.

The run lists the folder, opens the index at ``output`` if there is one and continues
it: files already indexed with the same size and modification time are not read again,
new files are added, and files left unread by an interrupted run are read now. A file
that changed (or vanished) since it was indexed cannot be taken out of the running sums
and top-K lists exactly, so the whole folder is read again (the progress text says so).
The index is saved every ``checkpoint_seconds`` and when the run stops for any reason
(Ctrl-C, cancel), so the next run resumes where this one stopped.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Optional

import numpy as np

from featurescope.core.errors import IndexFileError, ModelError
from featurescope.core.index.geometry import preprocessing_of
from featurescope.core.index.groups import folder_groups, group_ids, regroup
from featurescope.core.index.reduce import LayerTopK, merge_all
from featurescope.core.index.lock import IndexLock
from featurescope.core.index.size import check_fits, grow_k
from featurescope.core.index.store import (
    FORMAT, STATE_OK, STATE_SKIPPED, STATE_TODO, Index, check_compatible, empty_files,
    is_index_file, open_index,
)
from featurescope.core.index.walk import list_images
from featurescope.core.progress import CancelToken, Cancelled, ProgressCallback, check, report


def _check_limits(top, batch_size, workers, engine) -> None:
    """Refuse impossible settings before anything is read or written."""
    if int(top) < 1:
        raise IndexFileError(f"--top must be at least 1, not {top}.")
    if int(batch_size) < 1:
        raise IndexFileError(f"The batch size must be at least 1 image, not {batch_size}.")
    if workers is not None and int(workers) < 0:
        raise IndexFileError(f"--workers must be 0 (decode in this process) or more, not {workers}.")
    if engine not in ("local", "ray"):
        raise IndexFileError(f"{engine!r} is not an engine; choose local or ray.")


def _check_output(output: Path, rebuild: bool) -> None:
    """Only an index file may be continued or replaced; say so before the run starts."""
    if output.is_dir():
        raise IndexFileError(f"{output} is a folder; give the index a file name "
                             f"(-o {output / 'photos.fsindex'}).")
    if output.exists() and rebuild and not is_index_file(output):
        raise IndexFileError(f"{output} is not a readable featurescope index, so --rebuild will "
                             "not replace it; choose another output file (or delete it first "
                             "if it was an index).")
    if output.exists() and not output.is_file():
        raise IndexFileError(f"{output} is not a regular file; choose another output file.")


def _capped(asked: int, files: int) -> int:
    """K: no more than there are files to rank (at least 1)."""
    return max(1, min(int(asked), int(files)))


def default_workers() -> int:
    """Decoding processes: one per core beyond the one running the model, at most 8."""
    return max(0, min(8, (os.cpu_count() or 1) - 1))


def _fields(model, layers: list[str]) -> dict:
    """Receptive fields of ``layers`` from one pass; per layer where that pass fails."""
    from featurescope.core.analysis.receptive import receptive_field, receptive_fields

    try:
        return receptive_fields(model, layers)
    except ModelError:
        found = {}
        for name in layers:
            try:
                found[name] = receptive_field(model, name)
            except ModelError:  # a field featurescope cannot follow
                found[name] = None
        return found


def _infos(model, layers: list[str]) -> dict:
    """{name: LayerInfo} of ``layers``: the conv/pool layers, or any module asked for."""
    from featurescope.core.capture.capture import layer_infos

    infos = {info.name: info for info in model.layer_info}
    if any(name not in infos for name in layers):
        infos.update({info.name: info for info in layer_infos(model, layers)})
    return infos


def _layer_entries(model, layers: list[str]) -> list[dict]:
    infos = _infos(model, layers)
    fields = _fields(model, layers)
    entries = []
    for name in layers:
        info = infos[name]
        rf = fields.get(name)
        if rf is not None:
            field = {"size_hw": list(rf.size_hw), "jump_hw": list(rf.jump_hw),
                     "start_hw": list(rf.start_hw), "input_size": list(rf.input_size),
                     "output_shape": list(rf.output_shape)}
        else:  # unknown field: the whole input
            h, w = model.input_size
            field = {"size_hw": [2 * h, 2 * w], "jump_hw": [0, 0], "start_hw": [h / 2, w / 2],
                     "input_size": [h, w], "output_shape": list(info.output_shape[1:])}
        entries.append({"name": name, "kind": info.kind, "channels": int(info.out_channels),
                        "shape": list(info.output_shape[1:]), "field": field, "count": 0})
    return entries


def _model_record(model) -> dict:
    return {"name": model.name, "source": str(getattr(model, "source", model.name)),
            "display_name": getattr(model, "display_name", model.name),
            "weights": getattr(model, "weights_label", None), "trained": getattr(model, "trained", None)}


def _choose_layers(model, layers) -> list[str]:
    """Layer names in network order: None the conv/pool layers, else names and groups
    (``act``, ``block``... see core/capture/selection.py); ModelError for unknown ones."""
    from featurescope.core.capture.capture import layer_infos

    if layers is None:
        return list(model.layers)
    if isinstance(layers, str):
        layers = [layers]
    if not list(dict.fromkeys(layers)):
        raise ModelError("No layers were asked for; pass None to index every layer.")
    return [info.name for info in layer_infos(model, list(layers))]


def _fresh_index(model, folder: Path, prep, layers, k) -> Index:
    from featurescope import __version__

    meta = {"format": FORMAT, "featurescope_version": __version__, "model": _model_record(model),
            "preprocessing": prep.to_dict(), "k": int(k), "folder": str(folder),
            "layers": _layer_entries(model, layers), "complete": False, "skipped": []}
    topk = {entry["name"]: LayerTopK.empty(entry["channels"], k, entry["shape"]) for entry in meta["layers"]}
    return Index(meta, empty_files(), topk)


def _update_files(index: Index, listed) -> tuple[Index, str]:
    """Add new files to ``index``'s table. Returns (index, note); an empty table when
    something indexed changed or vanished (note says so)."""
    files = index.files
    known = {str(p): i for i, p in enumerate(files["path"])}
    now = {record.path: record for record in listed}
    changed = [p for p, i in known.items() if files["state"][i] != STATE_TODO and
               (p not in now or now[p].size != files["size"][i] or now[p].mtime_ns != files["mtime_ns"][i])]
    note = ""
    if changed:
        note = (f"{len(changed)} indexed file{'s' if len(changed) != 1 else ''} changed or "
                "vanished; reading the whole folder again")
        index.files, known = empty_files(), {}
        index.meta["skipped"] = []
        index.topk = {name: LayerTopK.empty(t.values.shape[0], index.k, t.shape) for name, t in index.topk.items()}
        files = index.files
    added = [record for path, record in now.items() if path not in known]
    # unread files of an interrupted run may have changed too: take their new size
    for path, i in known.items():
        if files["state"][i] == STATE_TODO and path in now:
            files["size"][i], files["mtime_ns"][i] = now[path].size, now[path].mtime_ns
    if added:
        index.files = {
            "path": np.concatenate([files["path"].astype(str), np.array([r.path for r in added], dtype=str)]),
            "size": np.concatenate([files["size"], np.array([r.size for r in added], np.int64)]),
            "mtime_ns": np.concatenate([files["mtime_ns"], np.array([r.mtime_ns for r in added], np.int64)]),
            "height": np.concatenate([files["height"], np.zeros(len(added), np.int32)]),
            "width": np.concatenate([files["width"], np.zeros(len(added), np.int32)]),
            "state": np.concatenate([files["state"], np.zeros(len(added), np.int8)]),
        }
    return index, note


def _track_groups(index: Index) -> Optional[np.ndarray]:
    """Per file, its sub-folder's number when the folder has the ImageFolder layout (else
    None); keeps ``meta["groups"]`` and the layers' group sums in step with the files."""
    names = folder_groups(index.files["path"])
    old = list(index.meta.get("groups", []))
    kept = all(layer.group_sums is not None for layer in index.topk.values())
    if not (index.files["state"] != STATE_TODO).any():
        regroup(index.topk, [], names)  # nothing read yet: every sum starts at zero
    elif names != old or not kept:
        if not (old and kept and regroup(index.topk, old, names)):
            names = []  # the layout changed under indexed files: no labels until --rebuild
    if not names:
        for layer in index.topk.values():
            layer.group_sums = None
    index.meta["groups"] = names
    return group_ids(index.files["path"], names) if names else None


def _path_rank(paths: np.ndarray) -> np.ndarray:
    rank = np.empty(len(paths), np.int64)
    rank[np.argsort(paths, kind="stable")] = np.arange(len(paths))
    return rank


def _eta(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 \
        else f"{seconds // 60}:{seconds % 60:02d}"


class IndexBuild:
    """A build in steps, for callers that interleave it with other work (the app runs
    one :meth:`step` per background unit). :func:`build_index` is the plain loop.

    Creating it lists the folder and opens (or starts) the index; :meth:`step` reads a
    few batches; :meth:`close` stops the engine and saves. Arguments as for
    :func:`build_index`; ``multiprocessing_context`` ("spawn", "forkserver") for the
    DataLoader's workers where forking is unsafe (a process with GUI threads).
    """

    def __init__(self, model, folder, layers=None, top: int = 9, batch_size: int = 32,
                 workers: Optional[int] = None, engine: str = "local", *, output=None,
                 rebuild: bool = False, checkpoint_seconds: float = 30.0,
                 ray_address: Optional[str] = None, cancel: Optional[CancelToken] = None,
                 multiprocessing_context: Optional[str] = None):
        _check_limits(top, batch_size, workers, engine)
        folder = Path(folder).expanduser().resolve()
        listed = list_images(folder)
        prep = preprocessing_of(model)
        chosen = _choose_layers(model, layers)
        self.asked = int(top)
        workers = default_workers() if workers is None else int(workers)
        self.output = None if output is None else Path(output).expanduser()
        self.checkpoint_seconds = float(checkpoint_seconds)
        if not self.checkpoint_seconds > 0:  # 0 or less would save after every batch
            raise IndexFileError(f"--checkpoint-every must be a number of seconds above 0, "
                                 f"not {checkpoint_seconds}.")
        self._lock = None
        self.existed = self.output is not None and self.output.exists() and not rebuild
        if self.output is not None:
            _check_output(self.output, rebuild)
            self._lock = IndexLock(self.output).acquire()
        try:
            self._open(model, folder, listed, prep, chosen, rebuild)
            self._start(model, folder, prep, chosen, batch_size, workers, engine, ray_address,
                        cancel, multiprocessing_context)
        except BaseException:
            self.release()
            raise

    def _start(self, model, folder, prep, chosen, batch_size, workers, engine, ray_address,
               cancel, multiprocessing_context) -> None:
        index = self.index
        todo = [(int(i), str(index.files["path"][i]))
                for i in np.flatnonzero(index.files["state"] == STATE_TODO)]
        self.total, self.done = len(todo), 0
        index.meta["complete"] = not todo and index.meta.get("complete", False)
        k = self.k
        if engine == "ray":
            from featurescope.core.cluster import check_address, import_ray
            from featurescope.core.index.ray_engine import run_ray

            import_ray()  # both said now, before the first batch is asked for
            check_address(ray_address or os.environ.get("RAY_ADDRESS"))

            self._batches = run_ray(model, folder, todo, prep, chosen, k, self.rank, batch_size,
                                    workers, cancel=cancel, address=ray_address, groups=self.groups)
        else:
            from featurescope.core.index.local import run_local

            self._batches = run_local(model, folder, todo, prep, chosen, k, self.rank, batch_size,
                                      workers, cancel, multiprocessing_context, groups=self.groups)
        self._started = self._last_save = time.monotonic()
        self.finished = False

    def _open(self, model, folder: Path, listed, prep, chosen: list[str], rebuild: bool) -> None:
        """Continue the index at ``output`` (or start one), add the listed files, and set K:
        the asked top, but never more than there are files (it grows as files are added)."""
        index = None
        infos = _infos(model, chosen)
        channels = sum(int(infos[name].out_channels) for name in chosen)
        # before anything is allocated: the files listed now (more may be in the index)
        check_fits(channels, len(chosen), _capped(self.asked, len(listed)), self.output)
        if self.output is not None and self.output.exists() and not rebuild:
            index = open_index(self.output)
            why = check_compatible(index, _model_record(model), prep, chosen, self.asked)
            if why is None and Path(index.meta["folder"]) != folder:
                why = f"it indexes {index.meta['folder']}"
            if why:
                raise IndexFileError(f"{self.output.name} cannot be continued: {why}; choose "
                                     "another output file or rebuild it (--rebuild).")
        if index is None:
            index = _fresh_index(model, folder, prep, chosen, _capped(self.asked, len(listed)))
            index.meta["k_asked"] = self.asked
        index, self.note = _update_files(index, listed)
        k = _capped(self.asked, len(index.files["path"]))
        check_fits(channels, len(chosen), k, self.output)
        grow_k(index, k)
        self.index, self.k = index, index.k
        self.rank = _path_rank(index.files["path"])
        self.groups = _track_groups(index)

    def release(self) -> None:
        """Let another run write the output (the lock; :meth:`close` calls it)."""
        if self._lock is not None:
            self._lock.release()

    def _apply(self, batch) -> None:
        index, files = self.index, self.index.files
        merge_all(index.topk, batch.partial, self.rank, self.k)
        files["state"][batch.ids] = np.where(batch.ok, STATE_OK, STATE_SKIPPED)
        files["height"][batch.ids] = batch.heights
        files["width"][batch.ids] = batch.widths
        for file_id, ok, reason in zip(batch.ids, batch.ok, batch.reasons):
            if not ok:
                index.meta["skipped"].append({"path": str(files["path"][file_id]), "reason": reason})
        self.done += len(batch.ids)

    def progress_text(self) -> str:
        elapsed = time.monotonic() - self._started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        left = (self.total - self.done) / rate if rate > 0 else 0.0
        return f"{rate:.1f} images/s, {_eta(left)} left"

    def step(self, batches: int = 1, progress: Optional[ProgressCallback] = None,
             cancel: Optional[CancelToken] = None) -> bool:
        """Read up to ``batches`` batches; True once every file has been read."""
        for _ in range(max(1, int(batches))):
            check(cancel)
            batch = next(self._batches, None)
            if batch is None:
                self.finished = True
                self.index.meta["complete"] = True
                break
            self._apply(batch)
            report(progress, self.done, self.total, self.progress_text())
            if self.output is not None and time.monotonic() - self._last_save >= self.checkpoint_seconds:
                self.index.save(self.output)
                self._last_save = time.monotonic()
        return self.finished

    def close(self, failed: bool = False) -> Index:
        """Stop the engine (its worker processes or Ray) and save; the index so far.
        ``failed``: the run stopped on an error; a new index that read nothing yet is then
        not written (an empty file would later pass for an index of nothing)."""
        close = getattr(self._batches, "close", None)
        try:
            if close is not None:
                close()
            empty_and_new = failed and self.done == 0 and not self.existed
            if self.output is not None and not empty_and_new:
                self.index.save(self.output)
        finally:
            self.release()
        return self.index


def build_index(model, folder, layers=None, top: int = 9, batch_size: int = 32,
                workers: Optional[int] = None, engine: str = "local",
                progress: Optional[ProgressCallback] = None, cancel: Optional[CancelToken] = None,
                *, output=None, rebuild: bool = False, checkpoint_seconds: float = 30.0,
                ray_address: Optional[str] = None) -> Index:
    """Index ``folder``: per layer and channel, the ``top`` images with the highest spatial
    maximum, where it was, the mean maximum and how often the channel fired.

    ``model``: a LoadedModel. ``layers``: names (default every captured layer).
    ``workers``: decoding processes (default one per spare core; Ray: actors).
    ``engine``: "local" or "ray" (``ray_address`` or RAY_ADDRESS for a cluster, else a
    local Ray). ``output``: the index file; when it exists the run continues it (new files
    only; see the module docstring) unless ``rebuild``; it is saved every
    ``checkpoint_seconds`` and whenever the run stops. ``progress(done, total, text)``
    reports images with images/s and time left; ``cancel`` stops between batches (raises
    Cancelled after saving). Returns the :class:`Index`. Raises ImageError (not a folder),
    ModelError (unknown layer), IndexFileError (an ``output`` built with other settings).
    """
    build = IndexBuild(model, folder, layers, top, batch_size, workers, engine, output=output,
                       rebuild=rebuild, checkpoint_seconds=checkpoint_seconds,
                       ray_address=ray_address, cancel=cancel)
    report(progress, 0, build.total, build.note or
           f"{build.total} image{'s' if build.total != 1 else ''} to read")
    try:
        while not build.step(1, progress, cancel):
            pass
    except (Cancelled, KeyboardInterrupt):
        build.close()
        raise
    except BaseException:
        build.close(failed=True)
        raise
    build.close()
    return build.index
