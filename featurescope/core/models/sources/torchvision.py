"""The torchvision models featurescope offers: their names in catalogue order, their
families, their default weights, and building one; the registry's fallback source.

Default weights are read from the torch hub cache (``cache_path_for(name)``) or
downloaded into it with progress and cancel (:mod:`featurescope.core.models.download`;
``WEIGHTS_URLS`` (model name -> URL) replaces torchvision's URL for a model, and with it
the cache file name: the tests download from a loopback server, and it can point at a
private mirror);
preprocessing is the weights enum's own ``transforms()``. The helpers here sit under the
catalogue, the download and the loader, so that each of them can ask "is this a model we
know, and what are its default weights?" without importing the others.
"""
from __future__ import annotations

import difflib
import os
import re
import urllib.parse
from functools import lru_cache
from pathlib import Path

from featurescope.core.errors import ModelError
from featurescope.core.models.download import download
from featurescope.core.models.registry import CatalogueEntry, register_source
from featurescope.core.models.sources import lite
from featurescope.core.models.spec import ModelSpec, Preprocessing
from featurescope.core.progress import check, report

# Name prefix -> family, in the order the catalogue lists them.
_FAMILIES = (
    ("alexnet", "AlexNet"), ("vgg", "VGG"), ("resnet", "ResNet"), ("resnext", "ResNeXt"),
    ("wide_resnet", "Wide ResNet"), ("googlenet", "GoogLeNet"), ("inception", "Inception v3"),
    ("densenet", "DenseNet"), ("squeezenet", "SqueezeNet"), ("mobilenet_v2", "MobileNet v2"),
    ("mobilenet_v3", "MobileNet v3"), ("mnasnet", "MNASNet"), ("shufflenet", "ShuffleNet v2"),
    ("efficientnet_v2", "EfficientNet v2"), ("efficientnet", "EfficientNet"),
    ("regnet", "RegNet"), ("convnext", "ConvNeXt"),
)
_FAMILY_ORDER = ["AlexNet", "VGG", "ResNet", "ResNeXt", "Wide ResNet", "GoogLeNet", "Inception v3",
                 "DenseNet", "SqueezeNet", "MobileNet v2", "MobileNet v3", "MNASNet",
                 "ShuffleNet v2", "EfficientNet", "EfficientNet v2", "RegNet", "ConvNeXt"]
_NOT_CNN = ("vit_", "swin_", "maxvit")  # transformers: no conv feature maps worth showing


# The one seam for downloads: model name -> URL of its default weights, replacing
# torchvision's. The cache file name is taken from this URL; a "-<hex>." part in it is
# checked against the file's SHA-256, as torch.hub does.
WEIGHTS_URLS: dict[str, str] = {}


def download_url_for(name: str) -> str:
    """The URL ``name``'s default weights are downloaded from (``WEIGHTS_URLS`` first)."""
    return WEIGHTS_URLS.get(name) or default_weights(name).url


def cache_path_for(name: str) -> Path:
    """Where ``name``'s default weights live: the torch hub cache file torchvision uses
    (``torch.hub.get_dir()/checkpoints/<file name from the URL>``)."""
    import torch.hub

    check_known(name)
    filename = os.path.basename(urllib.parse.urlparse(download_url_for(name)).path)
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def family(name: str) -> str:
    """The family a torchvision model name belongs to ("resnet50" -> "ResNet")."""
    for prefix, family_name in _FAMILIES:
        if name.startswith(prefix):
            return family_name
    return name.split("_")[0].capitalize()


_SIZE_WORDS = {"tiny": 0, "small": 1, "s": 1, "base": 2, "m": 2, "large": 3, "l": 3}


def _size_key(name: str):
    """Smallest first: resnet18 < resnet101, regnet_x_400mf < regnet_x_1_6gf, tiny < large."""
    flops = re.search(r"_(\d+)(?:_(\d+))?(mf|gf)$", name)
    if flops:
        value = float(f"{flops.group(1)}.{flops.group(2) or 0}") * (1 if flops.group(3) == "mf" else 1000)
        return [name[:flops.start()], value]
    words = [_SIZE_WORDS.get(part, part) for part in name.split("_")]
    return [[(0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"(\d+)", w)]
            if isinstance(w, str) else [(0, w, "")] for w in words]


