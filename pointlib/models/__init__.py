"""Model zoo and registry.

>>> from pointlib.models import create_model, list_models
>>> list_models("risurconv*")  # doctest: +SKIP
"""

from __future__ import annotations

from pointlib.models import (  # noqa: F401  (each module registers its models)
    dgcnn,
    point_nat,
    pointnet2,
    riconv2,
    risurconv,
    vision,
)
from pointlib.models._registry import create_model, is_model, list_models, register_model
from pointlib.models.timm_weights import load_timm_weights

__all__ = ["create_model", "is_model", "list_models", "load_timm_weights", "register_model"]
