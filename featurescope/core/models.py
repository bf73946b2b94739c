"""Model catalogue, weights resolution (embedded / cache / download / file) and loading.

``load_model`` gives a :class:`LoadedModel`: the network in eval mode on its device, with
the preprocessing it expects, its class names and the layers the app can show.

Weights, one argument everywhere:

- ``"default"``: pretrained ImageNet weights. Embedded for ``efficientnet_lite0``; for
  torchvision models read from the torch hub cache (``cache_path_for(name)``) or
  downloaded into it with progress and cancel. ``WEIGHTS_URLS`` (name -> URL) replaces
  torchvision's URL for a model, and with it the cache file name; the tests use it to
  download from a loopback server, and it can point at a private mirror.
- ``"none"``: random initialisation, seeded (the same every time), "untrained".
- a path: a state dict for that architecture, read with ``torch.load(weights_only=True)``;
  a fully pickled module only with ``trust_pickle=True``.

Every state-dict file is read with ``weights_only=True``; the full unpickler (which can run
code) is used only when the caller passes ``trust_pickle=True``.
"""
from __future__ import annotations

import difflib
import hashlib
import os
import re
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Optional, Sequence, Union

from featurescope.core import lite
from featurescope.core.errors import DownloadError, ModelError, WeightsError
from featurescope.core.progress import CancelToken, Cancelled, ProgressCallback, check, report

# The one seam for downloads: model name -> URL of its default weights, replacing
# torchvision's. The cache file name is taken from this URL; a "-<hex>." part in it is
# checked against the file's SHA-256, as torch.hub does.
WEIGHTS_URLS: dict[str, str] = {}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_CHUNK = 1 << 16

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


@dataclass(frozen=True)
class CatalogueEntry:
    name: str  # "resnet50", "efficientnet_lite0"
    family: str  # "ResNet", "VGG", "EfficientNet-Lite", ...
    weights_status: str  # "embedded" | "cached" | "downloadable"
    weights_name: str  # "ResNet50_Weights.IMAGENET1K_V2", "embedded ImageNet"


def _family(name: str) -> str:
    for prefix, family in _FAMILIES:
        if name.startswith(prefix):
            return family
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
def _torchvision_names() -> tuple[str, ...]:
    import torchvision.models as tvm

    names = [n for n in tvm.list_models(module=tvm) if not n.startswith(_NOT_CNN)]
    order = {family: i for i, family in enumerate(_FAMILY_ORDER)}
    return tuple(sorted(names, key=lambda n: (order.get(_family(n), len(order)), _size_key(n))))


def _default_weights(name: str):
    import torchvision.models as tvm

    return tvm.get_model_weights(name).DEFAULT


def catalogue() -> list[CatalogueEntry]:
    """All convolutional classification models: efficientnet_lite0 first, then torchvision's
    CNN families (no ViT/Swin/MaxViT), each with whether its pretrained weights are
    embedded, already in the torch hub cache, or would be downloaded."""
    entries = [CatalogueEntry(lite.NAME, lite.FAMILY, "embedded", lite.WEIGHTS_LABEL)]
    for name in _torchvision_names():
        weights = _default_weights(name)
        status = "cached" if cache_path_for(name).is_file() else "downloadable"
        entries.append(CatalogueEntry(name, _family(name), status, str(weights)))
    return entries


def cache_path_for(name: str) -> Path:
    """Where ``name``'s default weights live: the torch hub cache file torchvision uses
    (``torch.hub.get_dir()/checkpoints/<file name from the URL>``); for
    efficientnet_lite0 the file embedded in its package."""
    if name == lite.NAME:
        return lite.weights_file()
    import torch.hub

    _check_known(name)
    filename = os.path.basename(urllib.parse.urlparse(download_url_for(name)).path)
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def _check_known(name: str) -> None:
    if name == lite.NAME or name in _torchvision_names():
        return
    choices = [lite.NAME, *_torchvision_names()]
    close = difflib.get_close_matches(name, choices, n=1)
    hint = f"did you mean {close[0]}? " if close else ""
    raise ModelError(
        f"{name!r} is not a model featurescope knows; {hint}run `featurescope models` for the "
        f"list, or give your own network as path/to/file.py:factory."
    )


