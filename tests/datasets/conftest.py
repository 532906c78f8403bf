"""Tiny generated fixtures in the official layouts (written to tmp_path, never committed)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from _layouts import (
    write_modelnet_txt,
    write_shapenetpart,
)


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def modelnet_txt(tmp_path: Path) -> Path:
    return write_modelnet_txt(tmp_path / "modelnet40_normal_resampled")


@pytest.fixture
def shapenetpart_root(tmp_path: Path) -> Path:
    return write_shapenetpart(tmp_path / "shapenetcore_partanno_segmentation_benchmark_v0_normal")
