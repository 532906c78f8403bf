"""pointlib bench [--ops-only | --models-only] [--quick] [-- ARGS...]

Runs benchmarks/bench_ops.py and benchmarks/bench_models.py of a source checkout and prints
their tables. Arguments after -- are passed to both scripts."""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from pointlib.cli._common import make_parser


def benchmarks_dir() -> Path:
    """The ``benchmarks/`` folder of the checkout pointlib was installed from (editable)."""
    import pointlib

    return Path(pointlib.__file__).resolve().parents[1] / "benchmarks"


def build_parser() -> argparse.ArgumentParser:
    p = make_parser("pointlib bench", __doc__ or "")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--ops-only", action="store_true", help="only bench_ops.py (kNN, FPS, ...)")
    g.add_argument("--models-only", action="store_true", help="only bench_models.py")
    p.add_argument("--quick", action="store_true", help="pass --quick to the scripts")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(argv or [])
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1 :]
    args = build_parser().parse_args(argv)
    if args.quick:
        extra = ["--quick", *extra]
    names = ["bench_ops.py", "bench_models.py"]
    if args.ops_only:
        names = names[:1]
    elif args.models_only:
        names = names[1:]
    root = benchmarks_dir()
    scripts = [root / n for n in names]
    missing = [str(s) for s in scripts if not s.is_file()]
    if missing:
        raise FileNotFoundError(
            f"benchmark scripts not found: {', '.join(missing)} (pointlib bench needs a source "
            "checkout installed with `pip install -e .`)"
        )
    status = 0
    for script in scripts:
        print(f"== {script.name} ==", flush=True)
        rc = subprocess.run([sys.executable, str(script), *extra], cwd=root.parent).returncode
        if rc != 0:
            print(f"{script.name} exited with status {rc}", file=sys.stderr)
            status = rc
    return status
