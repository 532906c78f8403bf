"""Worker of the 2-process gloo test (spawned; importable from the test's sys.path)."""

from __future__ import annotations

import os

import torch


def run(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    torch.set_num_threads(1)
    from _toy import toy_bundle, toy_config

    from pointlib.engine.distributed import cleanup
    from pointlib.engine.trainer import train

    cfg = toy_config(train={"device": "cpu"})
    try:
        res = train(cfg, out, data=toy_bundle(cfg))
        torch.save(
            {
                "params": {k: v.clone() for k, v in res.model.state_dict().items()},
                "test": {k: v.as_dict() for k, v in res.test.items()},
                "history": res.history,
            },
            os.path.join(out, f"rank{rank}.pt"),
        )
    finally:
        cleanup()
