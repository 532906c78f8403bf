"""Shared fixtures: CUDA auto-skip, the real-data root, seeded generators."""

from __future__ import annotations

import os
import sys
import types

import pytest
import torch

from pointlib.testing import data_root


def pytest_configure(config):
    # Under xdist each worker gets one intra-op thread: two workers on two cores would otherwise
    # oversubscribe the machine (measured ~4x slower model tests).
    if os.environ.get("PYTEST_XDIST_WORKER"):
        torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def shared_data():
    """Path of ../shared/data (or $POINTLIB_DATA_ROOT); skips the test when absent."""
    root = data_root()
    if root is None:
        pytest.skip("real-data minis not found (set POINTLIB_DATA_ROOT)")
    return root


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(0)


def install_torchvision_shim() -> None:
    """PyPI torchvision is a CUDA build whose fake-kernel registrations fail with the CPU torch;
    timm's model code works once this module is stubbed before the first import (tests only)."""
    sys.modules.setdefault(
        "torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations")
    )
