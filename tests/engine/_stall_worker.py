"""Worker of the DDP stall test: ``python _stall_worker.py RANK WORLD PORT STALL_RANK TIMEOUT``.

Joins a gloo group, passes one barrier, then rank ``STALL_RANK`` stops itself with SIGSTOP and
the others enter a second barrier that can only end by the stall watchdog.
"""

from __future__ import annotations

import os
import signal
import sys

import torch

rank, world, port, stall, timeout = sys.argv[1:6]
os.environ.update(
    RANK=rank, LOCAL_RANK=rank, WORLD_SIZE=world, MASTER_ADDR="127.0.0.1", MASTER_PORT=port
)
torch.set_num_threads(1)

from pointlib.engine.distributed import all_reduce, barrier, init_distributed  # noqa: E402

info = init_distributed("cpu", timeout_s=float(timeout))
total = all_reduce(torch.ones(1))
print(f"rank {info.rank} joined, sum {int(total)}", flush=True)
barrier()
if info.rank == int(stall):
    os.kill(os.getpid(), signal.SIGSTOP)
barrier()
print(f"rank {info.rank} passed the second barrier", flush=True)
