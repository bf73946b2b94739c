"""The preprocessing written with Pillow and torch equals torchvision's functional
transforms on PIL images, and the bundled class names are torchvision's: the embedded
model starts without importing torchvision."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from featurescope.core.models.load import ImageTransform


def _torchvision(image, resize, crop, mean, std, interpolation):
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as TF

    image = TF.resize(image, resize, interpolation=InterpolationMode(interpolation), antialias=True)
    image = TF.center_crop(image, list(crop))
    tensor = TF.convert_image_dtype(TF.pil_to_tensor(image), torch.float32)
    return TF.normalize(tensor, mean, std)


@pytest.mark.parametrize("size,resize,crop,mode,interpolation", [
    ((451, 300), 256, (224, 224), "RGB", "bilinear"),
    ((300, 451), 256, (224, 224), "RGB", "bicubic"),
    ((640, 427), 73, (64, 48), "RGB", "bilinear"),  # a non-square crop, odd offsets
    ((40, 30), 32, (48, 40), "RGB", "bilinear"),  # a crop larger than the image: padded
    ((256, 256), 256, (224, 224), "L", "nearest"),  # no resize needed, one channel
    ((100, 70), 80, (64, 64), "RGBA", "bicubic"),
])
def test_equals_torchvisions_transforms(size, resize, crop, mode, interpolation):
    rng = np.random.default_rng(sum(size))
    channels = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
    pixels = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    image = Image.fromarray(pixels[..., 0] if channels == 1 else pixels, mode)
    mean, std = (0.485, 0.456, 0.406, 0.5)[:channels], (0.229, 0.224, 0.225, 0.25)[:channels]
    ours = ImageTransform(crop, resize, mean, std, interpolation, channels)(image)
    theirs = _torchvision(image, resize, crop, mean, std, interpolation)
    assert ours.shape == theirs.shape == (channels, *crop)
    assert torch.equal(ours, theirs)


def test_the_bundled_class_names_are_torchvisions():
    from torchvision.models._meta import _IMAGENET_CATEGORIES

    from featurescope.core.models.sources.torchvision import imagenet_categories

    assert imagenet_categories() == list(_IMAGENET_CATEGORIES)


def test_the_embedded_model_loads_and_predicts_without_torchvision():
    import subprocess
    import sys

    code = ("import sys, featurescope as fs; from featurescope.core.resources import default_sample; "
            "m = fs.load_model('efficientnet_lite0', device='cpu'); "
            "r = fs.capture(m, fs.load_image(default_sample())); print(r.predictions(1)[0].label); "
            "print('torchvision' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    label, imported = done.stdout.split("\n")[:2]
    assert "cat" in label and imported == "False"
