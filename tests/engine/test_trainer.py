"""Training loop: run folder contents, val split, exact mid-epoch resumption, schedules."""

from __future__ import annotations

import csv
import json

import pytest
import torch
import yaml
from _toy import toy_bundle, toy_config

from pointlib.engine.checkpoint import load_checkpoint, model_from_checkpoint
from pointlib.engine.config import SchedConfig
from pointlib.engine.trainer import bn_momentum_at, lr_at, train


def test_train_writes_run_folder(tmp_path):
    cfg = toy_config(train={"tensorboard": True})
    res = train(cfg, tmp_path, data=toy_bundle(cfg))
    assert res.completed and res.epochs_done == 2
    for name in (
        "config.resolved.yaml",
        "run_info.json",
        "metrics.csv",
        "best.pt",
        "last.pt",
        "results.json",
        "confusion_none.png",
        "confusion_so3.png",
    ):
        assert (tmp_path / name).is_file(), name
    assert list((tmp_path / "tb").iterdir())
    resolved = yaml.safe_load((tmp_path / "config.resolved.yaml").read_text())
    assert resolved["train"]["epochs"] == 2 and resolved["model"]["name"] == "toy_cls"
    info = json.loads((tmp_path / "run_info.json").read_text())
    assert info["seed"] == 3 and info["versions"]["torch"] == torch.__version__
    assert "git_revision" in info and info["samples"] == {"train": 36, "val": 12, "test": 24}
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert float(rows[0]["lr"]) == 1e-3 and float(rows[1]["lr"]) == 5e-4
    results = json.loads((tmp_path / "results.json").read_text())["protocols"]
    assert set(results) == {"none", "z", "so3"}
    assert results["none"]["num_rotations"] == 1 and results["so3"]["num_rotations"] == 2
    assert results["so3"]["invariance_error"] > 0  # toy_cls is not invariant
    # best.pt rebuilds its model from the saved name + kwargs
    model = model_from_checkpoint(tmp_path / "best.pt")
    assert type(model).__name__ == "ToyCls" and model.head[-1].out_features == 3


def test_val_split_is_seeded_and_disjoint():
    cfg = toy_config()
    a, b = toy_bundle(cfg), toy_bundle(cfg)
    assert a.val.indices == b.val.indices
    assert not set(a.val.indices) & set(a.train.indices)
    assert sorted(a.val.indices + a.train.indices) == list(range(48))
    other = toy_bundle(toy_config(train={"seed": 4}))
    assert other.val.indices != a.val.indices


def _states_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.parametrize("stop_at", [6])  # mid-way through the 2nd epoch (4 steps each)
def test_resume_mid_epoch_gives_identical_weights(tmp_path, stop_at):
    cfg = toy_config(train={"epochs": 3})
    full = train(cfg, tmp_path / "full", data=toy_bundle(cfg), run_test=False)
    assert full.global_step == 12

    stop = toy_config(train={"epochs": 3, "max_steps": stop_at})
    part = train(stop, tmp_path / "part", data=toy_bundle(stop), run_test=False)
    assert not part.completed and part.global_step == stop_at
    ck = load_checkpoint(tmp_path / "part" / "last.pt")
    assert (ck["epoch"], ck["step_in_epoch"]) == divmod(stop_at, 4)
    with pytest.raises(AssertionError):
        _states_equal(part.model.state_dict(), full.model.state_dict())

    resumed = train(cfg, tmp_path / "part", data=toy_bundle(cfg), resume=ck["path"])
    assert resumed.completed and resumed.global_step == 12
    _states_equal(resumed.model.state_dict(), full.model.state_dict())
    assert [r["train_loss"] for r in resumed.history] == [r["train_loss"] for r in full.history]


def test_resume_rejects_other_model(tmp_path):
    cfg = toy_config(train={"max_steps": 1})
    train(cfg, tmp_path, data=toy_bundle(cfg))
    other = toy_config(model={"name": "toy_invariant_cls"})
    with pytest.raises(ValueError, match="holds 'toy_cls'"):
        train(other, tmp_path, data=toy_bundle(other), resume=tmp_path / "last.pt")


