"""The trainer's steps alone: set-up and resume, one step, one epoch, validate and select,
record, test the selected weights; and the evaluation options object."""

from __future__ import annotations

import copy
import csv
import json
import math

import pytest
import torch
from _toy import toy_bundle, toy_config

from pointlib.engine.checkpoint import load_checkpoint
from pointlib.engine.data import make_loader
from pointlib.engine.evaluate import ProtocolOptions, eval_batches, evaluate_protocol, evaluate_test
from pointlib.engine.run_state import TrainState, resume_state, start_run, write_checkpoint
from pointlib.engine.schedules import apply_schedule
from pointlib.engine.trainer import (
    EpochOutcome,
    _meter,
    evaluate_best,
    record_epoch,
    train_epoch,
    train_step,
    validate_and_select,
)


def _batch(run, n: int = 8) -> dict:
    items = [run.data.train[i] for i in range(n)]
    from pointlib.engine.data import collate

    return collate(items)


def test_start_run_seeds_the_model_and_writes_the_run_folder(tmp_path):
    cfg = toy_config()
    run, state = start_run(cfg, tmp_path, toy_bundle(cfg))
    again, _ = start_run(cfg, None, toy_bundle(cfg))
    for k, v in run.model.state_dict().items():  # initial weights are a function of the seed
        assert torch.equal(v, again.model.state_dict()[k]), k
    assert state == TrainState() and run.net is run.model and run.writer is None
    assert (tmp_path / "config.resolved.yaml").is_file()
    info = json.loads((tmp_path / "run_info.json").read_text())
    assert info["resumed_from"] == "None" and info["samples"]["train"] == 36
    assert not again.writes and not list(p for p in tmp_path.iterdir() if p.suffix == ".pt")


def test_write_checkpoint_then_resume_state_restores_position_and_weights(tmp_path):
    cfg = toy_config()
    run, state = start_run(cfg, tmp_path, toy_bundle(cfg))
    meter = _meter(cfg, run.data)
    train_step(run, _batch(run), meter, (0, 0))
    state.global_step, state.best, state.history = 1, 0.25, [{"epoch": 1}]
    write_checkpoint(run, state, "last.pt", (0, 1), meter)
    ck = load_checkpoint(tmp_path / "last.pt")
    assert (ck["epoch"], ck["step_in_epoch"], ck["global_step"]) == (0, 1, 1)

    fresh, _ = start_run(cfg, None, toy_bundle(cfg))
    restored = resume_state(fresh, tmp_path / "last.pt")
    assert (restored.epoch, restored.step_in_epoch, restored.global_step) == (0, 1, 1)
    assert restored.best == 0.25 and restored.history == [{"epoch": 1}]
    assert torch.equal(restored.meter_state, meter.state())
    for k, v in run.model.state_dict().items():
        assert torch.equal(v, fresh.model.state_dict()[k]), k


def test_train_step_updates_weights_and_meter_and_rejects_a_nan_loss(tmp_path):
    cfg = toy_config()
    run, _ = start_run(cfg, None, toy_bundle(cfg))
    before = copy.deepcopy(run.model.state_dict())
    meter = _meter(cfg, run.data)
    loss = train_step(run, _batch(run), meter, (0, 0))
    assert math.isfinite(loss) and meter.compute()["loss"] == pytest.approx(loss)
    changed = [k for k, v in run.model.state_dict().items() if not torch.equal(v, before[k])]
    assert "head.3.weight" in changed

    bad = _batch(run)
    bad["xyz"] = torch.full_like(bad["xyz"], float("nan"))
    with pytest.raises(FloatingPointError, match="at epoch 2, step 5"):
        train_step(run, bad, meter, (2, 5))


def test_train_epoch_stops_at_max_steps_with_a_resumable_checkpoint(tmp_path):
    cfg = toy_config(train={"max_steps": 3})
    run, state = start_run(cfg, tmp_path, toy_bundle(cfg))
    outcome = train_epoch(run, state, 0)
    assert outcome.stopped and state.global_step == 3 and outcome.lr == cfg.optim.lr
    ck = load_checkpoint(tmp_path / "last.pt")
    assert (ck["epoch"], ck["step_in_epoch"]) == (0, 3)
    assert torch.equal(ck["meter_state"], outcome.meter.state())


