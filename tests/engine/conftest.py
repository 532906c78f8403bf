"""Engine test fixtures: tiny configs over the in-memory toy datasets of ``_toy``."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import _toy


@pytest.fixture
def toy():
    return _toy
