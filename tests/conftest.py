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


def _concepts(root, per_kind: int = 3):
    """An ImageFolder of three concepts: stripes, rings and blobs (96 px, varied)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:96, 0:96]
    for kind in ("blobs", "rings", "stripes"):
        (root / kind).mkdir(parents=True, exist_ok=True)
        for i in range(per_kind):
            if kind == "stripes":
                a = np.sin(x / (2.0 + i) + i) > 0
            elif kind == "rings":
                a = np.sin(np.hypot(x - 48, y - 48) / (2.0 + i)) > 0
            else:
                a = np.zeros((96, 96))
                for _ in range(4 + i):
                    cy, cx = rng.integers(10, 86, 2)
                    a = a + np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / 60.0)
                a = a > 0.5
            grey = (a * 255).astype(np.uint8)
            Image.fromarray(np.stack([grey, grey // 2, 255 - grey], -1)).save(root / kind / f"{i}.png")
    return root


@pytest.fixture(scope="session")
def concept_folder():
    """``concept_folder(root, per_kind=3)`` writes an ImageFolder of three concepts
    (blobs, rings, stripes) under ``root`` and returns it: labels need sub-folders."""
    return _concepts
