"""pointlib models [PATTERN] [--task cls|partseg|image] [--names]

Lists the registered models as a table (name, task, parameters, input), grouped as point models,
2D image backbones and the small test variants (*_test_tiny). PATTERN is a shell-style pattern
matched case-insensitively (risurconv* ; a word without wildcards matches anywhere in the name).
Parameter counts come from building each model with its default arguments on the meta device
(no memory, no weights): point classifiers have 40 classes, image ones 1000 (10 for the test
variants).
"""

from __future__ import annotations

import argparse
import fnmatch
import inspect
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pointlib.cli._common import lower, make_parser

TASKS = ("cls", "partseg", "image")
GROUPS = ("point", "image", "test")


@dataclass
class ModelInfo:
    """One row of the table."""

    name: str
    group: str  # point | image | test
    task: str  # cls | partseg | image
    parameters: int | None
    input: str


def _count_parameters(name: str) -> tuple[int | None, Any]:
    """Build ``name`` with its big floating tensors on the meta device; ``(count, model)``."""
    import torch
    from torch.overrides import TorchFunctionMode

    from pointlib.models import create_model

    factories = {torch.empty, torch.zeros, torch.ones, torch.randn, torch.rand}

    class _MetaWeights(TorchFunctionMode):
        # Only large floating allocations (weights) go to the meta device; index tables and the
        # small tensors some constructors read back (drop-path schedules) stay real.
        def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
            kwargs = dict(kwargs or {})
            if func in factories and "device" not in kwargs:
                shape = args[0] if len(args) == 1 and not isinstance(args[0], int) else args
                try:
                    n = math.prod(int(s) for s in shape)
                except (TypeError, ValueError):
                    n = 0
                dtype = kwargs.get("dtype")
                if n >= 1024 and (dtype is None or dtype.is_floating_point):
                    kwargs["device"] = "meta"
            return func(*args, **kwargs)

    try:
        with _MetaWeights():
            model = create_model(name)
    except Exception:  # a constructor that reads its weights: build it for real
        try:
            model = create_model(name)
        except Exception:
            return None, None
    return sum(p.numel() for p in model.parameters()), model


def describe(name: str) -> ModelInfo:
    """Group, task, parameter count and input of a registered model."""
    count, model = _count_parameters(name)
    first = ""
    if model is not None:
        params = list(inspect.signature(model.forward).parameters)
        first = params[0] if params else ""
    point = first in ("xyz", "points", "pos") or name.startswith(
        ("risurconv", "riconv", "pointnet", "point_")
    )
    test = name.endswith("_test_tiny")
    if point:
        seg = "partseg" in name or "seg" in first
        task = "partseg" if seg else "cls"
        shape = "xyz (B, N, 3) [+ normals (B, N, 3)]" + (" + category (B,)" if seg else "")
    else:
        task = "image"
        size = getattr(model, "img_size", None) if model is not None else None
        if isinstance(size, list | tuple):
            size = size[0]
        hw = f"{size}, {size}" if isinstance(size, int) else "H, W"
        shape = f"images (B, 3, {hw})"
    group = "test" if test else ("point" if point else "image")
    return ModelInfo(name, group, task, count, shape)


def _params(n: int | None) -> str:
    if n is None:
        return "?"
    if n >= 1_000_000:
        return f"{n / 1e6:.2f} M"
    if n >= 1_000:
        return f"{n / 1e3:.1f} k"
    return str(n)


def _matches(name: str, pattern: str) -> bool:
    pat = pattern.lower()
    if not any(c in pat for c in "*?["):
        pat = f"*{pat}*"
    return fnmatch.fnmatchcase(name.lower(), pat)


def build_parser() -> argparse.ArgumentParser:
    p = make_parser("pointlib models", __doc__ or "")
    p.add_argument(
        "pattern",
        nargs="?",
        default="*",
        help="shell-style name pattern, case-insensitive (default: all)",
    )
    p.add_argument(
        "--task",
        type=lower,
        choices=TASKS,
        default=None,
        help="only point classification (cls), part segmentation (partseg) or image models",
    )
    p.add_argument(
        "--names", action="store_true", help="only the names, one per line (for scripts)"
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from pointlib.models import list_models

    names = [n for n in list_models() if _matches(n, args.pattern)]
    infos = [describe(n) for n in names]
    if args.task:
        infos = [i for i in infos if i.task == args.task]
    if not infos:
        what = f" for --task {args.task}" if args.task else ""
        print(
            f"pointlib models: no registered model matches {args.pattern!r}{what} "
            f"(`pointlib models` lists all {len(list_models())})",
            file=sys.stderr,
        )
        return 1
    if args.names:
        print("\n".join(i.name for i in infos))
        return 0
    head = ("name", "task", "parameters", "input")
    rows = [(i.name, i.task, _params(i.parameters), i.input) for i in infos]
    widths = [max(len(r[c]) for r in [head, *rows]) for c in range(4)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()

    titles = {
        "point": "point-cloud models",
        "image": "2D image backbones",
        "test": "test variants (tiny, for the test suite)",
    }
    blocks = []
    for g in GROUPS:
        grp = [r for r, i in zip(rows, infos) if i.group == g]
        if grp:
            blocks.append(
                "\n".join(
                    [f"{titles[g]} ({len(grp)})", line(head), line(["-" * w for w in widths])]
                    + [line(r) for r in grp]
                )
            )
    print("\n\n".join(blocks))
    return 0
