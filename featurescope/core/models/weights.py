"""Weights files into networks: reading a state dict safely and fitting it to a model.

Every file is read with ``torch.load(weights_only=True)``; the full unpickler (which can
run code) is used only when the caller passes ``trust_pickle=True``. A state dict that
does not fit raises a WeightsError that says how (missing, unexpected, other shapes).
The torchvision special cases live here too: auxiliary classifiers and old DenseNet keys.
"""
from __future__ import annotations

import re
from pathlib import Path

from featurescope.core.errors import WeightsError

# the first bytes of files people pass as weights by mistake -> what to call them
_NOT_WEIGHTS = ((b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"GIF8", "a GIF image"),
                (b"BM", "a BMP image"), (b"RIFF", "a RIFF file (WebP, WAV or AVI)"),
                (b"\x93NUMPY", "a NumPy .npy array"), (b"%PDF", "a PDF document"))


def _not_torch(path: Path) -> str:
    """Why ``path`` is not something torch.save wrote (a few words, or "torchscript"), or
    "" when it may be: a zip holding a ``data.pkl`` or a raw pickle (protocol 2+ starts
    with 0x80)."""
    import zipfile

    with open(path, "rb") as handle:
        start = handle.read(8)
    if not start:
        return "it is empty"
    for magic, what in _NOT_WEIGHTS:
        if start.startswith(magic):
            return f"it is {what}"
    if start.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError):
            return "it is a damaged or truncated zip archive"
        if any(n.endswith("/constants.pkl") or "/code/" in n for n in names):
            return "torchscript"
        if not any(n.endswith("data.pkl") for n in names):
            return "it is a zip archive, but not one torch.save wrote"
        return ""
    return "" if start[:1] == b"\x80" else "it is neither a zip archive nor a pickle written by torch.save"


def read_weights(path: Path, trust_pickle: bool):
    """A state dict (or, with trust_pickle, whatever the pickle holds) from ``path``."""
    import warnings

    import torch

    if not path.exists():
        raise WeightsError(f"The weights file {path} does not exist.")
    if path.is_dir():
        raise WeightsError(f"{path} is a folder, not a weights file.")
    try:
        why = _not_torch(path)
    except OSError as error:
        raise WeightsError(f"{path.name} cannot be read ({(error.strerror or str(error)).lower()}).") from None
    if why == "torchscript":
        raise WeightsError(f"{path.name} is a TorchScript archive (torch.jit.save), not a state dict; "
                           "save the network's state_dict() with torch.save instead.")
    if why:
        raise WeightsError(f"{path.name} is not a PyTorch weights file ({why}).")
    try:
        with warnings.catch_warnings():  # torch's own warnings would come before our one sentence
            warnings.simplefilter("ignore")
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # the safe unpickler refuses, or the file is not torch's
        text = str(error)
        if "weights_only" not in text.lower() and "weights only" not in text.lower():
            detail = text.splitlines()[0].strip() if text else ""
            if not re.search(r"[A-Za-z]{3}", detail):  # torch sometimes says only a number
                detail = "it is neither a zip archive nor a pickle written by torch.save"
            raise WeightsError(f"{path.name} is not a PyTorch weights file ({detail}).") from None
        if not trust_pickle:
            raise WeightsError(
                f"{path.name} is a full pickle, not a plain state dict, and loading a pickle can "
                f"run any code it contains; if you trust where it came from, pass "
                f"trust_pickle=True (command line: --trust-pickle), or save "
                f"model.state_dict() instead.") from None
        import warnings

        warnings.warn(f"Loading {path.name} with the full unpickler (trust_pickle=True): it can "
                      f"run code.", stacklevel=3)
        try:
            loaded = torch.load(path, map_location="cpu", weights_only=False)  # trust_pickle: the user opted in
        except Exception as error2:
            raise WeightsError(f"{path.name} could not be unpickled "
                               f"({type(error2).__name__}: {error2}).") from None
    if isinstance(loaded, dict):
        for key in ("state_dict", "model_state_dict", "model"):
            inner = loaded.get(key)
            if isinstance(inner, dict) and inner and all(isinstance(k, str) for k in inner):
                loaded = inner
                break
    return loaded


def fit_state_dict(module, state, source: str, arch: str) -> None:
    """Load ``state`` strictly; a WeightsError with counts and examples when it does not fit."""
    import torch

    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{source} does not hold a state dict (a mapping of names to tensors) "
                           f"for {arch}.")
    if state and all(k.startswith("module.") for k in state):  # saved from DataParallel
        state = {k[len("module."):]: v for k, v in state.items()}
    expected = module.state_dict()
    # BatchNorm fills in a missing num_batches_tracked itself (old checkpoints lack it).
    missing = [k for k in expected if k not in state and not k.endswith(".num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    wrong = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        def few(keys):
            return ", ".join(keys[:3]) + (", ..." if len(keys) > 3 else "")
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys ({few(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys ({few(unexpected)})")
        if wrong:
            k = wrong[0]
            parts.append(f"{len(wrong)} keys with other shapes ({k}: file "
                         f"{tuple(state[k].shape)}, model {tuple(expected[k].shape)})")
        raise WeightsError(f"{source} does not fit {arch}: " + "; ".join(parts) + ".")
    module.load_state_dict(state)


def drop_aux(module, state) -> None:
    """GoogLeNet / Inception v3 carry auxiliary classifiers used only in training; drop them
    unless the state dict has weights for them (torchvision drops them after loading too)."""
    if type(module).__name__ not in ("GoogLeNet", "Inception3"):
        return
    for attr in ("aux1", "aux2", "AuxLogits"):
        if getattr(module, attr, None) is not None and not any(
                k.startswith(attr + ".") for k in (state or {})):
            setattr(module, attr, None)
            module.aux_logits = False


def densenet_keys(state: dict) -> dict:
    # Old DenseNet checkpoints (torchvision's own included) name 'norm.1' for 'norm1'.
    pattern = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\."
                         r"(?:weight|bias|running_mean|running_var|num_batches_tracked))$")
    return {(m.group(1) + m.group(2) if (m := pattern.match(k)) else k): v for k, v in state.items()}