# --------------------------------------------------------------------------- download

def download_url_for(name: str) -> str:
    """The URL ``name``'s default weights are downloaded from (``WEIGHTS_URLS`` first)."""
    return WEIGHTS_URLS.get(name) or _default_weights(name).url


def _download(url: str, target: Path, progress, cancel) -> None:
    """Stream ``url`` into ``target`` (temp file, then rename), checking the hash prefix in
    the file name as torch.hub does. Raises DownloadError, or Cancelled."""
    def fail(reason: str) -> DownloadError:
        return DownloadError(
            f"Could not download {url} ({reason}); download it on a machine with internet "
            f"access and place it at {target}.", url=url, cache_path=target)

    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise fail(f"cannot create the cache folder: {error.strerror or error}") from None
    tmp_name = None
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            total = int(response.headers.get("Content-Length") or 0)
            digest = hashlib.sha256()
            done = 0
            with tempfile.NamedTemporaryFile(dir=target.parent, prefix=target.name + ".",
                                             suffix=".partial", delete=False) as tmp:
                tmp_name = tmp.name
                report(progress, 0, total, f"Downloading {target.name}")
                while True:
                    check(cancel)
                    chunk = response.read(_CHUNK)
                    if not chunk:
                        break
                    tmp.write(chunk)
                    digest.update(chunk)
                    done += len(chunk)
                    report(progress, done, total, f"Downloading {target.name}")
        if total and done != total:
            raise fail(f"the connection closed after {done} of {total} bytes")
        expected = re.search(r"-([a-f0-9]+)\.", target.name)
        if expected and not digest.hexdigest().startswith(expected.group(1)):
            raise fail("the file's SHA-256 does not match the one in its name, so it is corrupt")
        os.replace(tmp_name, target)
        tmp_name = None
    except urllib.error.HTTPError as error:
        raise fail(f"HTTP {error.code} {error.reason}") from None
    except urllib.error.URLError as error:
        raise fail(str(getattr(error.reason, "strerror", None) or error.reason)) from None
    except (OSError, ValueError) as error:
        raise fail(str(getattr(error, "strerror", None) or error)) from None
    finally:
        if tmp_name is not None:
            Path(tmp_name).unlink(missing_ok=True)


# --------------------------------------------------------------------------- weights files

def _read_weights(path: Path, trust_pickle: bool):
    """A state dict (or, with trust_pickle, whatever the pickle holds) from ``path``."""
    import torch

    if not path.exists():
        raise WeightsError(f"The weights file {path} does not exist.")
    if path.is_dir():
        raise WeightsError(f"{path} is a folder, not a weights file.")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # the safe unpickler refuses, or the file is not torch's
        text = str(error)
        if "weights_only" not in text.lower() and "weights only" not in text.lower():
            raise WeightsError(f"{path.name} is not a PyTorch weights file "
                               f"({text.splitlines()[0] if text else type(error).__name__}).") from None
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
            loaded = torch.load(path, map_location="cpu", weights_only=False)
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


def _fit_state_dict(module, state, source: str, arch: str) -> None:
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


# --------------------------------------------------------------------------- building

def _drop_aux(module, state) -> None:
    """GoogLeNet / Inception v3 carry auxiliary classifiers used only in training; drop them
    unless the state dict has weights for them (torchvision drops them after loading too)."""
    if type(module).__name__ not in ("GoogLeNet", "Inception3"):
        return
    for attr in ("aux1", "aux2", "AuxLogits"):
        if getattr(module, attr, None) is not None and not any(
                k.startswith(attr + ".") for k in (state or {})):
            setattr(module, attr, None)
            module.aux_logits = False


