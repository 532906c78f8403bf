"""``torch.distributed`` helpers: set-up from ``torchrun``'s environment, reductions, rank-0 gating.

``torchrun --nproc_per_node N -m pointlib train ...`` (or ``--no-python pointlib train ...``) sets
``RANK``/``WORLD_SIZE``/``LOCAL_RANK``; :func:`init_distributed` then joins the process group with
NCCL on CUDA and gloo on CPU. Without those variables everything runs as a single process.

A rank that stops responding (``SIGSTOP``, a hang, a lost host) does not block the others for
torch's default 30 minutes: after ``train.dist_timeout_s`` (default 300 s) every live rank
exits with status 3 and an error naming the stalled rank (:class:`StallWatchdog`).
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import logging
import math
import os
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "STALL_EXIT_CODE",
    "DistInfo",
    "StallWatchdog",
    "all_reduce",
    "barrier",
    "broadcast_buffers",
    "cleanup",
    "init_distributed",
    "resolve_timeout",
]

log = logging.getLogger(__name__)

#: Default collective timeout (seconds): a rank silent this long is reported as stalled.
DEFAULT_TIMEOUT_S = 300.0
#: Exit status of a rank that gives up on a stalled peer.
STALL_EXIT_CODE = 3


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: ``rank`` of ``world_size``; ``is_main`` writes the files."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str = "auto", *, timeout_s: float | None = None) -> DistInfo:
    """Join the process group described by torchrun's environment (no-op for one process).

    ``device`` picks the backend: NCCL when the run uses CUDA, gloo otherwise. ``timeout_s``
    (default: ``$POINTLIB_DIST_TIMEOUT``, else :data:`DEFAULT_TIMEOUT_S`) bounds how long a rank
    waits for the others: a :class:`StallWatchdog` makes every live rank exit with an error
    naming a rank that stopped responding for that long, and collectives themselves time out a
    little later (``timeout_s + grace``) as a backstop.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    timeout = resolve_timeout(timeout_s)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        use_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
        if use_cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group(
            backend="nccl" if use_cuda else "gloo",
            timeout=datetime.timedelta(seconds=timeout + _grace(timeout)),
        )
    global _WATCHDOG
    if _WATCHDOG is None and "MASTER_ADDR" in os.environ and "MASTER_PORT" in os.environ:
        _WATCHDOG = StallWatchdog(rank, world, timeout)
        _WATCHDOG.start()
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank)


def resolve_timeout(timeout_s: float | None = None) -> float:
    """``timeout_s``, else ``$POINTLIB_DIST_TIMEOUT``, else :data:`DEFAULT_TIMEOUT_S` (> 0)."""
    source = "timeout_s"
    if timeout_s is None:
        env = os.environ.get("POINTLIB_DIST_TIMEOUT", "").strip()
        source = "POINTLIB_DIST_TIMEOUT"
        try:
            timeout_s = float(env) if env else DEFAULT_TIMEOUT_S
        except ValueError:
            raise ValueError(f"POINTLIB_DIST_TIMEOUT={env!r} is not a number of seconds") from None
    if not math.isfinite(timeout_s) or timeout_s <= 0:
        raise ValueError(f"{source}={timeout_s!r}: the collective timeout must be > 0 seconds")
    return float(timeout_s)


def _grace(timeout: float) -> float:
    return max(10.0, 0.1 * timeout)


