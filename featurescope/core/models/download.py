"""Default weights from the internet into the torch hub cache, with progress and cancel.

``WEIGHTS_URLS`` (model name -> URL) replaces torchvision's URL for a model, and with it
the cache file name; the tests use it to download from a loopback server, and it can
point at a private mirror.
"""
from __future__ import annotations

import hashlib
import os
import re
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from featurescope.core.models.sources import lite
from featurescope.core.errors import DownloadError
from featurescope.core.progress import check, report
from featurescope.core.models.sources.torchvision import check_known, default_weights

# The one seam for downloads: model name -> URL of its default weights, replacing
# torchvision's. The cache file name is taken from this URL; a "-<hex>." part in it is
# checked against the file's SHA-256, as torch.hub does.
WEIGHTS_URLS: dict[str, str] = {}
_CHUNK = 1 << 16


def download_url_for(name: str) -> str:
    """The URL ``name``'s default weights are downloaded from (``WEIGHTS_URLS`` first)."""
    return WEIGHTS_URLS.get(name) or default_weights(name).url


def cache_path_for(name: str) -> Path:
    """Where ``name``'s default weights live: the torch hub cache file torchvision uses
    (``torch.hub.get_dir()/checkpoints/<file name from the URL>``); for
    efficientnet_lite0 the file embedded in its package."""
    if name == lite.NAME:
        return lite.weights_file()
    import torch.hub

    check_known(name)
    filename = os.path.basename(urllib.parse.urlparse(download_url_for(name)).path)
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def download(url: str, target: Path, progress, cancel) -> None:
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

