"""Extension probing, backend registration, env overrides and opcheck of the compiled ops."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from ops_helpers import gaussian

import pointlib.ops as ops
from pointlib import _ext


def _run(code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=120,
    )


def test_extension_loaded_or_required():
    if os.environ.get("POINTLIB_REQUIRE_EXT") == "1":
        assert _ext.HAS_EXT, f"POINTLIB_REQUIRE_EXT=1 but {_ext.describe()}"
    if not _ext.HAS_EXT:
        pytest.skip(f"extension not built: {_ext.describe()}")
    assert _ext.HAS_CPU_EXT and "cpu" in ops.available_backends("knn")


def test_import_without_extension_and_clear_error():
    # Make `pointlib._C` unimportable in a fresh interpreter: import must still work.
    code = (
        "import sys; sys.modules['pointlib._C'] = None\n"
        "import torch, pointlib, pointlib.ops as o\n"
        "from pointlib import _ext\n"
        "assert not _ext.HAS_EXT and 'cpu' not in o.available_backends()\n"
        "x = torch.rand(1, 8, 3)\n"
        "print(o.knn(x, 2)[0].shape)\n"
        "try:\n"
        "    o.knn(x, 2, backend='cpu')\n"
        "except o.BackendUnavailableError as e:\n"
        "    print('ERR', e)\n"
    )
    r = _run(code)
    assert r.returncode == 0, r.stderr
    assert "torch.Size([1, 8, 2])" in r.stdout
    assert "ERR backend 'cpu' cannot run knn" in r.stdout
    assert "POINTLIB_BUILD_EXT=cpu pip install --no-build-isolation -e ." in r.stdout


def test_explicit_unavailable_backend_monkeypatched(monkeypatch):
    monkeypatch.setattr(_ext, "HAS_CPU_EXT", False)
    with pytest.raises(ops.BackendUnavailableError, match="POINTLIB_BUILD_EXT=cpu"):
        ops.fps(gaussian(1, 5, 0), 2, backend="cpu")
    assert ops.fps(gaussian(1, 5, 0), 2).shape == (1, 2)  # auto falls back to torch
    with pytest.raises(ops.BackendUnavailableError, match="POINTLIB_BUILD_EXT=cuda"):
        ops.knn(gaussian(1, 5, 0), 2, backend="cuda")


def test_env_override_is_honoured(monkeypatch):
    from pointlib.ops import _dispatch

    x = gaussian(1, 5, 0)
    monkeypatch.setenv("POINTLIB_BACKEND", "torch")
    assert _dispatch.select("knn", x, "auto", k=2)[0] == "torch"
    assert _dispatch.select("knn", x, "cpu" if _ext.HAS_CPU_EXT else "torch", k=2)[0] in (
        "cpu",
        "torch",
    )
    monkeypatch.setenv("POINTLIB_BACKEND", "bogus")
    with pytest.raises(ValueError, match="POINTLIB_BACKEND"):
        ops.knn(x, 2)
    r = _run(
        "import torch, pointlib.ops._dispatch as d, pointlib.ops\n"
        "print(d.select('fps', torch.rand(1, 4, 3), 'auto', npoint=2)[0])",
        POINTLIB_BACKEND="torch",
    )
    assert r.returncode == 0 and r.stdout.strip() == "torch", r.stderr


def test_require_ext_env_turns_missing_extension_into_failure(tmp_path):
    """Run the real ``test_extension_loaded_or_required`` above in a pytest subprocess with the
    extension hidden: it must fail under ``POINTLIB_REQUIRE_EXT=1`` and skip without it."""
    (tmp_path / "hide_pointlib_ext.py").write_text(
        "import sys\nsys.modules['pointlib._C'] = None  # import pointlib._C -> ImportError\n"
    )
    here = Path(__file__).resolve()
    node = f"{here}::test_extension_loaded_or_required"
    args = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "hide_pointlib_ext",
            "-p", "no:xdist", "-p", "no:cacheprovider", node]  # fmt: skip
    path = os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])

    def run(require: str) -> subprocess.CompletedProcess:
        env = {**os.environ, "PYTHONPATH": path, "POINTLIB_REQUIRE_EXT": require}
        return subprocess.run(
            args, capture_output=True, text=True, env=env, timeout=300, cwd=here.parent
        )

    required = run("1")
    assert required.returncode == 1, required.stdout + required.stderr
    assert "1 failed" in required.stdout and "POINTLIB_REQUIRE_EXT=1 but" in required.stdout
    optional = run("0")
    assert optional.returncode == 0, optional.stdout + optional.stderr
    assert "1 skipped" in optional.stdout and "extension not built" in optional.stdout


@pytest.mark.skipif(not _ext.HAS_CPU_EXT, reason="extension not built")
def test_opcheck_cpu_ops():
    pts, q = gaussian(2, 40, 0), gaussian(2, 9, 1)
    torch.library.opcheck(torch.ops.pointlib.knn.default, (pts, q, 5))
    torch.library.opcheck(torch.ops.pointlib.ball_query.default, (pts, q, 0.8, 6))
    torch.library.opcheck(torch.ops.pointlib.fps.default, (pts, 7, 0))
    assert torch.ops.pointlib.build_info().startswith("cpu;cuda=")
