"""The runnable snippet of docs/features.md and the docstring examples stay correct."""

from __future__ import annotations

import doctest
import re

import pytest
import torch

import pointlib
import pointlib.features.lra
import pointlib.features.ordering
import pointlib.features.riconv2
import pointlib.features.risp
from pointlib.testing import REPO_ROOT


def test_docs_snippet_runs():
    text = (REPO_ROOT / "docs" / "features.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert blocks, "docs/features.md lost its example"
    for block in blocks:
        exec(compile(block, "docs/features.md", "exec"), {})


@pytest.mark.parametrize(
    "module",
    [
        pointlib.features.ordering,
        pointlib.features.risp,
        pointlib.features.riconv2,
        pointlib.features.lra,
    ],
)
def test_docstring_examples(module):
    res = doctest.testmod(module, extraglobs={"torch": torch, "pointlib": pointlib})
    assert res.failed == 0 and res.attempted > 0
