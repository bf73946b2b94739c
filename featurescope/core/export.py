"""Write what featurescope shows to disk: PNG grids, an NPZ of activations, a JSON sidecar.

Every write is atomic: the bytes go to a temporary file in the target folder, are
flushed and fsynced, and only then renamed over the target with ``os.replace``. A
failure at any point (full disk, read-only folder, cancel) removes the temporary file,
so no half-written file is ever left behind. An existing file is never replaced unless
``force=True``; :func:`export_layers` checks every target before it writes anything.

Problems a user can fix raise :class:`~featurescope.core.errors.ExportError` (or its
subclass :class:`~featurescope.core.errors.FileExistsExportError`, which carries the
path so the GUI can ask before overwriting).
"""
from __future__ import annotations

import datetime as _dt
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
from PIL import Image, ImageDraw, ImageFont

from featurescope.core.errors import ExportError, FileExistsExportError
from featurescope.core.progress import CancelToken, Cancelled, ProgressCallback, check, report

__all__ = [
    "write_png",
    "write_npz",
    "write_json",
    "annotate_grid",
    "export_layers",
    "export_targets",
    "safe_filename",
    "file_sha256",
    "NPZ_NAME",
    "JSON_NAME",
]

PathLike = Union[str, os.PathLike]

NPZ_NAME = "activations.npz"
FILTER_MIN_UPSCALE = 8  # filter grids are enlarged at least this much
JSON_NAME = "featurescope.json"

# Title bar and channel-number colours of annotated grids.
_BAR_BACKGROUND = (24, 24, 24)
_BAR_TEXT = (245, 245, 245)
_LABEL_BACKGROUND = (0, 0, 0)
_LABEL_TEXT = (255, 255, 255)
_MAX_ANNOTATED_SIDE = 8000  # pixels; annotation enlarges tiny tiles at most this far


# --- atomic writing -----------------------------------------------------------------------


def _write_atomic(path: PathLike, write: Callable[[io.BufferedWriter], None], force: bool) -> Path:
    """Write a file through a temporary sibling and ``os.replace``; see the module docstring."""
    path = Path(path)
    folder = path.parent
    _make_folder(folder)
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


def _make_folder(folder: Path) -> None:
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
    if code in (errno.EACCES, errno.EPERM, errno.EROFS) or isinstance(error, PermissionError):
        return ExportError(
            f"{path.name} could not be written because the folder {path.parent} is read-only "
            "(permission denied); choose another folder."
        )
    return ExportError(f"{path} could not be written ({_reason(error)}).")


def _reason(error: OSError) -> str:
    if isinstance(error, PermissionError):
        return "permission denied"
    return (error.strerror or str(error) or type(error).__name__).rstrip(".").lower()


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
    plain = {str(key): _to_numpy(value) for key, value in arrays.items()}
    return _write_atomic(path, lambda handle: np.savez(handle, **plain), force)


def write_json(path: PathLike, data: Any, force: bool = False) -> Path:
    """Write ``data`` as indented UTF-8 JSON; paths, tuples and numpy values are converted."""
    text = json.dumps(data, indent=2, ensure_ascii=False, default=_json_default) + "\n"
    encoded = text.encode("utf-8")
    return _write_atomic(path, lambda handle: handle.write(encoded), force)


def upscale_array(array: np.ndarray, factor: int) -> np.ndarray:
    """Repeat every pixel ``factor`` times along both axes (nearest neighbour, exact)."""
    factor = int(factor)
    if factor < 1:
        raise ValueError(f"upscale must be a whole number of at least 1, not {factor}")
    if factor == 1:
        return array
    return np.repeat(np.repeat(array, factor, axis=0), factor, axis=1)


def _to_numpy(value: Any) -> np.ndarray:
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


# --- annotation -------------------------------------------------------------------------------


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: only the fixed bitmap font
        return ImageFont.load_default()


def _text_size(draw: ImageDraw.ImageDraw, text: str, font) -> tuple[int, int]:
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    return right - left, bottom - top


