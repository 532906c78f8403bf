"""Probe the optional compiled extension ``pointlib._C`` once.

Import never fails because of the extension, unless ``POINTLIB_REQUIRE_EXT=1``: then a missing or
unloadable ``pointlib._C`` raises ``ImportError`` with the reason and the build command (for GPU
jobs, which must fail rather than silently run the ``torch`` fallback). Otherwise the reason is
logged on the ``pointlib._ext`` logger: at INFO when the extension was never built, at WARNING
when it exists but does not load (e.g. undefined symbols after a torch upgrade).

Flags are module attributes read at call time, so tests can monkeypatch them.

* ``HAS_EXT``: the module imported and registered ``torch.ops.pointlib``.
* ``HAS_CPU_EXT`` / ``HAS_CUDA_EXT``: which kernels it was compiled with (from ``build_info``).
* ``IMPORT_ERROR``: why it is unavailable (``None`` when it loaded).
"""

from __future__ import annotations

import logging
import os
import warnings

import torch

BUILD_HINT = (
    "build it with `POINTLIB_BUILD_EXT={mode} pip install --no-build-isolation -e .` "
    "from the pointlib source tree (see cuda_ext/README.md)"
)

HAS_EXT = False
HAS_CPU_EXT = False
HAS_CUDA_EXT = False
BUILD_INFO = ""
IMPORT_ERROR: BaseException | None = None

log = logging.getLogger(__name__)

try:
    from pointlib import _C  # noqa: F401  (registers torch.ops.pointlib.*)

    BUILD_INFO = str(torch.ops.pointlib.build_info())
    HAS_EXT = True
    HAS_CPU_EXT = "cpu" in BUILD_INFO.split(";")[0]
    HAS_CUDA_EXT = "cuda=" in BUILD_INFO and "cuda=none" not in BUILD_INFO
    ext_cuda = BUILD_INFO.split("cuda=")[-1].split(";")[0] if HAS_CUDA_EXT else None
    if (
        HAS_CUDA_EXT
        and torch.version.cuda
        and ext_cuda
        and ext_cuda.split(".")[0] != str(torch.version.cuda).split(".")[0]
    ):
        warnings.warn(
            f"pointlib._C was built for CUDA {ext_cuda} but torch uses CUDA {torch.version.cuda}; "
            "its CUDA kernels are disabled. Rebuild the extension against this torch.",
            RuntimeWarning,
            stacklevel=2,
        )
        HAS_CUDA_EXT = False
except Exception as exc:  # ImportError, undefined symbols after a torch upgrade, ...
    IMPORT_ERROR = exc


def _report_missing(exc: BaseException) -> None:
    """Raise (``POINTLIB_REQUIRE_EXT=1``) or log why ``pointlib._C`` is unavailable."""
    why = f"pointlib._C could not be loaded ({type(exc).__name__}: {exc})"
    hint = BUILD_HINT.format(mode="auto")
    if os.environ.get("POINTLIB_REQUIRE_EXT") == "1":
        raise ImportError(f"POINTLIB_REQUIRE_EXT=1 but {why}; {hint}") from exc
    never_built = isinstance(exc, ModuleNotFoundError) and exc.name == "pointlib._C"
    level = logging.INFO if never_built else logging.WARNING
    log.log(level, "%s; the compiled cpu/cuda backends are unavailable and ops use the torch "
            "reference (%s)", why, hint)  # fmt: skip


if IMPORT_ERROR is not None:
    _report_missing(IMPORT_ERROR)


def describe() -> str:
    """One line saying what the extension provides, or why it is missing."""
    if HAS_EXT:
        return f"pointlib._C loaded ({BUILD_INFO})"
    return f"pointlib._C not available ({IMPORT_ERROR!r})"