class StallWatchdog:
    """Heartbeats through the rendezvous store; exits this process when another rank stalls.

    A daemon thread increments ``pointlib/watchdog/hb/<rank>`` in the store that ``torchrun``
    (or ``MASTER_ADDR``/``MASTER_PORT``) provides every ``interval`` seconds and reads the other
    ranks' counters. A rank whose counter has not moved for ``timeout_s`` seconds (stopped with
    ``SIGSTOP``, hung with the GIL held, or its host unreachable) is named on stderr and this
    process exits with status :data:`STALL_EXIT_CODE`. Store calls can block without a timeout
    when the store's host is frozen, so a second thread watches the first: no successful round
    trip for ``timeout_s`` seconds names the store's host (rank 0 unless the torchrun agent hosts
    it). A rank that finished (:meth:`stop`, also run ``atexit``) is no longer watched.
    """

    def __init__(self, rank: int, world_size: int, timeout_s: float) -> None:
        self.rank, self.world_size, self.timeout_s = rank, world_size, float(timeout_s)
        self.interval = max(0.2, min(5.0, self.timeout_s / 10))
        self._stop_event = threading.Event()
        self._store: Any = None
        self._last_ok = time.monotonic()
        self._threads = [
            threading.Thread(target=self._beat, name="pointlib-heartbeat", daemon=True),
            threading.Thread(target=self._guard, name="pointlib-store-guard", daemon=True),
        ]
        atexit.register(self.stop)

    def start(self) -> None:
        """Start the heartbeat and guard threads."""
        for t in self._threads:
            t.start()

    def _connect(self) -> Any:
        host, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
        store = dist.TCPStore(
            host,
            port,
            is_master=False,
            timeout=datetime.timedelta(seconds=self.timeout_s),
            wait_for_workers=False,
        )
        return dist.PrefixStore("pointlib/watchdog", store)

    def store_host(self) -> str:
        """Who hosts the rendezvous store, in words."""
        where = f"{os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')}"
        if os.environ.get("TORCHELASTIC_USE_AGENT_STORE", "").lower() == "true":
            return f"the torchrun agent's store at {where}"
        return f"rank 0 (it hosts the rendezvous store at {where})"

    def _beat(self) -> None:  # pragma: no cover - runs in a thread of a DDP process
        try:
            self._store = self._connect()
            self._last_ok = time.monotonic()
            seen = {r: (-1, time.monotonic()) for r in range(self.world_size) if r != self.rank}
            while not self._stop_event.wait(self.interval):
                self._store.add(f"hb/{self.rank}", 1)
                now = time.monotonic()
                for r in list(seen):
                    if self._store.check([f"done/{r}"]):
                        del seen[r]
                        continue
                    count = self._store.add(f"hb/{r}", 0)
                    last, since = seen[r]
                    if count != last:
                        seen[r] = (count, now)
                    elif now - since > self.timeout_s and not self._stop_event.is_set():
                        self._fail(f"rank {r} has not responded for {now - since:.0f} s")
                self._last_ok = time.monotonic()
        except Exception as exc:  # the store refused or dropped the connection
            if not self._stop_event.is_set():
                self._fail(f"{self.store_host()} does not respond ({type(exc).__name__}: {exc})")

    def _guard(self) -> None:  # pragma: no cover - runs in a thread of a DDP process
        while not self._stop_event.wait(self.interval):
            silent = time.monotonic() - self._last_ok
            if silent > self.timeout_s + self.interval:
                self._fail(f"{self.store_host()} has not answered for {silent:.0f} s")

    def _fail(self, why: str) -> None:  # pragma: no cover - exits the process
        msg = (
            f"pointlib DDP: {why} (stopped, hung or unreachable; collective timeout "
            f"{self.timeout_s:g} s, set train.dist_timeout_s or POINTLIB_DIST_TIMEOUT); "
            f"rank {self.rank} of {self.world_size} exits"
        )
        log.error(msg)
        print(msg, file=sys.stderr, flush=True)
        os._exit(STALL_EXIT_CODE)

    def stop(self) -> None:
        """Stop heartbeating and tell the other ranks not to wait for this one any more.

        Never blocks for long: the ``done`` mark is written by a helper thread that is given
        at most ``min(2, timeout_s)`` seconds (the store's host may be the one that stalled).
        """
        if self._stop_event.is_set():
            return
        self._stop_event.set()
        store = self._store
        if store is None:
            return

        def mark_done() -> None:
            with contextlib.suppress(Exception):
                store.set(f"done/{self.rank}", "1")

        t = threading.Thread(target=mark_done, name="pointlib-watchdog-stop", daemon=True)
        t.start()
        t.join(timeout=min(2.0, self.timeout_s))


_WATCHDOG: StallWatchdog | None = None


def all_reduce(t: Tensor, op: str = "sum") -> Tensor:
    """Reduce ``t`` across processes (``sum`` or ``max``) and return it; identity without DDP.

    Works for CPU tensors under NCCL too (moved to the current CUDA device for the reduction).
    """
    if not (dist.is_available() and dist.is_initialized()):
        return t
    work = t
    if dist.get_backend() == "nccl" and not t.is_cuda:
        work = t.cuda()
    dist.all_reduce(work, op=dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MAX)
    return work.to(t.device)


def broadcast_buffers(module: torch.nn.Module, src: int = 0) -> None:
    """Copy every buffer (BatchNorm running statistics) of ``module`` from rank ``src``.

    DDP syncs buffers at the start of each forward, so after the last training step each rank
    holds its own statistics; the engine calls this at the end of every epoch so that
    validation, test and checkpoints use rank 0's model on every rank.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return
    for b in module.buffers():
        dist.broadcast(b.data, src)


def barrier() -> None:
    """Synchronise all processes (no-op without DDP)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def cleanup() -> None:
    """Stop the stall watchdog and leave the process group, if one was joined."""
    global _WATCHDOG
    if _WATCHDOG is not None:
        _WATCHDOG.stop()
        _WATCHDOG = None
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
