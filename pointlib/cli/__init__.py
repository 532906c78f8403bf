"""The ``pointlib`` command line (also ``python -m pointlib``).

Subcommands::

    pointlib demo       [--out DIR] [--quick] [--overwrite] [--epochs E] ...
    pointlib train      --config configs/<model>_<dataset>.yaml [--set a.b=c ...] [--out DIR]
    pointlib eval       --checkpoint DIR/best.pt [--rotation none|z|so3] [--num-rotations R]
    pointlib robustness --config ... [--set ...] [--out DIR] [--sweep]
    pointlib predict    --checkpoint DIR/best.pt FILE... [--rotations R] [--format csv|json]
    pointlib bench      [--ops-only | --models-only] [-- extra args]
    pointlib models     [PATTERN] [--task cls|partseg|image]

Every subcommand is a function ``main(argv) -> int`` in its module, callable in-process. Errors
the user can fix (bad config key or option, missing checkpoint, file or dataset, CUDA asked for
but not available) print one line on stderr and exit with 2.
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
    "predict": "classify or part-segment your own point-cloud / mesh files with a checkpoint",
    "bench": "run the op and model benchmarks and print their tables",
    "models": "list registered models (name, task, parameters, input)",
}


def _load(name: str) -> Callable[[Sequence[str] | None], int]:
    import importlib

    module = {"eval": "evaluate"}.get(name, name)
    return importlib.import_module(f"pointlib.cli.{module}").main


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pointlib`` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    width = max(len(k) for k in _COMMANDS)
    listing = "\n".join(f"  {k.ljust(width)}  {v}" for k, v in _COMMANDS.items())
    parser = argparse.ArgumentParser(
        prog="pointlib",
        description="Rotation-invariant point-cloud learning: train, evaluate, robustness, "
        "predict, demo.",
        epilog=f"commands:\n{listing}\n\nRun `pointlib <command> --help` for its options; "
        "`pointlib --version` prints the version.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "command",
        choices=list(_COMMANDS),
        metavar="command",
        help="one of the commands below",
    )
    parser.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0
    if argv[0] in ("-V", "--version"):
        import pointlib

        print(f"pointlib {pointlib.__version__}")
        return 0
    if argv[0] not in _COMMANDS:
        close = [c for c in _COMMANDS if c.startswith(argv[0][:2])]
        hint = f"; did you mean {close[0]}?" if close else ""
        print(
            f"pointlib: error: unknown command {argv[0]!r}{hint} (commands: "
            f"{', '.join(_COMMANDS)}; see pointlib --help)",
            file=sys.stderr,
        )
        return 2
    _setup_logging()
    return run_command(argv[0], argv[1:])


class _Formatter(logging.Formatter):
    """Info lines as plain text; warnings and errors with their level."""

    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        if record.levelno >= logging.WARNING:
            return f"{record.levelname.lower()}: {msg}"
        return msg


class _StderrHandler(logging.Handler):
    """Writes to the current ``sys.stderr`` (looked up per record, so redirection works)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            print(self.format(record), file=sys.stderr, flush=True)
        except Exception:  # pragma: no cover - logging must never raise
            self.handleError(record)


def _setup_logging() -> None:
    root = logging.getLogger()
    if any(isinstance(h, _StderrHandler) for h in root.handlers):
        return
    handler = _StderrHandler()
    handler.setFormatter(_Formatter())
    root.addHandler(handler)
    root.setLevel(logging.INFO)


def run_command(name: str, argv: Sequence[str]) -> int:
    """Run one subcommand, turning the errors a user can fix into a one-line message + exit 2."""
    from pointlib.engine.checkpoint import CheckpointError
    from pointlib.engine.config import ConfigError

    try:
        return _load(name)(list(argv))
    except SystemExit as e:  # argparse: --help (0) or a usage error, already printed (2)
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    except (ConfigError, CheckpointError, FileNotFoundError, FileExistsError) as e:
        print(f"pointlib {name}: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except ValueError as e:  # bad dataset root / class names / model names / unreadable file
        print(f"pointlib {name}: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except OSError as e:  # permission denied, disk full, ... on a path the user gave
        print(f"pointlib {name}: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except ImportError as e:
        if "pip install" not in str(e):  # a broken installation, not a missing extra
            raise
        print(f"pointlib {name}: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"pointlib {name}: interrupted", file=sys.stderr)
        return 130


def _one_line(e: BaseException) -> str:
    """An exception's message on one line (``KeyError`` quotes and newlines removed)."""
    text = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
    return " ".join(text.split()) or type(e).__name__
