"""torchvision's detectors (COCO boxes) and segmenters (VOC class masks) as a model source.

These networks take the whole photo, not a centre crop: :class:`WholeImageTransform`
resizes it to the model's input size (aspect ratio not kept, as SSD does itself), so a
box or mask maps back onto the photo by one scale per axis. A detector's own transform
(GeneralizedRCNNTransform) would resize again to 800 px; :func:`fit_input_size` sets its
sizes to the input size, so the captured maps are those of the input the user sees
(padded to a multiple of 32 where the size is not one). Detectors normalise inside that
transform, so their input is [0, 1] (mean 0, std 1); segmenters take ImageNet-normalised
input. Default weights come from the torch hub cache like the classifiers' (same
``WEIGHTS_URLS`` seam); a failed download names the detector's file and says that its
backbone's ImageNet file is already inside it.
"""
from __future__ import annotations

import inspect
import os
import urllib.parse

from featurescope.core.errors import DownloadError
from featurescope.core.models.download import download
from featurescope.core.models.registry import CatalogueEntry, register_source
from featurescope.core.models.spec import IMAGENET_MEAN, IMAGENET_STD, ModelSpec, Preprocessing
from featurescope.core.progress import check, report

DETECTION = "detection"
SEGMENTATION = "segmentation"

# name -> (task, input side in pixels). Detectors: 512 where torchvision resizes to 800
# (a quarter of the work on a CPU), their own size for SSD (300), SSDlite and the 320
# Faster R-CNN; segmenters: torchvision's evaluation size, 520.
MODELS = {
    "fasterrcnn_mobilenet_v3_large_320_fpn": (DETECTION, 320),
    "fasterrcnn_mobilenet_v3_large_fpn": (DETECTION, 512),
    "fasterrcnn_resnet50_fpn": (DETECTION, 512),
    "retinanet_resnet50_fpn": (DETECTION, 512),
    "fcos_resnet50_fpn": (DETECTION, 512),
    "ssd300_vgg16": (DETECTION, 300),
    "ssdlite320_mobilenet_v3_large": (DETECTION, 320),
    "lraspp_mobilenet_v3_large": (SEGMENTATION, 520),
    "deeplabv3_mobilenet_v3_large": (SEGMENTATION, 520),
    "fcn_resnet50": (SEGMENTATION, 520),
    "deeplabv3_resnet50": (SEGMENTATION, 520),
}
FAMILIES = {DETECTION: "Detection (COCO)", SEGMENTATION: "Segmentation (VOC)"}


class WholeImageTransform:
    """The whole photo resized to ``size`` (H, W) (bilinear, antialiased), scaled to [0, 1]
    and normalised by ``mean``/``std``: no crop, so every pixel of the photo is seen."""

    def __init__(self, size: tuple[int, int], mean, std):
        self.size = (int(size[0]), int(size[1]))
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)

    def __call__(self, image):
        import torch
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms import functional as TF

        image = TF.resize(image, list(self.size), interpolation=InterpolationMode.BILINEAR,
                          antialias=True)
        tensor = TF.convert_image_dtype(TF.pil_to_tensor(image), torch.float32)
        return TF.normalize(tensor, self.mean, self.std)


def fit_input_size(module, size: tuple[int, int]) -> None:
    """Make a detector's own transform keep an input of ``size`` (H, W) as it is, instead
    of resizing it to 800 px (SSD: to 300): the maps then match the picture shown."""
    transform = getattr(module, "transform", None)
    if transform is None or not hasattr(transform, "min_size"):
        return  # segmenters have none
    height, width = int(size[0]), int(size[1])
    if getattr(transform, "fixed_size", None):
        transform.fixed_size = (width, height)  # torchvision's order: (width, height)
    transform.min_size = (min(height, width),)
    transform.max_size = max(height, width)


