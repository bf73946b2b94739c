"""Which torch device to run on: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``."""
from __future__ import annotations

import torch

from featurescope.core.errors import DeviceError


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def available_devices() -> list[str]:
    """The devices that exist here, CPU first: e.g. ``["cpu"]`` or ``["cpu", "cuda:0"]``."""
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if _mps_available():
        devices.append("mps")
    return devices


def resolve_device(spec: str = "auto") -> torch.device:
    """Turn a device name into a ``torch.device`` that exists on this machine.

    ``"auto"`` picks CUDA if present, then MPS, else the CPU. ``"cuda"`` means the
    current CUDA device. Raises :class:`DeviceError` (one sentence listing the devices
    that do exist) for an unknown name or a device this machine does not have.
    """
    if isinstance(spec, torch.device):
        spec = str(spec)
    text = (spec or "auto").strip().lower()
    available = available_devices()
    listing = ", ".join(available)
    if text == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise DeviceError(
            f"{spec!r} is not a device name; use auto, cpu, cuda, cuda:N or mps "
            f"(available here: {listing})."
        ) from None
    if device.type == "cpu":
        return torch.device("cpu")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"{text} is not available on this machine; available devices: {listing}.")
        index = torch.cuda.current_device() if device.index is None else device.index
        if index >= torch.cuda.device_count():
            raise DeviceError(f"{text} is not available on this machine; available devices: {listing}.")
        return torch.device("cuda", index)
    if device.type == "mps":
        if not _mps_available():
            raise DeviceError(f"mps is not available on this machine; available devices: {listing}.")
        return torch.device("mps")
    raise DeviceError(
        f"{spec!r} is not a device featurescope can use; use auto, cpu, cuda, cuda:N or mps "
        f"(available here: {listing})."
    )
