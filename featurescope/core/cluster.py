"""One Ray session for the engines that can run on a cluster (the index, the atlas).

``address`` (or RAY_ADDRESS) joins an existing cluster; without one a local Ray is
started for the run (its start-up takes a few seconds) and shut down after it. A Ray
already running in this process (a notebook's) is used as it is and left running.
"""
from __future__ import annotations

import contextlib
import logging
import os
from typing import Iterator, Optional

from featurescope.core.errors import FeaturescopeError


class EngineError(FeaturescopeError):
    """Ray cannot be used as asked (missing, unreachable)."""


def import_ray(what: str = "The ray engine"):
    """The ray module (with Ray Data), or one sentence naming the extra to install."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise EngineError(f"{what} needs Ray; install it with pip install 'featurescope[cluster]' "
                                "or use --engine local.") from None
    return ray


@contextlib.contextmanager
def ray_session(address: Optional[str], workers: int, num_cpus: Optional[int] = None,
                what: str = "The ray engine") -> Iterator:
    """``with ray_session(address, workers) as ray:`` a connected Ray for the block."""
    ray = import_ray(what)
    address = address or os.environ.get("RAY_ADDRESS") or None
    started_here = False
    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
        else:
            ray.init(num_cpus=num_cpus or max(2, int(workers)), include_dashboard=False,
                     log_to_driver=False, logging_level=logging.ERROR)
        started_here = True
    try:
        yield ray
    finally:
        if started_here:
            ray.shutdown()
