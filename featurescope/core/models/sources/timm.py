"""timm models: ``timm:NAME`` (``timm:resnet18``, ``timm:convnext_tiny.fb_in1k``).

Optional (``pip install 'featurescope[timm]'``): timm is imported only when a ``timm:``
name is loaded. Any timm model with 2-D convolution or pooling layers can be shown (the
loader refuses the rest in one sentence). Preprocessing is timm's own data config
(``resolve_model_data_config``: size, bicubic or bilinear, mean, std, and the resize
``floor(size / crop_pct)`` before the centre crop, as ``timm.data.create_transform``).

Default weights come from the Hugging Face cache (huggingface_hub's layout:
``<cache>/models--timm--resnet18.a1_in1k/snapshots/<revision>/model.safetensors``) or
are downloaded into it, with progress and cancel; offline, the sentence names the
repository and the cache folder. ``none`` and a state-dict file work as for torchvision.
"""
from __future__ import annotations

import difflib
import math
from pathlib import Path

from featurescope.core.errors import DownloadError, ModelError
from featurescope.core.models.registry import register_source
from featurescope.core.models.spec import ModelSpec, Preprocessing
from featurescope.core.progress import Cancelled, check, report

PREFIX = "timm:"
# What timm's own hub loader looks for, in its order of preference.
HUB_FILES = ("model.safetensors", "pytorch_model.bin")
# The Hub to download from; None: huggingface_hub's own (HF_ENDPOINT). The tests point it
# at a loopback server, as sources/torchvision.WEIGHTS_URLS does for torchvision.
HUB_ENDPOINT = None


def _timm():
    try:
        import timm
    except ImportError:
        raise ModelError("timm: models need the timm package; install it with "
                         "pip install 'featurescope[timm]'.") from None
    return timm


def hub_cache_folder(repo_id: str) -> Path:
    """The Hugging Face cache folder of ``repo_id`` (it need not exist)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE) / ("models--" + repo_id.replace("/", "--"))


def _progress_tqdm(progress, cancel, label: str):
    """A tqdm class for hf_hub_download that reports progress and honours cancel."""
    from tqdm.auto import tqdm

    class ProgressTqdm(tqdm):
        def __init__(self, *args, **kwargs):
            kwargs["disable"] = True  # no console bar; ours goes through ``progress``
            super().__init__(*args, **kwargs)
            self._done = 0

        def update(self, n=1):
            check(cancel)
            self._done += n or 0
            report(progress, self._done, int(self.total or 0), f"Downloading {label}")
            return super().update(n)

    return ProgressTqdm


def cached_weights(repo_id: str):
    """The path of ``repo_id``'s weights in the Hugging Face cache, or None."""
    from huggingface_hub import try_to_load_from_cache

    for filename in HUB_FILES:
        found = try_to_load_from_cache(repo_id, filename)
        if isinstance(found, str):
            return Path(found)
    return None


def _unreachable(endpoint: str) -> str:
    """Why ``endpoint`` cannot be reached ("" when it answers at all, errors included)."""
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(urllib.request.Request(endpoint, method="HEAD"), timeout=10).close()
    except urllib.error.HTTPError:
        return ""  # it answered
    except (urllib.error.URLError, OSError, ValueError) as error:
        detail = getattr(error, "reason", None) or error
        return f"{endpoint} could not be reached: {getattr(detail, 'strerror', None) or detail}"
    return ""


