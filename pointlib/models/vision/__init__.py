"""2D vision backbones built on the shared attention core (:mod:`pointlib.attention`).

Importing this package registers every backbone with :func:`pointlib.models.create_model`.
Each family has its smallest published variant and a small ``*_test_tiny`` variant for tests.
See ``docs/backbones.md`` for parameter counts and how each token mixer maps onto the core.
"""

from __future__ import annotations

from pointlib.models.vision import (  # noqa: F401
    biformer,
    convit,
    crossvit,
    davit,
    dhvt,
    halonet,
    inline,
    l2vit,
    nat,
    shvit,
    transnext,
    volo,
)

#: the small registered variants the tests run (forward, backward, gradient reach)
TEST_MODELS: tuple[str, ...] = (
    "biformer_test_tiny",
    "convit_test_tiny",
    "crossvit_test_tiny",
    "davit_test_tiny",
    "dhvt_test_tiny",
    "halonet_test_tiny",
    "inline_test_tiny",
    "l2vit_test_tiny",
    "nat_test_tiny",
    "rala_test_tiny",
    "shvit_test_tiny",
    "transnext_test_tiny",
    "volo_test_tiny",
)

__all__ = ["TEST_MODELS"]
