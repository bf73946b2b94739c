"""The Ray engine: the same reduction as the local engine, on Ray Data.

The driver hands Ray the file list (ids and paths); a pool of actors, each holding the
model, reads and decodes its files, runs them through the model with an
:class:`ExampleReducer` and returns that batch's partial top-K; the driver merges the
partials as they arrive. What crosses the network is file paths one way and top-K
records (K values, ids and positions per channel, plus per-channel sums) the other; the
images are read where the actor runs (so the folder must be visible there at the same
path: a shared file system), and activations never leave the actor.

``address`` (or RAY_ADDRESS) joins an existing cluster; without one a local Ray is
started for the run and shut down after it (its start-up takes a few seconds).
"""
from __future__ import annotations

import logging
import os
import pickle
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from featurescope.core.errors import IndexFileError
from featurescope.core.index.geometry import Preprocessing
from featurescope.core.index.local import BatchDone
from featurescope.core.progress import CancelToken, check


def _import_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise IndexFileError("The ray engine needs Ray; install it with "
                             "pip install 'featurescope[cluster]' or use --engine local.") from None
    return ray


class IndexActor:
    """Holds the model; one call reads, decodes and reduces one batch of files."""

    def __init__(self, module, root: str, preprocessing: Preprocessing, layers, k: int,
                 rank: np.ndarray, threads: int = 1, groups: Optional[np.ndarray] = None):
        import torch

        from featurescope.core.index.geometry import PreprocessTransform
        from featurescope.core.index.reduce import ExampleReducer

        torch.set_num_threads(max(1, int(threads)))
        if not isinstance(module, torch.nn.Module):  # an ObjectRef: one copy per node
            import ray

            module = ray.get(module)
        self.module = module.to("cpu").eval()
        self.root = Path(root)
        self.transform = PreprocessTransform(preprocessing)
        self.shape = (preprocessing.channels, *preprocessing.crop)
        self.layers = list(layers)
        self.reducer = ExampleReducer(k, rank, layers, groups)

    def __call__(self, batch: dict) -> dict:
        import torch

        from featurescope.core.index.dataset import decode
        from featurescope.core.index.local import run_batch

        ids = np.asarray(batch["id"], dtype=np.int64)
        decoded = [decode(self.root, str(path), self.transform, self.shape) for path in batch["path"]]
        images = torch.stack([d[0] for d in decoded])
        ok = np.array([d[1] for d in decoded], dtype=bool)
        partial = run_batch(self.module, self.reducer, images, ids, ok, self.layers)
        record = (ids, ok, [d[2] for d in decoded], [d[3] for d in decoded], [d[4] for d in decoded],
                  partial)
        return {"record": np.array([pickle.dumps(record, protocol=pickle.HIGHEST_PROTOCOL)], dtype=object)}


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
            raise IndexFileError(f"--ray-address {address} uses Ray's client, which is not installed; "
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
        raise IndexFileError(f"--ray-address {address} is not an address; write HOST:PORT or "
                             "ray://HOST:PORT.") from None
    where = f"{host}:{port_number}"
    try:
        socket.create_connection((host, port_number), timeout=timeout).close()
        why = "" if _speaks_ray(host, port_number, client, timeout) else f"{where} answers, but not as Ray"
    except OSError as error:
        why = f"{where}: " + (f"no answer within {timeout:g} s" if isinstance(error, (socket.timeout, TimeoutError))
                              else (error.strerror or str(error)).lower())
    if why:
        raise IndexFileError(f"The Ray cluster at {address} cannot be reached ({why}); check the "
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


def run_ray(model, root, items: list[tuple[int, str]], preprocessing: Preprocessing,
            layers: list[str], k: int, rank: np.ndarray, batch_size: int, workers: int,
            cancel: Optional[CancelToken] = None, address: Optional[str] = None,
            num_cpus: Optional[int] = None, groups: Optional[np.ndarray] = None) -> Iterator[BatchDone]:
    """Yield one :class:`BatchDone` per batch, as the Ray actors finish them."""
    ray = _import_ray()
    if not items:
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    check_address(address)
    started_here = False
    if not ray.is_initialized():
        if address:
            try:
                ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
            except (ConnectionError, TimeoutError, RuntimeError) as error:
                raise IndexFileError(f"Ray could not join the cluster at {address} "
                                     f"({str(error).rstrip('.') or type(error).__name__}); check "
                                     "the address or use --engine local.") from None
        else:
            ray.init(num_cpus=num_cpus or max(2, workers), include_dashboard=False,
                     log_to_driver=False, logging_level=logging.ERROR)
        started_here = True
    try:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        logging.getLogger("ray.data").setLevel(logging.ERROR)
        context.execution_options.preserve_order = True
        module_ref = ray.put(model.module)
        dataset = ray.data.from_items([{"id": i, "path": p} for i, p in items],
                                      override_num_blocks=max(1, min(len(items) // batch_size + 1, 64)))
        reduced = dataset.map_batches(
            IndexActor, batch_size=batch_size, batch_format="numpy",
            fn_constructor_args=(module_ref, str(root), preprocessing, list(layers), int(k), rank, 1,
                                 groups),
            compute=ray.data.ActorPoolStrategy(size=max(1, int(workers))), num_cpus=1)
        for row in reduced.iter_rows():
            check(cancel)
            ids, ok, reasons, heights, widths, partial = pickle.loads(row["record"])
            yield BatchDone(ids, ok, reasons, heights, widths, partial)
    finally:
        if started_here:
            ray.shutdown()
