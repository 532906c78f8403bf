"""pointlib demo [--out DIR] [--overwrite] [--quick] [--epochs E] [--points N] ...

Trains a small fixed-mode RISurConv and a non-invariant PointNet++ baseline on the embedded
SyntheticShapes set (CPU, about a minute), prints the rotation-robustness table and writes
robustness.csv / .md / .json, angle_sweep.png, predictions.png (SO(3)-rotated test clouds
coloured by each model's prediction), demo.json and one run folder per model into --out
(default ./pointlib-demo). A folder that already holds demo results is not replaced unless
--overwrite is given.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from pointlib.cli._common import make_parser


def build_parser() -> argparse.ArgumentParser:
    from pointlib.engine.demo import DemoSettings

    d = DemoSettings()
    p = make_parser("pointlib demo", __doc__ or "")
    p.add_argument(
        "--out",
        "-o",
        type=Path,
        default=Path("pointlib-demo"),
        help="output folder (default ./pointlib-demo)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the results of an earlier demo in --out",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="tiny sizes (a smoke test, seconds; the numbers mean nothing)",
    )
    p.add_argument(
        "--epochs", type=int, default=None, help=f"epochs per training (default {d.epochs})"
    )
    p.add_argument(
        "--points", type=int, default=None, help=f"points per cloud (default {d.num_points})"
    )
    p.add_argument(
        "--train-per-class",
        type=int,
        default=None,
        help=f"training shapes per class (default {d.train_per_class})",
    )
    p.add_argument(
        "--test-per-class",
        type=int,
        default=None,
        help=f"test shapes per class (default {d.test_per_class})",
    )
    p.add_argument(
        "--num-rotations",
        "-R",
        type=int,
        default=None,
        help=f"rotated copies of the test set (default {d.num_rotations})",
    )
    p.add_argument(
        "--no-so3-train",
        action="store_true",
        help="skip the SO3-augmented trainings (no SO3/SO3 column; faster)",
    )
    p.add_argument(
        "--seed", type=int, default=None, help=f"data and training seed (default {d.seed})"
    )
    p.add_argument(
        "--cache-dir",
        default=None,
        help="where SyntheticShapes is generated (default: pointlib's cache, $POINTLIB_CACHE)",
    )
    p.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress output (bars on a terminal, periodic lines otherwise)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from pointlib.engine.config import ConfigError
    from pointlib.engine.demo import DemoSettings, previous_results, run_demo

    s = DemoSettings.quick() if args.quick else DemoSettings()
    for attr, val in (
        ("epochs", args.epochs),
        ("num_points", args.points),
        ("train_per_class", args.train_per_class),
        ("test_per_class", args.test_per_class),
        ("num_rotations", args.num_rotations),
        ("seed", args.seed),
        ("cache_dir", args.cache_dir),
    ):
        if val is not None:
            if isinstance(val, int) and val < (0 if attr == "seed" else 1):
                raise ConfigError(f"--{attr.replace('_', '-')} must be >= 1, got {val}")
            setattr(s, attr, val)
    if args.no_so3_train:
        s.so3_train = False
    existing = previous_results(args.out)
    if existing and not args.overwrite:
        raise FileExistsError(
            f"{args.out} already holds demo results ({', '.join(existing[:3])}); "
            "pass --overwrite to replace them, or --out another folder"
        )
    result = run_demo(args.out, s, progress=not args.no_progress)
    print()
    print(result["table"])
    print()
    print(f"demo finished in {result['wall_s']:.0f} s; wrote into {args.out}:")
    for f in result["files"]:
        print(f"  {f}")
    return 0