def _enlarge_tiles(array: np.ndarray, rows: int, columns: int, tile_h: int, tile_w: int,
                   gap: int, factor: int) -> np.ndarray:
    """Repeat every tile's pixels ``factor`` times while separators keep their width."""

    def source(count: int, tile: int) -> np.ndarray:
        out = np.arange(count * tile * factor + (count - 1) * gap)
        cell, offset = np.divmod(out, tile * factor + gap)
        inside = offset < tile * factor
        return cell * (tile + gap) + np.where(inside, offset // factor, tile + (offset - tile * factor))

    return array[np.ix_(source(rows, tile_h), source(columns, tile_w))]


def annotate_grid(
    rgb: np.ndarray,
    layout,
    title: str,
    channel_numbers: bool = True,
    upscale: int = 1,
) -> np.ndarray:
    """Return a copy of a feature or filter grid with a title bar and channel numbers.

    ``rgb`` is the grid (already enlarged ``upscale`` times, as ``feature_grid(...,
    upscale=upscale)`` returns it) and ``layout`` its ``GridLayout``. A dark bar above the
    grid shows ``title`` (e.g. the layer name); each tile gets its true channel number in
    its top-left corner. When tiles are too small for their numbers, every tile is enlarged
    further by a whole factor (nearest neighbour; separators keep their width) so that
    each number fits and covers at most half of its tile.
    """
    array = np.asarray(rgb, dtype=np.uint8)
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    array = array[:, :, :3]
    upscale = max(1, int(upscale))
    tile_h = layout.tile_height * upscale
    tile_w = layout.tile_width * upscale

    number_size = 10
    font = _font(number_size)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    extra = 1
    if channel_numbers and layout.channels:
        widest = str(max(int(c) for c in np.asarray(layout.order).ravel()))
        text_w, text_h = _text_size(probe, widest, font)
        needed_w, needed_h = text_w + 3, text_h + 3
        # Smallest whole factor that makes the number fit on its tile and leaves at least
        # half of the tile visible, capped so that a huge layer stays a sane picture.
        extra = max(1, -(-needed_w // max(tile_w, 1)), -(-2 * needed_h // max(tile_h, 1)))
        longest = max(tile_w * layout.columns, tile_h * layout.rows)
        extra = max(1, min(extra, _MAX_ANNOTATED_SIDE // max(longest, 1)))
    gap = layout.gap * upscale
    if extra > 1:
        array = _enlarge_tiles(array, layout.rows, layout.columns, tile_h, tile_w, gap, extra)
    tile_h, tile_w = tile_h * extra, tile_w * extra

    height, width = array.shape[:2]
    title_size = int(min(28, max(12, width // 40)))
    title_font = _font(title_size)
    title_w, title_h = _text_size(probe, title, title_font)
    bar = title_h + 2 * max(4, title_size // 3)
    canvas_w = max(width, title_w + 2 * max(6, title_size // 2))
    canvas = Image.new("RGB", (canvas_w, height + bar), _BAR_BACKGROUND)
    canvas.paste(Image.fromarray(np.ascontiguousarray(array)), (0, bar))
    draw = ImageDraw.Draw(canvas)
    draw.text((max(6, title_size // 2), (bar - title_h) // 2), title, fill=_BAR_TEXT, font=title_font, anchor="lt")

    if channel_numbers:
        for position, channel in enumerate(np.asarray(layout.order).ravel()):
            row, column = divmod(position, layout.columns)
            x = column * (tile_w + gap)
            y = row * (tile_h + gap) + bar
            label = str(int(channel))
            text_w, text_h = _text_size(draw, label, font)
            draw.rectangle((x, y, x + text_w + 2, y + text_h + 2), fill=_LABEL_BACKGROUND)
            draw.text((x + 1, y + 1), label, fill=_LABEL_TEXT, font=font, anchor="lt")
    return np.asarray(canvas)


# --- a whole export ---------------------------------------------------------------------------


def _format_set(formats: Union[str, Iterable[str]]) -> set[str]:
    if isinstance(formats, str):
        formats = [formats]
    chosen = set()
    for item in formats:
        item = item.lower()
        if item == "both":
            chosen |= {"png", "npz"}
        elif item in ("png", "npz"):
            chosen.add(item)
        else:
            raise ExportError(f"{item!r} is not an export format; use png, npz or both.")
    return chosen


def export_layers(
    result,
    out_dir: PathLike,
    layers: Optional[Sequence[str]] = None,
    formats: Union[str, Sequence[str]] = ("png",),
    normalize: str = "channel",
    colormap: str = "viridis",
    order: str = "index",
    upscale: int = 1,
    annotate: bool = False,
    filters: bool = False,
    model=None,
    source_path: Optional[PathLike] = None,
    force: bool = False,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
) -> list[Path]:
    """Export the captured layers of ``result`` (a ``CaptureResult``) into ``out_dir``.

    Per layer, with "png" in ``formats``: ``<layer>.png``, the feature grid exactly as
    ``feature_grid(result[layer], normalize, colormap, order, upscale=upscale)`` gives
    it; with ``annotate`` also ``<layer>_annotated.png`` (layer name and channel numbers);
    with ``filters`` (conv layers, needs ``model``) ``<layer>_filters.png``. With "npz":
    one ``activations.npz`` whose keys are the layer names exactly plus ``"input"``.
    Always a JSON sidecar ``featurescope.json`` (model, weights, layers, shapes, grid
    options, channel order, source image and its SHA-256, version, date).

    ``<layer>`` is :func:`safe_filename` of the layer name. Nothing is written when any
    target exists and ``force`` is False (:class:`FileExistsExportError`). ``progress``
    is called once per layer; ``cancel`` is checked between files, and a cancelled or
    failed layer leaves none of its files behind. Returns the paths written.
    """
    chosen = _format_set(formats)
    names = list(result.layers) if layers is None else list(layers)
    unknown = [name for name in names if name not in result]
    if unknown:
        raise ExportError(
            f"Layer {unknown[0]!r} was not captured, so it cannot be exported; "
            f"captured layers are {', '.join(list(result.layers)[:6])}"
            f"{', ...' if len(result.layers) > 6 else ''}."
        )
    if not names:
        raise ExportError("No layers were chosen for export.")
    if filters and model is None:
        raise ExportError("Exporting filters needs the model the activations came from.")
    upscale = int(upscale)
    if upscale < 1:
        raise ExportError(f"The upscale factor must be a whole number of at least 1, not {upscale}.")
    out_dir = Path(out_dir)
    # Kernels are 1x1 to 11x11 pixels: at their true size a filter grid is a smudge.
    filter_upscale = max(upscale, FILTER_MIN_UPSCALE)

    # Plan every file first, so that an existing one stops the export before any write.
    filter_names = [name for name in names if _has_filters(result, name)] if filters else []
    plan = _plan(names, out_dir, chosen, annotate, filter_names)
    npz_path = out_dir / NPZ_NAME if "npz" in chosen else None
    json_path = out_dir / JSON_NAME
    targets = [path for _, files in plan for _, path in files] + ([npz_path] if npz_path else []) + [json_path]
    if not force:
        existing = [path for path in targets if os.path.lexists(path)]
        if existing:
            more = f" and {len(existing) - 1} more" if len(existing) > 1 else ""
            raise FileExistsExportError(
                f"{existing[0]} already exists{more} and nothing was written; "
                "use --force to overwrite or choose another folder.",
                existing[0],
            )
    _make_folder(out_dir)

    from featurescope.core import grids  # torch-free but heavier; only needed here

    total = len(plan) + (1 if npz_path else 0) + 1
    written: list[Path] = []
    layer_records = []
    for done, (name, files) in enumerate(plan):
        check(cancel)
        report(progress, done, total, f"Exporting {name}")
        chw = _to_numpy(result[name])
        position_to_channel = np.asarray(grids.channel_order(chw, order))
        layer_files: list[Path] = []
        try:
            grid = filter_picture = None
            for kind, path in files:
                check(cancel)
                if kind in ("grid", "annotated") and grid is None:
                    grid = grids.feature_grid(chw, normalize=normalize, colormap=colormap, order=order, upscale=upscale)
                if kind in ("filters", "filters_annotated") and filter_picture is None:
                    from featurescope.core.filters import filter_grid

                    weight = _layer_weight(model, result, name)
                    filter_picture = filter_grid(weight, upscale=filter_upscale)
                if kind == "grid":
                    picture = grid
                elif kind == "annotated":
                    layout = grids.grid_layout(chw.shape[0], chw.shape[1], chw.shape[2], order=position_to_channel)
                    title = f"{name}  ({chw.shape[0]} channels, {chw.shape[1]}x{chw.shape[2]})"
                    picture = annotate_grid(grid, layout, title, upscale=upscale)
                elif kind == "filters":
                    picture = filter_picture[0]
                else:
                    kh, kw = weight.shape[-2:]
                    title = f"{name} filters  ({weight.shape[0]} kernels, {kh}x{kw})"
                    picture = annotate_grid(filter_picture[0], filter_picture[1], title, upscale=filter_upscale)
                layer_files.append(write_png(path, picture, force=True))
        except BaseException:
            # A cancelled or failed layer leaves none of its files behind.
            for path in layer_files:
                try:
                    path.unlink()
                except OSError:
                    pass
            raise
        written.extend(layer_files)
        layer_records.append(_layer_record(result, name, chw, position_to_channel, layer_files, out_dir))

    done = len(plan)
    if npz_path is not None:
        check(cancel)
        report(progress, done, total, f"Writing {NPZ_NAME}")
        arrays = {name: result[name] for name in names}
        arrays["input"] = result.input
        written.append(write_npz(npz_path, arrays, force=True))
        done += 1

    check(cancel)
    report(progress, done, total, f"Writing {JSON_NAME}")
    sidecar = _sidecar(
        result, model, layer_records, names, normalize, colormap, order, upscale, annotate,
        filters, source_path, npz_path, out_dir,
    )
    written.append(write_json(json_path, sidecar, force=True))
    report(progress, total, total, "Export finished")
    return written


def _unique_stems(names: Sequence[str]) -> dict[str, str]:
    stems: dict[str, str] = {}
    used: set[str] = set()
    for name in names:
        stem = safe_filename(name)
        candidate, n = stem, 2
        while candidate.lower() in used:
            candidate = f"{stem}_{n}"
            n += 1
        used.add(candidate.lower())
        stems[name] = candidate
    return stems


def _plan(names, out_dir: Path, chosen: set, annotate: bool, filter_names) -> list:
    """(layer name, [(kind, path), ...]) for every layer, in export order."""
    stems = _unique_stems(names)
    filter_names = set(filter_names)
    plan = []
    for name in names:
        files: list[tuple[str, Path]] = []
        if "png" in chosen:
            files.append(("grid", out_dir / f"{stems[name]}.png"))
            if annotate:
                files.append(("annotated", out_dir / f"{stems[name]}_annotated.png"))
            if name in filter_names:
                files.append(("filters", out_dir / f"{stems[name]}_filters.png"))
                if annotate:
                    files.append(("filters_annotated", out_dir / f"{stems[name]}_filters_annotated.png"))
        plan.append((name, files))
    return plan


def export_targets(
    layers: Sequence[str],
    out_dir: PathLike,
    formats: Union[str, Sequence[str]] = ("png",),
    annotate: bool = False,
    filter_layers: Sequence[str] = (),
) -> list[Path]:
    """Every path :func:`export_layers` would write for these layers, without writing.

    ``filter_layers`` are the conv layers whose filters are exported. A batch export
    (several images) checks all of them before the first image is written.
    """
    chosen = _format_set(formats)
    out_dir = Path(out_dir)
    plan = _plan(list(layers), out_dir, chosen, annotate, filter_layers)
    targets = [path for _, files in plan for _, path in files]
    if "npz" in chosen:
        targets.append(out_dir / NPZ_NAME)
    targets.append(out_dir / JSON_NAME)
    return targets


def _info(result, name):
    info = getattr(result, "info", None) or {}
    return info.get(name)


def _has_filters(result, name: str) -> bool:
    info = _info(result, name)
    return info is not None and info.kind == "Conv2d"


def _layer_weight(model, result, name: str) -> np.ndarray:
    info = _info(result, name)
    module_name = info.module_name if info is not None else name.split("#")[0]
    module = model.module.get_submodule(module_name) if module_name else model.module
    return _to_numpy(module.weight)


def _layer_record(result, name, chw, position_to_channel, files, out_dir) -> dict:
    info = _info(result, name)
    record: dict[str, Any] = {"name": name, "shape": list(chw.shape)}
    if info is not None:
        record.update(
            kind=info.kind,
            module=info.module_name,
            index=info.index,
            in_channels=info.in_channels,
            out_channels=info.out_channels,
            kernel_size=info.kernel_size,
            stride=info.stride,
            padding=info.padding,
            dilation=info.dilation,
            groups=info.groups,
            input_shape=info.input_shape,
            output_shape=info.output_shape,
            parameters=info.parameters,
        )
        if info.output_size is not None:
            record["output_size"] = info.output_size
    record["channel_order"] = [int(c) for c in position_to_channel]
    record["files"] = [_relative(path, out_dir) for path in files]
    return record


def _relative(path: Path, folder: Path) -> str:
    try:
        return path.relative_to(folder).as_posix()
    except ValueError:
        return str(path)


def _sidecar(result, model, layer_records, names, normalize, colormap, order, upscale,
             annotate, filters, source_path, npz_path, out_dir) -> dict:
    from featurescope import __version__

    model_block: dict[str, Any] = {"name": getattr(result, "model_name", None)}
    if model is not None:
        model_block = {
            "name": model.name,
            "display_name": getattr(model, "display_name", model.name),
            "weights": getattr(model, "weights_label", None),
            "trained": getattr(model, "trained", None),
            "device": str(getattr(model, "device", "")) or None,
        }
    source = None
    if source_path is not None:
        source_path = Path(source_path)
        source = {"path": str(source_path.resolve()), "name": source_path.name}
        try:
            source["sha256"] = file_sha256(source_path)
        except OSError:
            source["sha256"] = None
    input_tensor = getattr(result, "input", None)
    sidecar: dict[str, Any] = {
        "featurescope_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "model": model_block,
        "source_image": source,
        "input": {
            "shape": list(input_tensor.shape) if input_tensor is not None else None,
            "size": list(model.input_size) if model is not None else None,
            "mean": list(model.mean) if model is not None else None,
            "std": list(model.std) if model is not None else None,
            "npz_key": "input" if npz_path is not None else None,
        },
        "grid": {
            "normalize": normalize,
            "colormap": colormap,
            "channel_order": order,
            "upscale": upscale,
            "annotated": bool(annotate),
            "filters": bool(filters),
            "filters_upscale": max(upscale, FILTER_MIN_UPSCALE) if filters else None,
        },
        "npz": _relative(npz_path, out_dir) if npz_path is not None else None,
        "layers": layer_records,
    }
    predictions = None
    if getattr(result, "logits", None) is not None and hasattr(result, "predictions"):
        try:
            predictions = [
                {"label": p.label, "index": int(p.index), "probability": float(p.probability)}
                for p in result.predictions(top=5)
            ]
        except Exception:  # predictions are a courtesy in the sidecar, never a reason to fail
            predictions = None
    sidecar["predictions"] = predictions
    return sidecar
