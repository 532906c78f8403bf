"""Engine test fixtures: tiny configs over the in-memory toy datasets of ``_toy``."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import _toy

from pointlib.engine.config import Config, config_from_dict
from pointlib.engine.data import DataBundle, bundle_from_datasets


def toy_config(**sections) -> Config:
    base = {
        "model": {"name": "toy_cls"},
        "data": {"batch_size": 8, "val_fraction": 0.25, "num_points": 32},
        "augment": {"rotation": "z", "scale": [0.8, 1.25], "shift": 0.1, "point_dropout": 0.5},
        "train": {"epochs": 2, "progress": False, "tensorboard": False, "seed": 3},
        "eval": {"num_rotations": 2},
        "sched": {"step_size": 1, "gamma": 0.5},
    }
    for k, v in sections.items():
        if isinstance(v, dict):
            base.setdefault(k, {}).update(v)
        else:
            base[k] = v
    return config_from_dict(base)


def toy_bundle(cfg: Config, size: int = 48) -> DataBundle:
    return bundle_from_datasets(cfg, _toy.ToyShapes(size, seed=0), _toy.ToyShapes(24, seed=1))


@pytest.fixture
def toy():
    return _toy
