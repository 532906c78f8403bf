"""The ``pointlib`` command line (also ``python -m pointlib``).

Subcommands::

    pointlib demo       [--out DIR] [--quick] [--epochs E] ...
    pointlib train      --config configs/<model>_<dataset>.yaml [--set a.b=c ...] [--out DIR]
    pointlib eval       --checkpoint DIR/best.pt [--rotation none|z|so3] [--num-rotations R]
    pointlib robustness --config ... [--set ...] [--out DIR] [--sweep]
    pointlib bench      [--ops-only | --models-only] [-- extra args]
    pointlib models     [PATTERN]

Every subcommand is a function ``main(argv) -> int`` in its module, callable in-process. Errors
the user can fix (bad config key, missing checkpoint or dataset) print one line and exit with 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

__all__ = ["main"]

_COMMANDS = {
    "demo": "train RISurConv and a non-invariant baseline on SyntheticShapes; robustness table",
    "train": "train a model from a YAML config",
    "eval": "evaluate a checkpoint under rotation protocols",
    "robustness": "train under z / SO3 augmentation and report the z/z, z/SO3, SO3/SO3 table",
    "bench": "run the op and model benchmarks and print their tables",
    "models": "list registered models",
}


def _load(name: str) -> Callable[[Sequence[str] | None], int]:
    import importlib

    module = {"eval": "evaluate"}.get(name, name)
    return importlib.import_module(f"pointlib.cli.{module}").main


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pointlib`` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="pointlib",
        description="Rotation-invariant point-cloud learning: train, evaluate, robustness, demo.",
        epilog="Run `pointlib <command> --help` for the options of a command.",
    )
    parser.add_argument(
        "command",
        choices=list(_COMMANDS),
        metavar="command",
        help="; ".join(f"{k}: {v}" for k, v in _COMMANDS.items()),
    )
    parser.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0
    if argv[0] in ("-V", "--version"):
        import pointlib

        print(f"pointlib {pointlib.__version__}")
        return 0
    ns = parser.parse_args(argv[:1])
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return run_command(ns.command, argv[1:])


def run_command(name: str, argv: Sequence[str]) -> int:
    """Run one subcommand, turning the errors a user can fix into a one-line message + exit 2."""
    from pointlib.engine.checkpoint import CheckpointError
    from pointlib.engine.config import ConfigError

    try:
        return _load(name)(list(argv))
    except (ConfigError, CheckpointError, FileNotFoundError, FileExistsError) as e:
        print(f"pointlib {name}: error: {e}", file=sys.stderr)
        return 2
    except ValueError as e:  # bad dataset root / class names / model names
        print(f"pointlib {name}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"pointlib {name}: interrupted", file=sys.stderr)
        return 130
