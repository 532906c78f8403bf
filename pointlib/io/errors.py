"""The error raised for unreadable files."""

from __future__ import annotations

import os
from pathlib import Path


class FileFormatError(ValueError):
    """A file exists but is corrupt, truncated or not in the format its suffix claims.

    Subclasses ``ValueError``; the message always starts with the offending path, which is also
    available as ``.path``.
    """

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")
