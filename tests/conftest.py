"""Shared test set-up: offscreen Qt, deterministic and single-threaded torch."""
from __future__ import annotations

import os

# Before anything imports Qt: no display is needed (CI has none).
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest


@pytest.fixture(autouse=True)
def _deterministic_torch():
    import torch

    torch.manual_seed(0)
    torch.set_num_threads(1)
    yield