def _densenet_keys(state: dict) -> dict:
    # Old DenseNet checkpoints (torchvision's own included) name 'norm.1' for 'norm1'.
    pattern = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\."
                         r"(?:weight|bias|running_mean|running_var|num_batches_tracked))$")
    return {(m.group(1) + m.group(2) if (m := pattern.match(k)) else k): v for k, v in state.items()}


def _build_torchvision(name: str, pretrained_default: bool, init: bool):
    import torchvision.models as tvm

    kwargs = {}
    if name in ("googlenet", "inception_v3"):
        kwargs["init_weights"] = init  # also silences torchvision's FutureWarning
        if pretrained_default:
            kwargs["transform_input"] = True  # as torchvision does for its own weights
    return tvm.get_model(name, weights=None, **kwargs)


def _import_factory(spec: str):
    """``path/to/file.py:factory`` -> (callable, the imported module, display name)."""
    import importlib.util
    import sys

    file_part, _, attr = spec.rpartition(":")
    path = Path(file_part).expanduser()
    if not attr or not file_part:
        raise ModelError(f"{spec!r} is not path/to/file.py:factory (the factory name is missing).")
    if not path.is_file():
        raise ModelError(f"The model file {path} does not exist.")
    module_name = path.stem if path.stem.isidentifier() else "featurescope_user_model"
    spec_obj = importlib.util.spec_from_file_location(module_name, path)
    if spec_obj is None or spec_obj.loader is None:
        raise ModelError(f"{path.name} cannot be imported as a Python file.")
    py_module = importlib.util.module_from_spec(spec_obj)
    sys.modules[module_name] = py_module  # so pickles that name this module can find it
    try:
        spec_obj.loader.exec_module(py_module)
    except Exception as error:
        sys.modules.pop(module_name, None)
        raise ModelError(f"Importing {path.name} failed: {type(error).__name__}: {error}.") from None
    factory = getattr(py_module, attr, None)
    if not callable(factory):
        raise ModelError(f"{path.name} has no function or class called {attr!r}.")
    return factory, py_module, f"{path.name}:{attr}"


def _call_factory(factory, label: str):
    from torch import nn

    try:
        module = factory()
    except Exception as error:
        raise ModelError(f"Calling {label} failed: {type(error).__name__}: {error}.") from None
    if not isinstance(module, nn.Module):
        raise ModelError(f"{label} returned a {type(module).__name__}, not a torch nn.Module.")
    return module


def _size_pair(size) -> tuple[int, int]:
    if isinstance(size, int):
        return (size, size)
    h, w = size
    return (int(h), int(w))


class ImageTransform:
    """Resize the shorter side, centre-crop, scale to [0, 1] and normalise; the same steps
    as torchvision's ``ImageClassification``, for any crop size (non-square too)."""

    def __init__(self, crop: tuple[int, int], resize: int, mean, std, interpolation=None):
        from torchvision.transforms import InterpolationMode

        self.crop = crop
        self.resize = resize
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.interpolation = interpolation or InterpolationMode.BILINEAR

    def __call__(self, image):
        import torch
        from torchvision.transforms import functional as TF

        image = TF.resize(image, self.resize, interpolation=self.interpolation, antialias=True)
        image = TF.center_crop(image, list(self.crop))
        tensor = TF.convert_image_dtype(TF.pil_to_tensor(image), torch.float32)
        return TF.normalize(tensor, self.mean, self.std)