def test_partseg_training_reports_miou(tmp_path, toy):
    from pointlib.engine.data import bundle_from_datasets

    cfg = toy_config(
        task="partseg",
        model={"name": "toy_partseg"},
        augment={"rotation": "none"},
        eval={"rotations": ["none", "so3"]},
    )
    data = bundle_from_datasets(cfg, toy.ToyParts(16), toy.ToyParts(8, seed=1))
    assert data.seg_classes == [[0, 1], [2, 3]] and data.num_parts == 4
    res = train(cfg, tmp_path, data=data)
    m = res.test["none"].copies[0]
    assert 0 <= m["instance_miou"] <= 1 and 0 <= m["class_miou"] <= 1
    assert "train_instance_miou" in res.history[-1] and "val_instance_miou" in res.history[-1]


def test_lr_schedule_matches_recipes():
    mn = SchedConfig(step_size=20, gamma=0.7, restarts=[[301, 1e-3]])
    for e in (0, 19, 20, 299, 300):
        assert lr_at(mn, 1e-3, e, 450) == pytest.approx(1e-3 * 0.7 ** (e // 20))
    for e in (301, 319, 320, 449):
        assert lr_at(mn, 1e-3, e, 450) == pytest.approx(1e-3 * 0.7 ** (e // 20 - 15))
    so = SchedConfig(step_size=20, gamma=0.7, offset=1, restarts=[[301, 1e-3]])
    assert lr_at(so, 1e-3, 19, 450) == pytest.approx(7e-4)
    assert lr_at(so, 1e-3, 301, 450) == pytest.approx(1e-3)
    assert lr_at(so, 1e-3, 318, 450) == pytest.approx(1e-3)
    assert lr_at(so, 1e-3, 319, 450) == pytest.approx(7e-4)
    fg = SchedConfig(step_size=20, gamma=0.7, restarts=[[301, 1e-3], [601, 8e-4]])
    assert lr_at(fg, 1e-3, 620, 900) == pytest.approx(8e-4 * 0.7)
    sp = SchedConfig(step_size=20, gamma=0.5, min_lr=1e-5, bn_momentum=[0.1, 0.5, 20, 0.01])
    assert lr_at(sp, 1e-3, 249, 250) == pytest.approx(max(1e-3 * 0.5**12, 1e-5))
    assert bn_momentum_at(sp, 45) == pytest.approx(0.025)
    assert bn_momentum_at(sp, 200) == pytest.approx(0.01)
    assert bn_momentum_at(SchedConfig(), 3) is None


def test_class_subset_is_relabelled_and_collates():
    from pointlib.engine.data import collate

    cfg = toy_config(data={"classes": ["z-long", "x-long"]})
    data = toy_bundle(cfg)
    assert data.classes == ["z-long", "x-long"] and data.num_classes == 2
    items = [data.test[i] for i in range(len(data.test))]
    assert len(items) == 16  # 24 test samples, one third of them y-long and dropped
    batch = collate(items)
    assert batch["label"].dtype == torch.int64 and set(batch["label"].tolist()) == {0, 1}
    for it in items:  # z-long (orig label 2) -> 0, x-long (orig 0) -> 1
        assert int(it["label"]) == {2: 0, 0: 1}[int(data.test.base.labels[it["index"]])]
    assert batch["index"].tolist() == [it["index"] for it in items]


class _Interrupting(torch.utils.data.Dataset):
    """Wraps a dataset; raises KeyboardInterrupt (Ctrl-C) on the ``at``-th item fetched."""

    def __init__(self, base, at: int) -> None:
        self.base, self.at, self.fetched = base, at, 0
        self.classes, self.up_axis, self.labels = base.classes, base.up_axis, base.labels

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i):
        self.fetched += 1
        if self.fetched == self.at:
            raise KeyboardInterrupt
        return self.base[i]


def test_ctrl_c_writes_a_resumable_checkpoint(tmp_path, toy):
    from pointlib.engine.data import bundle_from_datasets

    cfg = toy_config(train={"epochs": 2})
    full = train(cfg, tmp_path / "full", data=toy_bundle(cfg), run_test=False)
    # epoch 1 fetches 4 batches of 8 plus 12 val items (44); fetch 67 is the 23rd of epoch 2,
    # i.e. while loading its third batch: steps 0 and 1 of epoch 2 are done
    broken = _Interrupting(toy.ToyShapes(48, seed=0), at=44 + 23)
    data = bundle_from_datasets(cfg, broken, toy.ToyShapes(24, seed=1))
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "part", data=data, run_test=False)
    ck = load_checkpoint(tmp_path / "part" / "last.pt")
    assert (ck["epoch"], ck["step_in_epoch"]) == (1, 2)
    resumed = train(cfg, tmp_path / "part", data=toy_bundle(cfg), resume=ck["path"], run_test=False)
    _states_equal(resumed.model.state_dict(), full.model.state_dict())
