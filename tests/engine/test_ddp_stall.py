"""A stalled rank (SIGSTOP) makes every other rank exit with an error naming it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from pointlib.engine.distributed import STALL_EXIT_CODE, resolve_timeout

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
TIMEOUT_S = 3.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(rank: int, port: int, stall: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(HERE)])}
    return subprocess.Popen(
        [
            sys.executable,
            str(HERE / "_stall_worker.py"),
            str(rank),
            "2",
            str(port),
            str(stall),
            str(TIMEOUT_S),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed missing")
@pytest.mark.parametrize("stall", [1, 0])  # rank 0 also hosts the rendezvous store
def test_stalled_rank_is_named_and_the_others_exit(stall):
    port = _free_port()
    procs = [_start(r, port, stall) for r in (0, 1)]
    live = procs[1 - stall]
    try:
        t0 = time.monotonic()
        out, err = live.communicate(timeout=120)
        waited = time.monotonic() - t0
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
            p.communicate()
    assert "joined, sum 2" in out, err  # the group worked before the stall
    assert "passed the second barrier" not in out
    assert live.returncode == STALL_EXIT_CODE, err
    assert f"rank {stall}" in err and "collective timeout 3 s" in err, err
    assert waited < 60  # not torch's default 30 minutes


def test_timeout_resolution(monkeypatch):
    monkeypatch.delenv("POINTLIB_DIST_TIMEOUT", raising=False)
    assert resolve_timeout() == 300.0
    monkeypatch.setenv("POINTLIB_DIST_TIMEOUT", "42")
    assert resolve_timeout() == 42.0 and resolve_timeout(7) == 7.0
    monkeypatch.setenv("POINTLIB_DIST_TIMEOUT", "soon")
    with pytest.raises(ValueError, match="POINTLIB_DIST_TIMEOUT='soon'"):
        resolve_timeout()
    with pytest.raises(ValueError, match="must be > 0"):
        resolve_timeout(0)
