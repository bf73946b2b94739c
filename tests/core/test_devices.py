"""Device names resolve to devices that exist, or to one clear sentence."""
from __future__ import annotations

import pytest
import torch

from featurescope.core.models import devices
from featurescope.core.models.devices import available_devices, resolve_device
from featurescope.core.errors import DeviceError, FeaturescopeError


@pytest.fixture
def cpu_only(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(devices, "_mps_available", lambda: False)


@pytest.fixture
def two_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(devices, "_mps_available", lambda: False)


def test_cpu_always_resolves():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")
    assert available_devices()[0] == "cpu"


def test_auto_is_cpu_without_accelerators(cpu_only):
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device() == torch.device("cpu")
    assert available_devices() == ["cpu"]


def test_missing_cuda_is_one_sentence_listing_what_exists(cpu_only):
    with pytest.raises(DeviceError) as info:
        resolve_device("cuda")
    assert str(info.value) == "cuda is not available on this machine; available devices: cpu."
    assert isinstance(info.value, FeaturescopeError)
    with pytest.raises(DeviceError, match="cuda:1 is not available"):
        resolve_device("cuda:1")
    with pytest.raises(DeviceError, match="mps is not available on this machine"):
        resolve_device("mps")


def test_gpus_listed_and_picked_by_auto(two_gpus):
    assert available_devices() == ["cpu", "cuda:0", "cuda:1"]
    assert resolve_device("auto") == torch.device("cuda", 0)
    assert resolve_device("cuda") == torch.device("cuda", 0)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(DeviceError, match=r"cuda:3 is not available on this machine; available devices: cpu, cuda:0, cuda:1\."):
        resolve_device("cuda:3")


@pytest.mark.parametrize("spec", ["gpu", "cuda:x", "banana", "meta"])
def test_unknown_names_are_explained(spec):
    with pytest.raises(DeviceError, match="use auto, cpu, cuda, cuda:N or mps"):
        resolve_device(spec)
