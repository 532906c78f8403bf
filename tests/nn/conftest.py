"""Fixtures for the layer tests."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _single_thread():
    """Small layers are dominated by per-op overhead; one intra-op thread avoids OpenMP
    contention on loaded CI machines."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
