"""Build script for pointlib's optional compiled extension ``pointlib._C``.

Metadata lives in ``pyproject.toml``; this file only decides which extension to build.

``POINTLIB_BUILD_EXT`` selects the mode:

* ``auto`` (default): CUDA kernels when torch is a CUDA build, ``CUDA_HOME`` exists and either a GPU
  is visible or ``TORCH_CUDA_ARCH_LIST`` is set; otherwise the C++ CPU kernels. A failed compile is
  reported and the install goes on without the extension (the pure-torch backend still works).
* ``none``: pure-Python install.
* ``cpu`` / ``cuda``: build exactly that; a failure fails the install.

Build against the installed torch: ``pip install --no-build-isolation -e .``
"""

from __future__ import annotations

import glob
import os
import sys

from setuptools import setup

MODES = ("auto", "none", "cpu", "cuda")


def _log(msg: str) -> None:
    print(f"[pointlib setup] {msg}", file=sys.stderr)


def _extension_config():
    mode = os.environ.get("POINTLIB_BUILD_EXT", "auto").strip().lower()
    if mode not in MODES:
        raise SystemExit(f"POINTLIB_BUILD_EXT={mode!r}: expected one of {', '.join(MODES)}")
    if mode == "none":
        _log("POINTLIB_BUILD_EXT=none: building WITHOUT the compiled extension")
        return [], {}
    try:
        import torch
        from torch.utils.cpp_extension import (
            CUDA_HOME,
            BuildExtension,
            CppExtension,
            CUDAExtension,
        )
    except ImportError as exc:  # torch missing: only fatal when a build was requested explicitly
        if mode == "auto":
            _log(f"torch is not importable ({exc}); building WITHOUT the compiled extension")
            return [], {}
        raise SystemExit(
            f"POINTLIB_BUILD_EXT={mode} needs torch installed first and `--no-build-isolation`"
        ) from exc

    root = os.path.dirname(os.path.abspath(__file__))
    rel = lambda pattern: sorted(  # noqa: E731
        os.path.relpath(p, root) for p in glob.glob(os.path.join(root, pattern))
    )
    common = rel("cuda_ext/*.cpp")
    cpu_sources = rel("cuda_ext/cpu/*.cpp")
    cuda_sources = rel("cuda_ext/cuda/*.cu")
    if not common:
        if mode != "auto":
            raise SystemExit("no extension sources found under cuda_ext/")
        return [], {}

    want_cuda = mode == "cuda" or (
        mode == "auto"
        and torch.version.cuda is not None
        and CUDA_HOME is not None
        and (torch.cuda.is_available() or bool(os.environ.get("TORCH_CUDA_ARCH_LIST")))
    )
    cxx_flags = ["-O3", "-std=c++20"]
    link_args: list[str] = []
    # torch's CPU builds implement at::parallel_for with OpenMP *inline in the headers*: without
    # -fopenmp the pragmas are ignored and every kernel silently runs on one thread.
    if torch.backends.openmp.is_available() and sys.platform != "darwin":
        cxx_flags.append("-fopenmp")
        link_args.append("-fopenmp")
    define_macros = []
    if want_cuda:
        if torch.version.cuda is None or CUDA_HOME is None:
            raise SystemExit(
                "POINTLIB_BUILD_EXT=cuda needs a CUDA build of torch and CUDA_HOME "
                f"(torch.version.cuda={torch.version.cuda}, CUDA_HOME={CUDA_HOME})"
            )
        define_macros.append(("WITH_CUDA", None))
        ext = CUDAExtension(
            "pointlib._C",
            common + cpu_sources + cuda_sources,
            include_dirs=[os.path.join(root, "cuda_ext")],
            define_macros=define_macros,
            # --fmad=false: distances must round exactly like the reference (no FMA contraction).
            extra_compile_args={
                "cxx": [*cxx_flags, "-ffp-contract=off"],
                "nvcc": ["-O3", "--fmad=false", "-std=c++20"],
            },
            extra_link_args=link_args,
        )
        _log("building pointlib._C with CPU and CUDA kernels")
    else:
        ext = CppExtension(
            "pointlib._C",
            common + cpu_sources,
            include_dirs=[os.path.join(root, "cuda_ext")],
            define_macros=define_macros,
            extra_compile_args={"cxx": [*cxx_flags, "-ffp-contract=off"]},
            extra_link_args=link_args,
        )
        _log("building pointlib._C with CPU kernels (no CUDA)")

    class _BuildExt(BuildExtension):
        """In ``auto`` mode a failed compile must not fail the install."""

        def run(self):
            try:
                super().run()
            except Exception as exc:
                if mode != "auto":
                    raise
                _log(f"extension build FAILED ({exc}); installing without it")

    return [ext], {"build_ext": _BuildExt.with_options(use_ninja=True)}


ext_modules, cmdclass = _extension_config()
setup(ext_modules=ext_modules, cmdclass=cmdclass)
