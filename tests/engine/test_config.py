"""Configs: YAML + dotted overrides, strict keys and types, every shipped config loads."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pointlib.engine.config import (
    Config,
    ConfigError,
    config_from_dict,
    config_to_dict,
    load_config,
    parse_override,
    save_config,
)

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))


def test_defaults_and_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("model: {name: pointnet2_cls_ssg_tiny}\ntrain: {epochs: 5}\n")
    cfg = load_config(
        p,
        [
            "train.epochs=2",
            "optim.lr=1e-2",
            "augment.scale=[0.9, 1.1]",
            "model.kwargs.faithful=true",
            "data.root=null",
        ],
    )
    assert cfg.model.name == "pointnet2_cls_ssg_tiny"
    assert cfg.train.epochs == 2 and cfg.optim.lr == 0.01
    assert cfg.augment.scale == [0.9, 1.1] and cfg.model.kwargs == {"faithful": True}
    assert cfg.data.root is None and cfg.data.batch_size == Config().data.batch_size
    assert isinstance(load_config(None, ["optim.lr=1"]).optim.lr, float)  # int -> float


def test_roundtrip_through_yaml(tmp_path):
    cfg = load_config(None, ["train.epochs=7", "sched.restarts=[[301, 0.001]]"])
    save_config(cfg, tmp_path / "r.yaml")
    again = load_config(tmp_path / "r.yaml")
    assert config_to_dict(again) == config_to_dict(cfg)
    assert yaml.safe_load((tmp_path / "r.yaml").read_text())["train"]["epochs"] == 7


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"trian": {}}, "unknown config key trian"),
        ({"train": {"epoch": 3}}, "unknown config key train.epoch"),
        ({"train": {"epochs": "3"}}, "train.epochs: expected an integer"),
        ({"train": {"epochs": True}}, "train.epochs: expected an integer"),
        ({"train": {"amp": "yes"}}, "train.amp: expected true/false"),
        ({"augment": {"rotation": "so2"}}, "augment.rotation: 'so2' is not one of"),
        ({"eval": {"rotations": ["z", "x"]}}, r"eval.rotations\[1\]"),
        ({"data": {"val_fraction": 1.0}}, "val_fraction"),
        ({"sched": {"restarts": [[301]]}}, r"sched.restarts\[0\]"),
        ({"model": []}, "model: expected a mapping"),
    ],
)
def test_invalid_configs_name_the_key(data, match):
    with pytest.raises(ConfigError, match=match):
        config_from_dict(data)


def test_unknown_key_in_file_names_file_and_key(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("data:\n  batch_sise: 4\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: unknown config key data.batch_sise"):
        load_config(p)
    with pytest.raises(ConfigError, match=r"unknown config key optim\.lrr"):
        load_config(None, ["optim.lrr=0.1"])


@pytest.mark.parametrize("text", ["train.epochs", "=3", "train..epochs=3", "a b=1", "x.y=[1,"])
def test_bad_override_syntax(text):
    with pytest.raises(ConfigError, match="bad override"):
        parse_override(text)


def test_missing_file_and_non_mapping(tmp_path):
    with pytest.raises(FileNotFoundError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(tmp_path / "list.yaml")


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_shipped_configs_load(path):
    cfg = load_config(path)
    assert cfg.name == path.stem
    from pointlib.models import is_model

    assert is_model(cfg.model.name)


def test_paper_recipes_are_encoded():
    by = {p.stem: load_config(p) for p in CONFIGS}
    mn = by["risurconv_modelnet40"]
    assert (mn.train.epochs, mn.data.batch_size, mn.optim.weight_decay) == (450, 32, 1e-4)
    assert (mn.sched.step_size, mn.sched.gamma, mn.sched.restarts) == (20, 0.7, [[301, 1e-3]])
    assert mn.augment.point_dropout == 0.875 and mn.augment.scale == [0.8, 1.25]
    so = by["risurconv_scanobjectnn"]
    assert so.sched.offset == 1 and so.data.batch_size == 16 and so.model.kwargs["n"] == 1
    assert so.data.kwargs["variant"] == "PB_T50_RS" and so.augment.shuffle_points
    sp = by["risurconv_shapenetpart"]
    assert sp.task == "partseg" and sp.train.epochs == 250 and sp.sched.min_lr == 1e-5
    assert sp.sched.bn_momentum == [0.1, 0.5, 20, 0.01] and sp.data.num_points == 2048
    fg = by["risurconv_fg3d_airplane"]
    assert fg.train.epochs == 300 and fg.optim.weight_decay == 1e-2
    assert by["risurconv_fg3d_chair"].train.epochs == 900
    assert fg.sched.restarts == [[301, 1e-3], [601, 8e-4]]
