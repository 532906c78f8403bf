"""Model zoo and registry.

>>> from pointlib.models import create_model, list_models
>>> list_models("risurconv*")  # doctest: +SKIP
"""

from __future__ import annotations

from pointlib.models._registry import create_model, is_model, list_models, register_model

__all__ = ["create_model", "is_model", "list_models", "register_model"]
