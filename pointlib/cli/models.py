"""``pointlib models [PATTERN]``: list registered model names (shell-style pattern)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="pointlib models", description=__doc__)
    p.add_argument("pattern", nargs="?", default="*")
    args = p.parse_args(argv)
    from pointlib.models import list_models

    for name in list_models(args.pattern):
        print(name)
    return 0
