"""Model zoo and registry.

>>> from pointlib.models import create_model, list_models
>>> list_models("risurconv*")  # doctest: +SKIP
"""

from __future__ import annotations

from pointlib.models._registry import create_model, is_model, list_models, register_model
from pointlib.models import point_nat  # noqa: F401  (registers point_nat_cls*)
from pointlib.models import vision  # noqa: F401  (registers the 2D backbones)
from pointlib.models.timm_weights import load_timm_weights  # noqa: F401
from pointlib.models import pointnet2, riconv2, risurconv  # noqa: F401  (register the point models)

__all__ = ["create_model", "is_model", "list_models", "register_model"]