class LoadedModel:
    """A network ready to look at: ``.module`` (eval mode, on ``.device``), ``.name``,
    ``.weights`` (what was asked), ``.weights_label`` ("IMAGENET1K_V1", "untrained",
    "mynet.pth"), ``.trained``, ``.display_name`` ("vgg16 (untrained)"), ``.device``,
    ``.categories`` (list[str] or None), ``.input_size`` (H, W), ``.mean``/``.std``
    (3-tuples), ``.preprocess(pil)``, ``.deprocess(tensor)``, ``.layer_info``, ``.layers``."""

    def __init__(self, module, name, weights, weights_label, trained, device, categories,
                 transform, input_size, mean, std):
        self.module = module
        self.name = name
        self.weights = weights
        self.weights_label = weights_label
        self.trained = trained
        self.device = device
        self.categories = categories
        self.input_size = input_size
        self.mean = tuple(mean)
        self.std = tuple(std)
        self._transform = transform

    @property
    def display_name(self) -> str:
        return f"{self.name} ({self.weights_label})"

    def __repr__(self) -> str:
        return f"<LoadedModel {self.display_name} on {self.device}>"

    def preprocess(self, image):
        """The (1, 3, H, W) float32 CPU tensor this model is fed for a PIL image."""
        return self._transform(image.convert("RGB")).unsqueeze(0).float()

    def deprocess(self, tensor):
        """Undo the normalisation: a (1, 3, H, W) or (3, H, W) tensor as an (H, W, 3) uint8
        array, the picture the model actually sees."""
        import numpy as np
        import torch

        x = torch.as_tensor(tensor).detach().float().cpu()
        if x.dim() == 4:
            x = x[0]
        mean = torch.tensor(self.mean).view(3, 1, 1)
        std = torch.tensor(self.std).view(3, 1, 1)
        x = (x * std + mean).clamp(0, 1)
        return np.ascontiguousarray((x * 255).round().to(torch.uint8).permute(1, 2, 0).numpy())

    @cached_property
    def layer_info(self):
        from featurescope.core.capture import describe_layers

        return describe_layers(self.module, (1, 3, *self.input_size))

    @property
    def layers(self) -> list[str]:
        return [info.name for info in self.layer_info]


