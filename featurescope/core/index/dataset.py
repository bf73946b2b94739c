"""Decoding for an index: a torch Dataset whose items never raise.

A file that cannot be read becomes an item flagged ``ok = False`` with the one-sentence
reason from :func:`load_image`, so a broken file costs one skipped row, never the run.
Decoding and preprocessing run in the DataLoader's worker processes.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
from torch.utils.data import DataLoader, Dataset

from featurescope.core.errors import ImageError
from featurescope.core.index.geometry import Preprocessing, PreprocessTransform
from featurescope.core.io.images import load_image


def decode(root: Path, path: str, transform: PreprocessTransform, shape) -> tuple:
    """(tensor (C, H, W), ok, reason, original height, original width) for one file;
    ``shape`` (C, H, W) is the size of the zeros that stand in for a broken file."""
    try:
        image = load_image(root / path)
        tensor = transform(image)
        return tensor, True, "", image.height, image.width
    except ImageError as error:
        return torch.zeros(*shape), False, str(error), 0, 0
    except Exception as error:  # a decoder bug must not stop the run either
        reason = f"{Path(path).name} could not be read ({type(error).__name__}: {error})."
        return torch.zeros(*shape), False, reason, 0, 0


class FolderImages(Dataset):
    """The files ``items`` ([(id, relative path)]) under ``root``, preprocessed."""

    def __init__(self, root, items: list[tuple[int, str]], preprocessing: Preprocessing):
        self.root = Path(root)
        self.items = list(items)
        self.transform = PreprocessTransform(preprocessing)
        self.shape = (preprocessing.channels, *preprocessing.crop)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        file_id, path = self.items[index]
        tensor, ok, reason, height, width = decode(self.root, path, self.transform, self.shape)
        return tensor, file_id, ok, reason, height, width


def folder_loader(root, items, preprocessing: Preprocessing, batch_size: int,
                  workers: int, multiprocessing_context: Optional[str] = None) -> DataLoader:
    """Batches of (images, ids, ok, reasons, heights, widths) in file order."""
    return DataLoader(FolderImages(root, items, preprocessing), batch_size=batch_size,
                      shuffle=False, num_workers=workers, persistent_workers=False,
                      prefetch_factor=2 if workers > 0 else None,
                      multiprocessing_context=multiprocessing_context if workers > 0 else None)
