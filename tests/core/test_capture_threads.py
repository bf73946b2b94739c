"""Capture from any thread: concurrent captures on one model each get their own outputs,
nothing stays active afterwards, taps survive copies, pickling and DataLoader workers."""
from __future__ import annotations

import copy
import multiprocessing
import pickle
import threading

import pytest
import torch
from torch import nn

from featurescope.core.capture import taps
from featurescope.core.capture.capture import capture, capture_batch
from featurescope.core.progress import CancelToken, Cancelled


class _Rendezvous(nn.Module):
    """Makes two forward passes meet in the middle: both are inside the model at once."""

    def __init__(self, parties: int):
        super().__init__()
        self.barrier = threading.Barrier(parties)

    def forward(self, x):
        self.barrier.wait(timeout=30)
        return x


def _net(rendezvous: nn.Module) -> nn.Module:
    torch.manual_seed(5)
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
                         rendezvous, nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(inplace=True),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3)).eval()


def _run_threads(*targets):
    errors, threads = [], []
    for target in targets:
        def body(target=target):
            try:
                target()
            except BaseException as error:  # reported below, not lost in the thread
                errors.append(error)
        threads.append(threading.Thread(target=body))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    assert not any(thread.is_alive() for thread in threads)


def test_two_threads_capturing_one_model_at_once_get_their_own_outputs():
    model = _net(_Rendezvous(2))
    a, b = torch.randn(1, 3, 16, 16), torch.randn(1, 3, 16, 16)
    got = {}
    _run_threads(lambda: got.__setitem__("a", capture(model, a)),
                 lambda: got.__setitem__("b", capture(model, b)))
    model[3].barrier = threading.Barrier(1)  # sequential from here
    for key, x in (("a", a), ("b", b)):
        alone = capture(model, x)
        assert got[key].layers == alone.layers == ["0", "2", "4", "6"]  # no "#2" from the other
        for name in alone.layers:
            assert torch.equal(got[key][name], alone[name]), (key, name)
        assert torch.equal(got[key].logits, alone.logits)
        assert (got[key]["0"] < 0).any()  # the conv output, not the in-place ReLU's
    assert not torch.equal(got["a"]["4"], got["b"]["4"])


def test_a_plain_forward_during_a_capture_on_another_thread_is_not_recorded():
    model = _net(_Rendezvous(2))
    x, other = torch.randn(2, 3, 16, 16), torch.randn(2, 3, 16, 16)
    got, seen = {}, {}

    def plain():
        seen["active"] = taps.current()
        with torch.no_grad():
            seen["out"] = model(other)

    _run_threads(lambda: got.__setitem__("batch", capture_batch(model, x)), plain)
    assert seen["active"] is None
    assert got["batch"].layers == ["0", "2", "4", "6"]
    model[3].barrier = threading.Barrier(1)
    alone = capture_batch(model, x)
    for name in alone.layers:
        assert torch.equal(got["batch"][name], alone[name]), name
    with torch.no_grad():
        assert torch.equal(seen["out"], model(other))


def test_nothing_stays_active_after_a_capture_that_raised_or_was_cancelled():
    model = _net(nn.Identity())
    x = torch.randn(1, 3, 16, 16)
    kept = capture(model, x)
    before = {name: kept[name].clone() for name in kept.layers}
    token = CancelToken()
    states = []

    def cancelled():  # cancelled in the middle of the forward pass, after layer 2
        with pytest.raises(Cancelled):
            capture(model, x, progress=lambda done, *_: done == 2 and token.cancel(), cancel=token)
        states.append(taps.current())

    def failing():  # the network itself raises half-way
        with pytest.raises(Exception, match="failed on a 3x1x1 input"):
            capture(model, torch.randn(1, 3, 1, 1))
        states.append(taps.current())

    _run_threads(cancelled, failing)
    assert states == [None, None] and taps.current() is None
    # a plain forward afterwards stores nothing anywhere: earlier results are untouched
    with torch.no_grad():
        model(torch.randn(1, 3, 16, 16))
    for name, value in before.items():
        assert torch.equal(kept[name], value)
    assert taps.current() is None
    # and the next capture is complete and right
    again = capture(model, x)
    assert again.layers == kept.layers and all(torch.equal(again[n], before[n]) for n in before)


def test_taps_are_installed_once_and_follow_module_changes():
    model = _net(nn.Identity())
    capture(model, torch.randn(1, 3, 8, 8))
    first = model[0].__dict__["forward"]
    capture(model, torch.randn(1, 3, 8, 8))
    assert model[0].__dict__["forward"] is first  # not re-installed
    model[4] = nn.Conv2d(6, 8, 5, padding=2)  # a new module: tapped on the next capture
    result = capture(model, torch.randn(1, 3, 8, 8))
    assert result.info["4"].kernel_size == (5, 5)
    taps.untap(model)
    assert all("forward" not in m.__dict__ for m in model.modules())


def test_a_captured_model_is_freed_once_nobody_holds_it():
    # the taps' caches are keyed weakly by the model and a tap holds its module weakly:
    # no reference cycle keeps a model (and its weights) until the next full collection
    import gc
    import weakref

    model = _net(nn.LazyConv2d(6, 3, padding=1))  # a lazy module too: the taps list those
    capture(model, torch.randn(1, 3, 8, 8))
    capture(model.train(), torch.randn(1, 3, 8, 8))
    assert not model.training  # a capture evaluates in eval mode
    gone = [weakref.ref(module) for module in model.modules()]  # the tapped layers too
    gc.disable()  # freed as soon as the last reference goes, not at some later collection
    try:
        del model
        assert [ref() for ref in gone] == [None] * len(gone)
    finally:
        gc.enable()


def test_copies_and_pickles_of_a_tapped_model_capture_themselves():
    model = _net(nn.Identity())
    x = torch.randn(1, 3, 16, 16)
    original = capture(model, x)
    twin = copy.deepcopy(model)
    with torch.no_grad():
        twin[4].weight.mul_(2)  # the copy's taps must call the copy, not the original
    doubled = capture(twin, x)
    assert not torch.equal(doubled["4"], original["4"])
    with torch.no_grad():
        assert not torch.equal(twin(x), model(x))
    assert torch.equal(capture(model, x)["4"], original["4"])
    restored = pickle.loads(pickle.dumps(model))
    again = capture(restored, x)
    for name in original.layers:
        assert torch.equal(again[name], original[name])


class _CaptureDataset(torch.utils.data.Dataset):
    """Each item is one capture, done inside the DataLoader worker."""

    def __init__(self, model, inputs):
        self.model = model
        self.inputs = inputs

    def __len__(self):
        return len(self.inputs)

    def __getitem__(self, index):
        result = capture(self.model, self.inputs[index:index + 1])
        return {name: result[name] for name in result.layers}


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs fork")
def test_capture_inside_a_dataloader_worker():
    model = _net(nn.Identity())
    inputs = torch.randn(3, 3, 16, 16)
    expected = [capture(model, inputs[i:i + 1]) for i in range(3)]  # taps installed before the fork
    loader = torch.utils.data.DataLoader(_CaptureDataset(model, inputs), batch_size=None,
                                         num_workers=1, multiprocessing_context="fork")
    items = list(loader)
    assert len(items) == 3
    for item, reference in zip(items, expected):
        assert list(item) == reference.layers
        for name in reference.layers:
            assert torch.equal(item[name], reference[name]), name