def fetch_weights(repo_id: str, progress=None, cancel=None) -> Path:
    """``repo_id``'s weights file: from the Hugging Face cache, else downloaded into it.
    Raises DownloadError (naming the repository and the cache folder) or Cancelled."""
    found = cached_weights(repo_id)
    if found is not None:
        return found
    from huggingface_hub import hf_hub_download
    from huggingface_hub import constants
    from huggingface_hub import errors

    LocalEntryNotFoundError = errors.LocalEntryNotFoundError
    # huggingface_hub < 1.0 has no RemoteEntryNotFoundError; Local* is caught first anyway
    RemoteEntryNotFoundError = getattr(errors, "RemoteEntryNotFoundError", errors.EntryNotFoundError)

    folder = hub_cache_folder(repo_id)
    # huggingface_hub retries an unreachable Hub for ~25 s without a way to cancel; one
    # quick request first makes "offline" an answer at once
    endpoint = HUB_ENDPOINT or constants.ENDPOINT
    reason = "" if constants.HF_HUB_OFFLINE else _unreachable(endpoint)
    for filename in HUB_FILES if not reason else ():
        try:
            return Path(hf_hub_download(repo_id, filename, endpoint=endpoint,
                                        tqdm_class=_progress_tqdm(progress, cancel, filename)))
        except Cancelled:
            raise
        except LocalEntryNotFoundError:  # offline (HF_HUB_OFFLINE or no network), not cached
            reason = ("offline mode is on (HF_HUB_OFFLINE)" if constants.HF_HUB_OFFLINE else
                      "the Hub could not be reached") + " and they are not in the cache"
            break
        except RemoteEntryNotFoundError:
            reason = f"the repository has no {' or '.join(HUB_FILES)}"
            continue
        except Exception as error:  # offline, no route, HTTP errors: all say the same to a user
            text = (str(error).strip().splitlines() or [type(error).__name__])[0].rstrip(".")
            reason = f"{type(error).__name__}: {text}"
            break
    raise DownloadError(
        f"Could not download the weights of the Hugging Face repository {repo_id} ({reason}); "
        f"on a machine with internet access run `hf download {repo_id}` (the huggingface_hub "
        f"command) and copy its cache folder to {folder}.", url=f"https://huggingface.co/{repo_id}", cache_path=folder)


def timm_preprocessing(module) -> Preprocessing:
    """timm's own data config for ``module`` as a Preprocessing."""
    from timm.data import resolve_model_data_config

    config = resolve_model_data_config(module)
    channels, height, width = config["input_size"]
    crop_pct = float(config.get("crop_pct") or 1.0)
    resize = int(math.floor(max(height, width) / crop_pct))
    interpolation = config.get("interpolation") or "bilinear"
    if interpolation not in ("bilinear", "bicubic", "nearest"):
        interpolation = "bilinear"
    return Preprocessing((int(height), int(width)), resize, tuple(config["mean"]),
                         tuple(config["std"]), int(channels), interpolation)


def _categories(module):
    classes = getattr(module, "num_classes", None)
    if classes == 1000:
        from featurescope.core.models.sources.torchvision import imagenet_categories

        return imagenet_categories()
    try:
        from timm.data import ImageNetInfo, infer_imagenet_subset

        subset = infer_imagenet_subset(module)
        if subset:
            info = ImageNetInfo(subset)
            return [info.index_to_description(i) for i in range(classes)]
    except Exception:  # class names are a nicety; a model without them still shows
        pass
    return None


@register_source
class TimmSource:
    """``timm:NAME``: any timm model with conv or pooling layers."""

    name = "timm"
    priority = 15

    def claims(self, name: str) -> bool:
        return name.startswith(PREFIX)

    def spec(self, name: str) -> ModelSpec:
        arch = name[len(PREFIX):].strip()
        timm = _timm()
        if not arch or not timm.is_model(arch):
            close = difflib.get_close_matches(arch, timm.list_models(), n=1)
            hint = f"did you mean timm:{close[0]}? " if close else ""
            raise ModelError(f"{arch!r} is not a timm model; {hint}timm.list_models() lists them.")
        from timm.models import get_pretrained_cfg

        config = get_pretrained_cfg(arch)
        repo = getattr(config, "hf_hub_id", None) if config is not None else None

        def create(mode: str, progress=None, cancel=None, trust_pickle: bool = False):
            report(progress, 0, 0, f"Building {arch}")
            module = timm.create_model(arch, pretrained=False)
            if mode != "default":
                return module
            if not repo:
                raise ModelError(f"timm has no Hugging Face weights for {arch}; use weights "
                                 f"none or a state-dict file.")
            path = fetch_weights(repo, progress, cancel)
            check(cancel)
            report(progress, 0, 0, f"Loading {arch} weights")
            try:
                return timm.create_model(arch, pretrained=True, pretrained_cfg_overlay={"file": str(path)})
            except Exception as error:
                raise ModelError(f"The cached weights {path} do not load into timm's {arch} "
                                 f"({type(error).__name__}: {error}).") from None

        return ModelSpec(name=name, source=self.name, create=create, family="timm", arch=arch,
                         default_label=(getattr(config, "tag", None) or "pretrained"),
                         preprocessing_for=lambda module, _base: timm_preprocessing(module),
                         categories_for=_categories)

    # The catalogue lists no timm models: there are over a thousand, and importing timm
    # would slow `featurescope models`; any name from timm.list_models() loads.
