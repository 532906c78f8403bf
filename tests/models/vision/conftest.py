"""Vision-backbone test setup: the torchvision shim timm needs with our CPU torch (tests only)."""

from __future__ import annotations

import sys
import types

# PyPI torchvision is a CUDA build whose fake-kernel registrations fail against the CPU torch;
# timm's model code works once this module is stubbed before timm's first import.
sys.modules.setdefault(
    "torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations")
)
