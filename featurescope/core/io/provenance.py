"""What every JSON sidecar says about where its pictures came from.

:func:`provenance` builds the one block that every sidecar featurescope writes starts
with (layer exports, the app's grid, activations, Grad-CAM, comparisons): the
featurescope version, when, the model (name, weights, trained or not, device), the
source image with its SHA-256, and the options the pictures were drawn with. The keys
are :data:`PROVENANCE_KEYS`; each sidecar adds its own keys after them.

:func:`layers_sidecar` is the sidecar of a layer export: the block, the input the model
saw, the grid options and, per layer, its shape, metadata, channel order and files, so
that an export can be understood (and redone) without featurescope open.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
from pathlib import Path
from typing import Any, Optional

from featurescope.core.io.writers import PathLike, file_sha256

PROVENANCE_KEYS = ("featurescope_version", "created", "model", "source_image", "options")


def provenance(model=None, source_path: Optional[PathLike] = None, options: Any = None,
               model_name: Optional[str] = None) -> dict[str, Any]:
    """The provenance block: a dict with exactly the keys of :data:`PROVENANCE_KEYS`.

    ``model``: the LoadedModel (None when only ``model_name`` is known); ``source_path``:
    the image file (hashed when it is a readable file); ``options``: a DisplayOptions,
    any dataclass or mapping of how the pictures were drawn, or None.
    """
    from featurescope import __version__

    return {
        "featurescope_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "model": model_record(model, model_name),
        "source_image": source_record(source_path),
        "options": _options_record(options),
    }


def model_record(model=None, model_name: Optional[str] = None) -> dict[str, Any]:
    """Name, display name, weights, trained and device of ``model`` (None fields without it)."""
    if model is None:
        return {"name": model_name, "display_name": model_name, "weights": None,
                "trained": None, "device": None}
    return {
        "name": model.name,
        "display_name": getattr(model, "display_name", model.name),
        "weights": getattr(model, "weights_label", None),
        "trained": getattr(model, "trained", None),
        "device": str(getattr(model, "device", "")) or None,
    }


@dataclasses.dataclass(frozen=True)
class FrameOf:
    """A frame of a video file as an export's source: the file (hashed) and the frame's
    index (0 = the first frame), so the exact picture can be found again."""

    path: str
    index: int

    def __fspath__(self) -> str:
        return str(self.path)


def source_record(path: Optional[PathLike]) -> Optional[dict[str, Any]]:
    """Path, name and SHA-256 of an image file; sha256 is None when it cannot be read
    (a pasted image has a name but no file). None without a path. A :class:`FrameOf`
    adds ``frame_index``."""
    if path is None or path == "" or (isinstance(path, str) and not path.strip()):
        return None
    frame = path.index if isinstance(path, FrameOf) else None
    path = Path(path)
    record: dict[str, Any] = {"path": str(path), "name": path.name, "sha256": None}
    if frame is not None:
        record["frame_index"] = int(frame)
    if path.is_file():
        record["path"] = str(path.resolve())
        try:
            record["sha256"] = file_sha256(path)
        except OSError:
            pass
    return record


def _options_record(options: Any) -> Optional[dict[str, Any]]:
    if options is None:
        return None
    if dataclasses.is_dataclass(options):
        return dataclasses.asdict(options)
    return dict(options)


def relative(path: Path, folder: Path) -> str:
    """``path`` relative to ``folder`` in POSIX form, or the whole path when outside it."""
    try:
        return Path(path).relative_to(folder).as_posix()
    except ValueError:
        return str(path)


def layer_record(name: str, info, chw, position_to_channel, files, out_dir: Path,
                 note: str = "") -> dict:
    """One layer's entry: shape, its LayerInfo (when captured), channel order, files, and
    the grid's note (e.g. that 1x1 maps share one colour scale) when there is one."""
    record: dict[str, Any] = {"name": name, "shape": list(chw.shape)}
    if info is not None:
        fields = dataclasses.asdict(info)  # LayerInfo, every field but its name
        del fields["name"]
        fields["module"] = fields.pop("module_name")
        if fields["output_size"] is None:  # only adaptive pools have one
            del fields["output_size"]
        record.update(fields)
    record["channel_order"] = [int(c) for c in position_to_channel]
    record["files"] = [relative(path, out_dir) for path in files]
    if note:
        record["note"] = note
    return record


def predictions_record(result, top: int = 5) -> Optional[list[dict[str, Any]]]:
    """The top predictions of a capture, or None (a courtesy, never a reason to fail)."""
    if getattr(result, "logits", None) is None or not hasattr(result, "predictions"):
        return None
    try:
        return [{"label": p.label, "index": int(p.index), "probability": float(p.probability)}
                for p in result.predictions(top=top)]
    except Exception:  # noqa: BLE001 - predictions are optional in a sidecar
        return None


def input_record(result, model, npz_key: Optional[str]) -> dict[str, Any]:
    """The input the model saw: tensor shape, size, normalisation, its NPZ key."""
    input_tensor = getattr(result, "input", None)
    return {
        "shape": list(input_tensor.shape) if input_tensor is not None else None,
        "size": list(model.input_size) if model is not None else None,
        "mean": list(model.mean) if model is not None else None,
        "std": list(model.std) if model is not None else None,
        "npz_key": npz_key,
    }


def layers_sidecar(result, model, layer_records, options, annotate: bool,
                   filters_upscale: Optional[int], source_path, npz_path: Optional[Path],
                   out_dir: Path) -> dict:
    """The sidecar of a layer export; ``filters_upscale`` is None without filters."""
    sidecar = provenance(model, source_path, options, getattr(result, "model_name", None))
    sidecar["input"] = input_record(result, model, "input" if npz_path is not None else None)
    sidecar["grid"] = {
        "normalize": options.normalize,
        "colormap": options.colormap,
        "channel_order": options.order,
        "columns": options.columns,
        "clip_percentile": options.clip_percentile,
        "upscale": options.upscale,
        "annotated": bool(annotate),
        "filters": filters_upscale is not None,
        "filters_upscale": filters_upscale,
    }
    sidecar["npz"] = relative(npz_path, out_dir) if npz_path is not None else None
    sidecar["layers"] = layer_records
    sidecar["predictions"] = predictions_record(result)
    return sidecar

