"""Resuming an interrupted run: an unreadable last.ckpt is moved aside and the run starts
afresh; a readable one is resumed with ``weights_only`` (no pickled code runs)."""

from __future__ import annotations

import collections

import lightning as L
import pytest
import torch

from gair.training import run_pretraining
from gair.training.run import LAST, checkpoint_load_error, prepare_run_dir
from tests.training.test_training import _spec


def _interrupted_run(run_dir, spec) -> object:
    """A run folder as a run killed mid-training leaves it (its spec, no summary)."""
    prepare_run_dir(run_dir, spec, resume=True)
    last = run_dir / "checkpoints" / LAST
    last.parent.mkdir()
    return last


def _truncated(path) -> bytes:
    torch.save({"state_dict": {"w": torch.arange(10_000.0)}}, path)
    return path.read_bytes()[: path.stat().st_size // 2]


class _Pickled:  # a class weights_only refuses to unpickle
    pass


@pytest.mark.parametrize("content", ["empty", "garbage", "truncated", "pickled object"])
def test_an_unreadable_last_checkpoint_is_moved_aside(tmp_path, caplog, content):
    spec = {"run": 1}
    last = _interrupted_run(tmp_path, spec)
    if content == "pickled object":
        torch.save({"state_dict": {}, "callback": _Pickled()}, last)
    else:
        last.write_bytes({"empty": b"", "garbage": b"not a checkpoint\x00" * 64,
                          "truncated": _truncated(last)}[content])
    written = last.read_bytes()
    assert checkpoint_load_error(last)
    (tmp_path / "logs").mkdir()  # the interrupted run's history goes with it

    with caplog.at_level("WARNING", logger="gair.training.run"):
        assert prepare_run_dir(tmp_path, spec, resume=True) is None

    (aside,) = tmp_path.glob(f"{LAST}.corrupt-*")
    assert aside.read_bytes() == written
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([aside.name, "spec.json"])
    assert str(last) in caplog.text and str(aside) in caplog.text
    assert prepare_run_dir(tmp_path, spec | {"run": 2}, resume=True) is None
    assert aside.is_file(), "a later fresh start keeps the moved-aside file"


def test_a_readable_last_checkpoint_is_resumed_with_weights_only(tiny_shards, tmp_path,
                                                                  monkeypatch):
    spec = _spec(tiny_shards, tmp_path / "r", max_epochs=1)
    last = _interrupted_run(tmp_path / "r", spec)
    torch.save({"state_dict": {}}, last)
    assert checkpoint_load_error(last) is None
    calls = collections.deque()
    monkeypatch.setattr(L.Trainer, "fit", lambda self, *args, **kwargs: calls.append(kwargs))
    run_pretraining(spec)
    (kwargs,) = calls
    assert kwargs["ckpt_path"] == last and kwargs["weights_only"] is True


@pytest.mark.slow
def test_a_run_with_a_corrupt_last_checkpoint_trains_afresh(tiny_shards, tmp_path, caplog):
    spec = _spec(tiny_shards, tmp_path / "r", max_epochs=1)
    last = _interrupted_run(tmp_path / "r", spec)
    last.write_bytes(b"PK\x03\x04 half a zip")
    with caplog.at_level("WARNING", logger="gair.training.run"):
        summary = run_pretraining(spec)
    assert summary["global_step"] == 4 and summary["epochs"] == 1
    assert checkpoint_load_error(last) is None
    (aside,) = (tmp_path / "r").glob(f"{LAST}.corrupt-*")
    assert aside.read_bytes() == b"PK\x03\x04 half a zip"
    assert str(last) in caplog.text and str(aside) in caplog.text
