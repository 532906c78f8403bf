"""Every shipped config validates; every small (mini / synthetic) config runs train -> eval ->
robustness through the CLI, shrunk by ``--set`` overrides so the check stays fast."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pointlib.cli import main
from pointlib.datasets import DATASETS
from pointlib.engine.config import load_config
from pointlib.models import is_model

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))
SMALL = [p for p in CONFIGS if "mini" in p.stem or "synthetic" in p.stem]
SHRINK = [
    "data.num_points=64",
    "data.max_train_samples=20",
    "data.max_test_samples=8",
    "data.batch_size=4",
    "data.eval_batch_size=8",
    "train.epochs=1",
    "train.progress=false",
    "train.tensorboard=false",
    "eval.num_rotations=1",
    "eval.angle_sweep=false",
]


def test_configs_are_shipped():
    assert len(CONFIGS) >= 8 and len(SMALL) >= 4
    stems = {p.stem for p in CONFIGS}
    for recipe in ("modelnet40", "scanobjectnn", "shapenetpart", "fg3d_airplane"):
        assert f"risurconv_{recipe}" in stems


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_validates(path, monkeypatch, tmp_path):
    monkeypatch.setenv("POINTLIB_DATA_ROOT", str(tmp_path))
    cfg = load_config(path)
    assert is_model(cfg.model.name), cfg.model.name
    assert cfg.data.name in DATASETS, cfg.data.name


def test_synthetic_configs_need_no_data():
    synthetic = [p for p in SMALL if "synthetic" in p.stem]
    assert synthetic and all(load_config(p).data.name == "synthetic" for p in synthetic)


@pytest.mark.parametrize("path", SMALL, ids=lambda p: p.stem)
def test_small_config_train_eval_robustness(path, request, monkeypatch, tmp_path):
    if "synthetic" in path.stem:  # generated data: runs everywhere, never skipped
        monkeypatch.setenv("POINTLIB_DATA_ROOT", str(tmp_path / "no-data"))
    else:  # the real-data minis (skips when they are absent)
        monkeypatch.setenv("POINTLIB_DATA_ROOT", str(request.getfixturevalue("shared_data")))
    monkeypatch.setenv("POINTLIB_CACHE", str(tmp_path / "cache"))
    sets = [a for s in SHRINK for a in ("--set", s)]
    if "synthetic" in path.stem:
        sets += ["--set", "data.kwargs.samples_per_class=2"]
    run = tmp_path / "run"
    assert main(["train", "--config", str(path), *sets, "--out", str(run)]) == 0
    assert (run / "best.pt").is_file() and (run / "config.resolved.yaml").is_file()
    out = tmp_path / "eval"
    assert main(["eval", "--checkpoint", str(run / "best.pt"), "--rotation", "so3",
                 "-R", "1", "--out", str(out)]) == 0  # fmt: skip
    rob = tmp_path / "rob"
    assert main(["robustness", "--config", str(path), *sets,
                 "--set", "robustness.train_rotations=[z]", "--out", str(rob)]) == 0  # fmt: skip
    table = json.loads(next(rob.rglob("robustness.json")).read_text())
    assert table, "empty robustness table"