def test_train_epoch_skips_the_steps_a_resumed_epoch_has_done(tmp_path):
    cfg = toy_config()
    run, state = start_run(cfg, None, toy_bundle(cfg))
    outcome = train_epoch(run, state, 1, skip=3)  # 4 steps per epoch: one left
    assert not outcome.stopped and state.global_step == 1
    assert outcome.lr == pytest.approx(cfg.optim.lr * 0.5)  # step_size 1, gamma 0.5


def test_validate_and_select_keeps_only_improving_weights(tmp_path):
    cfg = toy_config()
    run, state = start_run(cfg, None, toy_bundle(cfg))
    outcome = EpochOutcome(meter=_meter(cfg, run.data), lr=1e-3, started=0.0, stopped=False)
    outcome.meter.update(torch.zeros(2, 3), torch.tensor([0, 1]), 1.0)
    row, improved = validate_and_select(run, state, 0, outcome)
    assert improved and state.best == row["val_oa"] and state.history == [row]
    assert row["train_oa"] == 0.5 and row["epoch"] == 1
    assert torch.equal(state.best_weights["head.3.weight"], run.model.head[3].weight)

    state.best = 2.0  # nothing beats an accuracy of 2
    with torch.no_grad():
        run.model.head[3].weight.add_(1.0)
    _, improved = validate_and_select(run, state, 1, outcome)
    assert not improved and state.best == 2.0 and len(state.history) == 2
    assert not torch.equal(state.best_weights["head.3.weight"], run.model.head[3].weight)


def test_record_epoch_writes_best_only_when_improved(tmp_path):
    cfg = toy_config()
    run, state = start_run(cfg, tmp_path, toy_bundle(cfg))
    state.history = [{"epoch": 1, "lr": 1e-3, "val_oa": 0.5}]
    record_epoch(run, state, 0, state.history[0], improved=False)
    assert not (tmp_path / "best.pt").exists()
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 1
    record_epoch(run, state, 0, state.history[0], improved=True)
    assert load_checkpoint(tmp_path / "best.pt")["step_in_epoch"] == 0
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    assert rows == [{"epoch": "1", "lr": "0.001", "val_oa": "0.5"}]


def test_evaluate_best_tests_the_selected_not_the_last_weights(tmp_path):
    cfg = toy_config(eval={"rotations": ["none"]})
    run, state = start_run(cfg, tmp_path, toy_bundle(cfg))
    selected = copy.deepcopy(run.model)
    state.best_weights = {k: v.clone() for k, v in selected.state_dict().items()}
    with torch.no_grad():
        run.model.head[3].bias.add_(torch.tensor([5.0, 0.0, 0.0]))  # the "last" weights
    model, results = evaluate_best(run, state)
    assert model is not run.model
    expect = evaluate_test(cfg, selected, run.data, rotations=["none"])["none"]
    assert results["none"].copies == expect.copies
    assert json.loads((tmp_path / "results.json").read_text())["protocols"]["none"]["copies"] == (
        expect.copies
    )


def test_apply_schedule_sets_lr_and_bn_momentum():
    from pointlib.engine.config import SchedConfig

    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    s = SchedConfig(step_size=2, gamma=0.5, bn_momentum=[0.1, 0.5, 2, 0.01])
    lr = apply_schedule(opt, model, s, 1.0, 4, 10)
    assert lr == 0.25 and opt.param_groups[0]["lr"] == 0.25
    assert model[1].momentum == pytest.approx(0.025)


def test_protocol_options_checks_part_segmentation_inputs():
    with pytest.raises(ValueError, match="seg_classes and num_parts"):
        ProtocolOptions("partseg", "none", 1, 0, "z", 2).meters(1)


def test_evaluate_protocol_copies_follow_the_options():
    cfg = toy_config()
    data = toy_bundle(cfg)
    from _toy import toy_invariant_cls

    model = toy_invariant_cls(num_points=32)
    loader = make_loader(data.test, eval_batches(len(data.test), 8, _dist()))
    opts = ProtocolOptions("cls", "so3", 3, seed=0, up_axis="z", num_classes=3)
    res = evaluate_protocol(model, loader, opts)
    assert len(res.copies) == 3 and res.num_samples == len(data.test)
    assert res.invariance_error < 1e-4  # the toy model is invariant
    none = evaluate_protocol(model, loader, ProtocolOptions("cls", "none", 3, 0, "z", 3))
    assert len(none.copies) == 1 and math.isnan(none.invariance_error)


def _dist():
    from pointlib.engine.distributed import DistInfo

    return DistInfo()
