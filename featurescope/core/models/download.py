"""One file from the internet into a cache, with progress and cancel, never half written.

Which URL and which cache file belong to a model is its source's business
(core/models/sources/torchvision.py); this module knows no model, so the sources can
use it without an import circle.
"""
from __future__ import annotations

import hashlib
import os
import re
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from featurescope.core.errors import DownloadError
from featurescope.core.progress import check, report

_CHUNK = 1 << 16


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

