"""A Ray address nothing (or something other than Ray) answers at is one sentence within
seconds, before the model loads; Ray itself retries for minutes. No Ray is started."""
from __future__ import annotations

import builtins
import socket
import threading
import time

import pytest

from featurescope.cli.main import main
from featurescope.core.cluster import EngineError, check_address


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def silent_server():
    """A TCP port that accepts and then says nothing, as a firewall or another service may."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    accepted = []

    def accept():
        while True:
            try:
                accepted.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield server.getsockname()[1]
    server.close()
    for connection in accepted:
        connection.close()


@pytest.mark.parametrize("scheme", ["ray://", ""])
def test_nothing_listening_is_refused_at_once(scheme):
    address = f"{scheme}127.0.0.1:{_free_port()}"
    started = time.monotonic()
    with pytest.raises(EngineError, match="cannot be reached .*connection refused"):
        check_address(address)
    assert time.monotonic() - started < 3


@pytest.mark.parametrize("scheme", ["ray://", ""])
def test_something_that_is_not_ray_is_refused_within_the_timeout(silent_server, scheme):
    started = time.monotonic()
    with pytest.raises(EngineError, match="answers, but not as Ray"):
        check_address(f"{scheme}127.0.0.1:{silent_server}", timeout=1)
    assert time.monotonic() - started < 5


def test_addresses_that_are_not_addresses_and_a_missing_client(monkeypatch):
    with pytest.raises(EngineError, match="not an address"):
        check_address("ray://head:port")
    real_import = builtins.__import__

    def no_grpc(name, *args, **kwargs):
        if name == "grpc":
            raise ImportError("No module named 'grpc'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_grpc)
    with pytest.raises(EngineError, match=r"Ray's client, which is not installed.*featurescope\[cluster\]"):
        check_address("ray://127.0.0.1:10001")
    check_address(None)  # no address: a local Ray, nothing to check
    check_address("auto")


def test_index_says_so_before_loading_the_model(tmp_path, capsys, monkeypatch):
    import featurescope.cli.index as index_cli

    monkeypatch.setattr(index_cli, "load_model_from_args",
                        lambda args: pytest.fail("the model loaded before the address was checked"))
    output = tmp_path / "x.fsindex"
    assert main(["index", str(tmp_path), "--engine", "ray", "--ray-address",
                 f"ray://127.0.0.1:{_free_port()}", "-o", str(output)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot be reached" in err[0]
    assert list(tmp_path.iterdir()) == []
