"""Checkpoints: atomic writes, clear errors, rebuilding the model from name + kwargs."""

from __future__ import annotations

import _toy  # noqa: F401  (registers toy models)
import pytest
import torch

from pointlib.engine.checkpoint import (
    CheckpointError,
    atomic_write_text,
    load_checkpoint,
    model_from_checkpoint,
    save_checkpoint,
)
from pointlib.models import create_model


def _state(model):
    return {
        "model_name": model.model_name,
        "model_kwargs": model.model_kwargs,
        "model": model.state_dict(),
    }


def test_rebuild_from_name_and_kwargs(tmp_path):
    model = create_model("toy_cls", num_classes=5, width=8)
    save_checkpoint(tmp_path / "m.pt", _state(model))
    again = model_from_checkpoint(tmp_path / "m.pt")
    assert again.model_kwargs == {"num_classes": 5, "width": 8}
    for (k, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), k


def test_run_folder_resolves_best_then_last(tmp_path):
    model = create_model("toy_cls")
    save_checkpoint(tmp_path / "last.pt", _state(model))
    assert load_checkpoint(tmp_path)["path"].endswith("last.pt")
    save_checkpoint(tmp_path / "best.pt", _state(model))
    assert load_checkpoint(tmp_path)["path"].endswith("best.pt")


def test_failed_write_keeps_old_file_and_leaves_no_temp(tmp_path):
    model = create_model("toy_cls")
    path = tmp_path / "best.pt"
    save_checkpoint(path, _state(model))
    before = path.read_bytes()
    bad = dict(_state(model), extra=lambda: None)  # lambdas cannot be pickled
    with pytest.raises(Exception):  # noqa: B017 - pickling error type differs across versions
        save_checkpoint(path, bad)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt"]
    atomic_write_text(tmp_path / "a.txt", "one")
    atomic_write_text(tmp_path / "a.txt", "two")
    assert (tmp_path / "a.txt").read_text() == "two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "best.pt"]


def test_errors_name_the_file(tmp_path):
    with pytest.raises(CheckpointError, match=r"checkpoint not found: .*missing\.pt"):
        load_checkpoint(tmp_path / "missing.pt")
    with pytest.raises(CheckpointError, match=r"no best\.pt or last\.pt"):
        load_checkpoint(tmp_path)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"cannot read checkpoint .*junk\.pt"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a pointlib checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="lacks model_kwargs"):
        save_checkpoint(tmp_path / "x.pt", {"model_name": "toy_cls", "model": {}})