@lru_cache(maxsize=1)
def torchvision_names() -> tuple[str, ...]:
    """torchvision's CNN classification models, by family and then smallest first."""
    import torchvision.models as tvm

    names = [n for n in tvm.list_models(module=tvm) if not n.startswith(_NOT_CNN)]
    order = {family_name: i for i, family_name in enumerate(_FAMILY_ORDER)}
    return tuple(sorted(names, key=lambda n: (order.get(family(n), len(order)), _size_key(n))))


def default_weights(name: str):
    """torchvision's weights enum member that ``weights="default"`` means for ``name``."""
    import torchvision.models as tvm

    return tvm.get_model_weights(name).DEFAULT


def imagenet_categories() -> list[str]:
    """The 1000 ImageNet class names, in the order of torchvision's (and timm's) outputs.

    Read from resources/imagenet_categories.txt (torchvision's list, tested equal to it):
    importing torchvision for them cost the embedded Lite0 ~1.5 s of the app's start-up."""
    from featurescope.core.resources import resource_path

    text = resource_path("imagenet_categories.txt").read_text(encoding="utf-8")
    return text.splitlines()


def check_known(name: str) -> None:
    """Raise a ModelError (with the closest known name) unless featurescope knows ``name``."""
    from featurescope.core.models.sources import detection  # (it imports this module)

    if name == lite.NAME or name in torchvision_names() or name in detection.MODELS:
        return
    if name.startswith(_NOT_CNN):
        raise ModelError(
            f"{name!r} is a vision transformer: it has no convolution and pooling feature maps "
            f"for featurescope to show; run `featurescope models` for the CNNs.")
    choices = [lite.NAME, *torchvision_names(), *detection.MODELS]
    close = difflib.get_close_matches(name, choices, n=1)
    hint = f"did you mean {close[0]}? " if close else ""
    raise ModelError(
        f"{name!r} is not a model featurescope knows; {hint}run `featurescope models` for the "
        f"list, or give your own network as path/to/file.py:factory, timm:NAME or "
        f"path/to/model.onnx."
    )


def build_torchvision(name: str, pretrained_default: bool, init: bool):
    """An unweighted torchvision ``name``, set up as its default weights expect."""
    import torchvision.models as tvm

    kwargs = {}
    if name in ("googlenet", "inception_v3"):
        kwargs["init_weights"] = init  # also silences torchvision's FutureWarning
        if pretrained_default:
            kwargs["transform_input"] = True  # as torchvision does for its own weights
    return tvm.get_model(name, weights=None, **kwargs)


@register_source
class TorchvisionSource:
    """torchvision's CNNs by name; asked last, so it also says which names nobody knows."""

    name = "torchvision"
    priority = 1000

    def claims(self, name: str) -> bool:
        return True

    def spec(self, name: str) -> ModelSpec:
        check_known(name)
        known = default_weights(name)
        transform = known.transforms()

        def create(mode: str, progress=None, cancel=None, trust_pickle: bool = False):
            from torch import nn

            from featurescope.core.models.weights import densenet_keys, drop_aux, fit_state_dict, read_weights

            if mode != "default":
                report(progress, 0, 0, f"Building {name}")
                return build_torchvision(name, pretrained_default=False, init=True)
            path = cache_path_for(name)
            if not path.is_file():
                download(download_url_for(name), path, progress, cancel)
            check(cancel)
            report(progress, 0, 0, f"Loading {name} weights")
            state = read_weights(path, trust_pickle)
            if isinstance(state, nn.Module):  # a trusted full pickle
                return state
            module = build_torchvision(name, pretrained_default=True, init=False)
            state = densenet_keys(state) if name.startswith("densenet") else state
            drop_aux(module, state)
            fit_state_dict(module, state, f"The cached weights {path}", name)
            return module

        def fix_state(state):
            from featurescope.core.models.weights import densenet_keys

            return densenet_keys(state) if name.startswith("densenet") else state

        crop = transform.crop_size[0]
        preprocessing = Preprocessing((crop, crop), transform.resize_size[0], tuple(transform.mean),
                                      tuple(transform.std), 3, transform.interpolation.value)
        return ModelSpec(name=name, source=self.name, create=create, family=family(name),
                         default_label=known.name, preprocessing=preprocessing, transform=transform,
                         categories=list(known.meta["categories"]), fix_state=fix_state)

    def catalogue(self) -> list[CatalogueEntry]:
        entries = []
        for model_name in torchvision_names():
            status = "cached" if cache_path_for(model_name).is_file() else "downloadable"
            entries.append(CatalogueEntry(model_name, family(model_name), status,
                                          str(default_weights(model_name))))
        return entries