def load_model(name_or_path: str, weights: Union[str, os.PathLike] = "default",
               device: str = "auto", progress: Optional[ProgressCallback] = None,
               cancel: Optional[CancelToken] = None, *,
               input_size: Union[int, Sequence[int], None] = None,
               mean: Optional[Sequence[float]] = None, std: Optional[Sequence[float]] = None,
               trust_pickle: bool = False) -> LoadedModel:
    """Load a network with its weights, ready for :func:`featurescope.core.capture.capture`.

    ``name_or_path``: a catalogue name (``featurescope models``) or ``"path/to/file.py:factory"``
    (a function or class in that file returning an ``nn.Module``). ``weights``: ``"default"``,
    ``"none"`` or a path to a state dict (a full pickled module only with
    ``trust_pickle=True``). ``input_size`` (int or (H, W)), ``mean`` and ``std`` override the
    preprocessing (custom models default to 224 and ImageNet statistics). ``progress`` /
    ``cancel`` cover the download of default weights.

    Raises ModelError, WeightsError, DownloadError, DeviceError, or Cancelled.
    """
    import torch

    from featurescope.core.devices import resolve_device

    target_device = resolve_device(device)
    asked = weights
    weights_text = str(weights)
    mode = weights_text.lower() if weights_text.lower() in ("default", "none") else "path"
    check(cancel)

    name = str(name_or_path)
    custom = name.endswith(".py") or name.rpartition(":")[0].endswith(".py")
    categories = None
    transform_params = None  # (crop, resize, mean, std, interpolation) when not torchvision's
    tv_transform = None
    state_fixer = None

    # Random initialisation never touches the caller's random state; "none" is seeded.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        if custom:
            if str(name_or_path).endswith(".py"):
                raise ModelError(f"{name} names a file but not its factory; write "
                                 f"{name}:factory_name.")
            factory, py_module, label = _import_factory(name)
            report(progress, 0, 0, f"Building {label}")
            module = _call_factory(factory, label)
            if mode == "none":
                for sub in module.modules():
                    if hasattr(sub, "reset_parameters"):
                        sub.reset_parameters()
            categories = getattr(module, "categories", None) or getattr(py_module, "categories", None)
            transform_params = ((224, 224), 256, IMAGENET_MEAN, IMAGENET_STD, None)
            arch = label
            default_label, default_trained = "factory weights", True
        elif name == lite.NAME:
            report(progress, 0, 0, f"Building {name}")
            module = lite.EfficientNetLite0()
            from torchvision.transforms import InterpolationMode

            transform_params = ((lite.INPUT_SIZE,) * 2, lite.RESIZE_SIZE, lite.MEAN, lite.STD,
                                InterpolationMode.BICUBIC)
            categories = list(_default_weights("resnet50").meta["categories"])
            state_fixer = lite.convert_state_dict
            arch = name
            if mode == "default":
                state = _read_weights(lite.weights_file(), False)
                _fit_state_dict(module, state_fixer(state), "the embedded Lite0 weights", arch)
            default_label, default_trained = lite.WEIGHTS_LABEL, True
        else:
            _check_known(name)
            default_weights = _default_weights(name)
            categories = list(default_weights.meta["categories"])
            tv_transform = default_weights.transforms()
            arch = name
            if mode == "default":
                path = cache_path_for(name)
                if not path.is_file():
                    _download(download_url_for(name), path, progress, cancel)
                check(cancel)
                report(progress, 0, 0, f"Loading {name} weights")
                state = _read_weights(path, trust_pickle)
                if isinstance(state, torch.nn.Module):  # a trusted full pickle
                    module = state
                else:
                    module = _build_torchvision(name, pretrained_default=True, init=False)
                    state = _densenet_keys(state) if name.startswith("densenet") else state
                    _drop_aux(module, state)
                    _fit_state_dict(module, state, f"The cached weights {path}", arch)
            else:
                report(progress, 0, 0, f"Building {name}")
                module = _build_torchvision(name, pretrained_default=False, init=True)
                if name.startswith("densenet"):
                    state_fixer = _densenet_keys
            default_label, default_trained = default_weights.name, True

    check(cancel)
    if mode == "default":
        weights_label, trained = default_label, default_trained
    elif mode == "none":
        weights_label, trained = "untrained", False
    else:
        path = Path(weights_text).expanduser()
        report(progress, 0, 0, f"Loading {path.name}")
        loaded = _read_weights(path, trust_pickle)
        if isinstance(loaded, torch.nn.Module):  # a trusted full pickle: use it as is
            module = loaded
        else:
            if state_fixer is not None and isinstance(loaded, dict):
                loaded = state_fixer(loaded)
            if isinstance(loaded, dict):
                _drop_aux(module, loaded)
            _fit_state_dict(module, loaded, path.name, arch)
        weights_label, trained = path.name, True

    # Preprocessing: torchvision's own transforms unless something was overridden.
    if tv_transform is not None and input_size is None and mean is None and std is None:
        transform = tv_transform
        crop = _size_pair(tv_transform.crop_size[0])
        final_mean, final_std = tuple(tv_transform.mean), tuple(tv_transform.std)
    else:
        if tv_transform is not None:
            c = tv_transform.crop_size[0]
            base = ((c, c), tv_transform.resize_size[0], tv_transform.mean, tv_transform.std,
                    tv_transform.interpolation)
        else:
            base = transform_params
        crop = _size_pair(input_size) if input_size is not None else base[0]
        ratio = base[1] / max(base[0])
        resize = int(round(max(crop) * ratio))
        final_mean = tuple(mean) if mean is not None else tuple(base[2])
        final_std = tuple(std) if std is not None else tuple(base[3])
        for label, values in (("mean", final_mean), ("std", final_std)):
            if len(values) != 3:
                raise ModelError(f"{label} must have 3 values (one per RGB channel), not {len(values)}.")
        if any(s == 0 for s in final_std):
            raise ModelError("std must not contain 0 (the input would be divided by zero).")
        transform = ImageTransform(crop, resize, final_mean, final_std, base[4])

    _drop_aux(module, None)  # unused in eval; not worth showing or keeping in memory
    module = module.to(target_device).eval()
    report(progress, 1, 1, f"Loaded {name}")
    return LoadedModel(module, name, asked, weights_label, trained, target_device, categories,
                       transform, crop, final_mean, final_std)
