"""Runs that cannot be silently corrupted: resume checks, temp-file clean-up, robustness wiring."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from _toy import toy_bundle, toy_config

from pointlib.datasets.cache import cached_arrays
from pointlib.engine import robustness
from pointlib.engine.checkpoint import load_checkpoint
from pointlib.engine.trainer import TrainResult, train
from pointlib.io._atomic import make_temp, remove_stale_temps, temp_tag

ROOT = Path(__file__).resolve().parents[2]


# -- resume with another configuration ----------------------------------------------------------


def test_resume_rejects_other_model_kwargs_and_keeps_results(tmp_path):
    cfg = toy_config(train={"epochs": 2})
    train(cfg, tmp_path, data=toy_bundle(cfg))
    results = (tmp_path / "results.json").read_bytes()
    other = toy_config(train={"epochs": 2}, model={"name": "toy_cls", "kwargs": {"faithful": True}})
    with pytest.raises(ValueError, match=r"last\.pt.*model\.kwargs\.faithful: checkpoint "
                       r"False, config True"):  # fmt: skip
        train(other, tmp_path, data=toy_bundle(other), resume=tmp_path / "last.pt")
    assert (tmp_path / "results.json").read_bytes() == results  # not overwritten


def test_resume_rejects_other_training_settings(tmp_path):
    cfg = toy_config(train={"max_steps": 2})
    train(cfg, tmp_path, data=toy_bundle(cfg))
    changed = toy_config(train={"max_steps": 4}, augment={"rotation": "so3"}, optim={"lr": 0.1})
    with pytest.raises(ValueError, match=r"augment\.rotation: checkpoint 'z', config 'so3'.*"
                       r"optim\.lr: checkpoint 0\.001, config 0\.1"):  # fmt: skip
        train(changed, tmp_path, data=toy_bundle(changed), resume=tmp_path / "last.pt")
    # settings that only say how long / where to run may change; an explicit default equals an
    # omitted keyword
    longer = toy_config(
        train={"max_steps": 4, "epochs": 3, "device": "cpu"},
        model={"name": "toy_cls", "kwargs": {"faithful": False}},
    )
    res = train(longer, tmp_path, data=toy_bundle(longer), resume=tmp_path / "last.pt")
    assert res.global_step == 4


# -- half-written temporary files of killed writers ------------------------------------------


def _killed_writer(target: Path, *, tagged: bool = True) -> Path:
    """Run a process that starts an atomic write of ``target`` and is killed with SIGKILL."""
    code = textwrap.dedent(
        f"""
        import os, signal, sys
        from pathlib import Path
        from pointlib.io._atomic import make_temp
        target = Path({str(target)!r})
        if {tagged!r}:
            tmp = make_temp(target)
        else:  # the untagged name of pointlib versions before the tags
            tmp = target.with_name("." + target.name + ".x1y2z3ab.tmp")
        tmp.write_bytes(b"half")
        print(tmp, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert r.returncode == -signal.SIGKILL, r.stderr
    tmp = Path(r.stdout.strip())
    assert tmp.is_file()
    return tmp


def test_killed_writer_temp_removed_when_the_run_starts_again(tmp_path):
    tmp_path.mkdir(exist_ok=True)
    dead_last = _killed_writer(tmp_path / "last.pt")
    dead_best = _killed_writer(tmp_path / "best.pt")
    old = _killed_writer(tmp_path / "metrics.csv", tagged=False)
    os.utime(old, (time.time() - 3600, time.time() - 3600))  # an hour old
    live = make_temp(tmp_path / "last.pt")  # this (live) process: must survive
    cfg = toy_config(train={"max_steps": 1})
    train(cfg, tmp_path, data=toy_bundle(cfg))
    assert not dead_last.exists() and not dead_best.exists() and not old.exists()
    assert live.exists()
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == [live.name]


def test_killed_cache_build_temp_removed_on_next_start(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    settings = {"dataset": "toy"}
    _, path = cached_arrays(cache, "toy", settings, "fp", lambda: {"a": np.arange(3)})
    assert path is not None
    dead = _killed_writer(path)
    recent_untagged = _killed_writer(path, tagged=False)  # may belong to another host: kept
    again, _ = cached_arrays(cache, "toy", settings, "fp", lambda: pytest.fail("rebuilt"))
    assert np.array_equal(again["a"], np.arange(3))
    assert not dead.exists() and recent_untagged.exists()
    assert remove_stale_temps([path], stale_after_s=0) == [recent_untagged]


def test_temp_names_carry_host_and_pid(tmp_path):
    tmp = make_temp(tmp_path / "x.npz")
    assert tmp.name.startswith(f".x.npz.{temp_tag()}.") and tmp.name.endswith(".tmp")
    assert temp_tag().endswith(f"-{os.getpid()}")


# -- robustness ---------------------------------------------------------------------------------


def test_train_result_best_model_holds_the_selected_weights(tmp_path):
    cfg = toy_config(train={"epochs": 3})
    res = train(cfg, tmp_path, data=toy_bundle(cfg))
    best = load_checkpoint(tmp_path / "best.pt")["model"]
    assert res.best_model is not None
    for k, v in res.best_model.state_dict().items():
        assert torch.equal(v, best[k]), k


def test_robustness_sweep_uses_best_weights_and_leaves_data_alone(monkeypatch):
    cfg = toy_config(eval={"angle_sweep": True, "sweep_steps": 2})
    data = toy_bundle(cfg)
    original = data.train.augment
    last, best = torch.nn.Linear(1, 1), torch.nn.Linear(1, 1)
    seen: dict[str, object] = {}

    def fake_train(c, out_dir, *, data):
        seen.setdefault("augments", []).append(data.train.augment.rotation)
        return TrainResult(None, True, 1, 1, 0.0, model=last, best_model=best)

    def fake_sweep(c, model, bundle, **kw):
        seen["model"] = model
        return [0.0], [1.0]

    monkeypatch.setattr(robustness, "train", fake_train)
    monkeypatch.setattr(robustness, "angle_sweep", fake_sweep)
    robustness.run_robustness(cfg, None, data=data)
    assert seen["model"] is best
    assert seen["augments"] == list(cfg.robustness.train_rotations)  # each run its rotation
    assert data.train.augment is original and data.train.augment.rotation == "z"
