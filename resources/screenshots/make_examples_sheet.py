"""Make resources/screenshots/examples.png: the bundled samples plus generated pictures
(stripes at several angles and periods, rings, colour blobs), indexed with the embedded
EfficientNet-Lite0, and one channel's contact sheet.

    python resources/screenshots/make_examples_sheet.py [LAYER CHANNEL]
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
SAMPLES = HERE.parent / "samples"


def generated(folder: Path) -> None:
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:256, 0:320].astype(float)
    for i, angle in enumerate(np.linspace(0, np.pi, 8, endpoint=False)):
        for period in (6, 14, 30):
            wave = np.sin((x * np.cos(angle) + y * np.sin(angle)) * 2 * np.pi / period) > 0
            colour = rng.integers(60, 255, 3)
            picture = np.where(wave[..., None], colour, 255 - colour).astype(np.uint8)
            Image.fromarray(picture).save(folder / f"stripes_{i}_{period}.png")
    for i in range(6):
        cy, cx = rng.integers(60, 200, 2)
        r = np.hypot(y - cy, x - cx)
        picture = (np.stack([np.sin(r / (4 + i)), np.cos(r / (5 + i)), np.sin(r / 9)], 2) * 127 + 128)
        Image.fromarray(picture.astype(np.uint8)).save(folder / f"rings_{i}.png")
    for i in range(6):
        picture = np.full((256, 320, 3), 30, np.uint8)
        for _ in range(12):
            cy, cx, rad = rng.integers(0, 256), rng.integers(0, 320), rng.integers(8, 40)
            picture[np.hypot(y - cy, x - cx) < rad] = rng.integers(0, 256, 3)
        Image.fromarray(picture).save(folder / f"blobs_{i}.png")


def main(argv) -> int:
    layer, channel = (argv[0], argv[1]) if len(argv) >= 2 else ("blocks.6.project", "8")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp, "images")
        folder.mkdir()
        for sample in SAMPLES.glob("*.*"):
            if sample.suffix.lower() in (".png", ".jpg"):
                shutil.copy(sample, folder / sample.name)
        generated(folder)
        index = Path(tmp, "examples.fsindex")
        run = [sys.executable, "-m", "featurescope"]
        subprocess.run(run + ["index", str(folder), "-o", str(index), "--workers", "1"], check=True)
        subprocess.run(run + ["examples", str(index), "--layer", layer, "--channel", channel,
                              "-o", str(HERE / "examples.png"), "--force"], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
