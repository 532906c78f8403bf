"""Progress reporting that suits where the output goes.

On a terminal, :func:`progress` is a tqdm bar. When stderr is a pipe or a file (CI, ``nohup``,
cluster jobs) a bar would write a line per update, so it becomes a plain reporter instead: one
line every ``POINTLIB_PROGRESS_EVERY`` seconds (default 30) and, when it printed any, a closing
one, e.g. ``epoch 3/12: 40/51 (78%), 31.2 s, loss=0.412``. Loops shorter than the interval print
nothing (the trainer's per-epoch summary line still appears).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

__all__ = ["PlainProgress", "is_terminal", "progress", "progress_write"]


def is_terminal(stream: TextIO | None = None) -> bool:
    """True when ``stream`` (default ``sys.stderr``) is an interactive terminal."""
    stream = stream if stream is not None else sys.stderr
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _interval() -> float:
    try:
        return max(float(os.environ.get("POINTLIB_PROGRESS_EVERY", "30")), 0.0)
    except ValueError:
        return 30.0


class PlainProgress:
    """A tqdm-compatible subset (iteration, ``set_postfix``, ``update``, ``close``) that prints
    plain periodic lines to ``stream``."""

    def __init__(
        self,
        iterable: Iterable[Any] | None = None,
        *,
        desc: str = "",
        total: int | None = None,
        initial: int = 0,
        every: float | None = None,
        stream: TextIO | None = None,
    ) -> None:
        self.iterable = iterable
        self.desc = desc
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.total = total
        self.n = int(initial)
        self.every = _interval() if every is None else float(every)
        self.stream = stream
        self.postfix = ""
        self.start = time.monotonic()
        self.last = self.start
        self.closed = False
        self.lines = 0

    def _emit(self, what: str = "") -> None:
        stream = self.stream if self.stream is not None else sys.stderr
        if self.total:
            count = f"{self.n}/{self.total} ({100 * self.n / self.total:.0f}%)"
        else:
            count = str(self.n)
        parts = [f"{self.desc}: {count}" if self.desc else count]
        parts.append(f"{time.monotonic() - self.start:.1f} s")
        if self.postfix:
            parts.append(self.postfix)
        if what:
            parts.append(what)
        print(", ".join(parts), file=stream, flush=True)
        self.lines += 1

    def set_postfix(self, **kwargs: Any) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in kwargs.items())

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self.last >= self.every and not (self.total and self.n >= self.total):
            self.last = now
            self._emit()

    def __iter__(self) -> Iterator[Any]:
        assert self.iterable is not None
        for x in self.iterable:
            yield x
            self.update()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.lines:
                self._emit("done")


def progress(
    iterable: Iterable[Any] | None = None,
    *,
    desc: str = "",
    total: int | None = None,
    initial: int = 0,
    disable: bool = False,
    leave: bool = False,
) -> Any:
    """A progress wrapper: tqdm on a terminal, :class:`PlainProgress` otherwise, a silent
    (disabled) tqdm when ``disable``."""
    from tqdm.auto import tqdm

    if disable or is_terminal():
        return tqdm(iterable, desc=desc, total=total, initial=initial, disable=disable, leave=leave)
    return PlainProgress(iterable, desc=desc, total=total, initial=initial)


def progress_write(message: str) -> None:
    """Print a line to stdout without breaking a live bar (``tqdm.write`` on a terminal)."""
    if is_terminal():
        from tqdm.auto import tqdm

        tqdm.write(message)
    else:
        print(message, flush=True)
