"""Output files: strictly valid JSON and umask-honouring atomic writes.

``json.dumps`` writes ``NaN`` / ``Infinity`` for non-finite floats, which jq, JavaScript and most
JSON parsers reject. :func:`dumps_json` writes ``null`` for them instead (a metric that does not
exist, e.g. the invariance error of a single copy), and refuses nothing else.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from pointlib.io._atomic import atomic_write_bytes, atomic_write_text, current_umask

__all__ = ["atomic_write_bytes", "atomic_write_text", "dumps_json", "finite", "honour_umask"]


def finite(obj: Any) -> Any:
    """``obj`` with every non-finite float (NaN, ±inf) replaced by None, recursively (dicts,
    lists, tuples; tensors and numpy scalars become Python numbers)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite(v) for v in obj]
    item = getattr(obj, "item", None)
    if callable(item) and getattr(obj, "ndim", 1) == 0:
        return finite(item())
    return obj


def dumps_json(obj: Any, *, indent: int | None = 2, default: Any = str) -> str:
    """Strict JSON text of ``obj`` (non-finite floats written as ``null``), newline-terminated."""
    return json.dumps(finite(obj), indent=indent, allow_nan=False, default=default) + "\n"


def honour_umask(path: str | os.PathLike[str]) -> None:
    """Give a file written by a writer that ignores the umask (``mkstemp``: ``0600``) the mode
    ``0666 & ~umask``. For files finished before this call (checkpoints)."""
    p = Path(path)
    if p.is_file():
        os.chmod(p, 0o666 & ~current_umask())
