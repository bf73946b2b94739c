"""One Ray session for the engines that can run on a cluster (the index, the atlas).

``address`` (or RAY_ADDRESS) joins an existing cluster (checked first by
:func:`check_address`, within seconds, since Ray itself retries for minutes); without one a local Ray is
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


CONNECT_SECONDS = 5.0
CLIENT_PORT, GCS_PORT = 10001, 6379


def check_address(address: Optional[str], timeout: float = CONNECT_SECONDS) -> None:
    """Refuse, in one sentence and within ``timeout`` seconds, a Ray address nothing
    answers at (Ray itself retries for minutes), and ``ray://`` without Ray's client.
    ``None`` and ``auto`` (a cluster started on this machine) are left to Ray."""
    import socket

    if not address or address == "auto" or address.startswith("local"):
        return
    text = address.strip()
    client = text.startswith("ray://")
    if client:
        try:
            import grpc  # noqa: F401  (what ray[client] adds)
        except ImportError:
            raise EngineError(f"--ray-address {address} uses Ray's client, which is not installed; "
                                 "install it with pip install 'featurescope[cluster]' "
                                 "(it brings ray[client]).") from None
        text = text[len("ray://"):]
    host, _, port = text.rstrip("/").rpartition(":")
    if not host:
        host, port = text.rstrip("/"), ""
    host = host.strip("[]")
    try:
        port_number = int(port) if port else (CLIENT_PORT if client else GCS_PORT)
    except ValueError:
        raise EngineError(f"--ray-address {address} is not an address; write HOST:PORT or "
                             "ray://HOST:PORT.") from None
    where = f"{host}:{port_number}"
    try:
        socket.create_connection((host, port_number), timeout=timeout).close()
        why = "" if _speaks_ray(host, port_number, client, timeout) else f"{where} answers, but not as Ray"
    except OSError as error:
        why = f"{where}: " + (f"no answer within {timeout:g} s" if isinstance(error, (socket.timeout, TimeoutError))
                              else (error.strerror or str(error)).lower())
    if why:
        raise EngineError(f"The Ray cluster at {address} cannot be reached ({why}); check the "
                             "address or use --engine local.")


# One cheap call each server kind answers (an empty request is a valid protobuf message):
# a real Ray server replies, anything else (a web server, a proxy) says UNIMPLEMENTED.
_PROBE = {True: "/ray.rpc.RayletDriver/ClusterInfo", False: "/ray.rpc.NodeInfoGcsService/GetClusterId"}


def _speaks_ray(host: str, port: int, client: bool, timeout: float) -> bool:
    """Whether ``host:port`` answers one of Ray's gRPC calls, as its client server
    (``client``) or its GCS does; True where grpcio is not installed (nothing to ask with)."""
    try:
        import grpc
    except ImportError:
        return True
    channel = grpc.insecure_channel(f"{host}:{port}")
    try:
        channel.unary_unary(_PROBE[client])(b"", timeout=timeout)
        return True
    except grpc.RpcError as error:
        code = error.code() if hasattr(error, "code") else None
        return code not in (grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.UNAVAILABLE,
                            grpc.StatusCode.DEADLINE_EXCEEDED)
    finally:
        channel.close()


@contextlib.contextmanager
def ray_session(address: Optional[str], workers: int, num_cpus: Optional[int] = None,
                what: str = "The ray engine") -> Iterator:
    """``with ray_session(address, workers) as ray:`` a connected Ray for the block."""
    ray = import_ray(what)
    address = address or os.environ.get("RAY_ADDRESS") or None
    started_here = False
    if not ray.is_initialized():
        if address:
            check_address(address)
            try:
                ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
            except (ConnectionError, TimeoutError, RuntimeError) as error:
                raise EngineError(f"Ray could not join the cluster at {address} "
                                  f"({str(error).rstrip('.') or type(error).__name__}); check "
                                  "the address or use --engine local.") from None
        else:
            ray.init(num_cpus=num_cpus or max(2, int(workers)), include_dashboard=False,
                     log_to_driver=False, logging_level=logging.ERROR)
        started_here = True
    try:
        yield ray
    finally:
        if started_here:
            ray.shutdown()