def backbone_weights(name: str):
    """The ImageNet weights torchvision would start ``name``'s backbone from (for the
    download sentence), or None."""
    import torchvision.models as tvm

    parameter = inspect.signature(tvm.get_model_builder(name)).parameters.get("weights_backbone")
    return None if parameter is None else parameter.default


def _file_name(url: str) -> str:
    return os.path.basename(urllib.parse.urlparse(url).path)


def weights_sentence(name: str, url: str, reason: str, target) -> str:
    """"fasterrcnn_resnet50_fpn needs fasterrcnn_resnet50_fpn_coco-258fb6c6.pth (its
    resnet50 backbone, resnet50-0676ba61.pth, is inside it, so that file is not needed
    as well); download failed: ...": what to fetch by hand, and where to put it."""
    backbone = backbone_weights(name)
    inside = ""
    if backbone is not None:
        inside = (f" (its backbone's ImageNet weights, {_file_name(backbone.url)}, are inside "
                  f"it, so that file is not needed as well)")
    return (f"{name} needs {_file_name(url)}{inside}; download failed: could not download {url} "
            f"({reason}); download it on a machine with internet access and place it at {target}.")


def build(name: str, state=None):
    """``name`` with random weights (seeded by the caller), or fitted to ``state``."""
    import torchvision.models as tvm

    from featurescope.core.models.weights import fit_state_dict

    has_aux = state is not None and any(k.startswith("aux_classifier.") for k in state)
    kwargs = {"aux_loss": True} if has_aux else {}
    module = tvm.get_model(name, weights=None, weights_backbone=None, **kwargs)
    if state is not None:
        fit_state_dict(module, state, f"The cached weights for {name}", name)
    if getattr(module, "aux_classifier", None) is not None:
        module.aux_classifier = None  # training only: not worth showing or keeping in memory
    return module


@register_source
class DetectionSource:
    """torchvision's detection and segmentation networks, by name."""

    name = "torchvision-detection"
    priority = 900  # before the torchvision classifiers, which claim every name
    listed = 1100  # but listed after them

    def claims(self, name: str) -> bool:
        return name in MODELS

    def spec(self, name: str) -> ModelSpec:
        from featurescope.core.models.sources.torchvision import (cache_path_for, default_weights,
                                                                  download_url_for)

        task, side = MODELS[name]
        known = default_weights(name)

        def create(mode: str, progress=None, cancel=None, trust_pickle: bool = False):
            from featurescope.core.models.weights import read_weights

            if mode != "default":
                report(progress, 0, 0, f"Building {name}")
                return build(name)
            url = download_url_for(name)
            path = cache_path_for(name)
            if not path.is_file():
                try:
                    download(url, path, progress, cancel)
                except DownloadError as error:
                    reason = str(error).partition(" (")[2].rpartition("); download it")[0]
                    raise DownloadError(weights_sentence(name, url, reason, path), url=url,
                                        cache_path=path) from None
            check(cancel)
            report(progress, 0, 0, f"Loading {name} weights")
            return build(name, read_weights(path, trust_pickle))

        if task == DETECTION:
            mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)  # the detector normalises inside
        else:
            mean, std = IMAGENET_MEAN, IMAGENET_STD
        preprocessing = Preprocessing((side, side), side, mean, std, 3, "bilinear")
        return ModelSpec(name=name, source=self.name, create=create, family=FAMILIES[task],
                         default_label=known.name, preprocessing=preprocessing,
                         categories=list(known.meta["categories"]), task=task,
                         transform_for=WholeImageTransform, fit_input=fit_input_size)

    def catalogue(self) -> list[CatalogueEntry]:
        from featurescope.core.models.sources.torchvision import cache_path_for, default_weights

        entries = []
        for model_name, (task, _side) in MODELS.items():
            status = "cached" if cache_path_for(model_name).is_file() else "downloadable"
            entries.append(CatalogueEntry(model_name, FAMILIES[task], status,
                                          str(default_weights(model_name))))
        return entries
