"""DDP on CPU: two gloo processes stay in sync and reduce their metrics exactly."""

from __future__ import annotations

import json
import socket
from itertools import chain

import pytest
import torch
import torch.multiprocessing as mp
from _toy import toy_bundle, toy_config

from pointlib.engine.checkpoint import model_from_checkpoint
from pointlib.engine.distributed import DistInfo
from pointlib.engine.evaluate import eval_batches, evaluate_test


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_eval_shards_cover_everything_once():
    shards = [list(chain(*eval_batches(11, 3, DistInfo(r, 3, r)))) for r in range(3)]
    assert sorted(chain(*shards)) == list(range(11))


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed missing")
def test_two_process_gloo_training(tmp_path):
    import _ddp_worker

    mp.spawn(_ddp_worker.run, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    # parameters (and BatchNorm buffers, broadcast from rank 0) identical across ranks
    for k in r0["params"]:
        assert torch.equal(r0["params"][k], r1["params"][k]), k
    # both ranks report the same reduced metrics ...
    dump = json.dumps  # NaN-safe comparison (nan != nan)
    assert dump(r0["test"]) == dump(r1["test"])
    h0, h1 = (
        [{k: v for k, v in row.items() if k != "time_s"} for row in r["history"]] for r in (r0, r1)
    )
    assert dump(h0) == dump(h1)
    # ... which equal a single-process evaluation of the saved best weights on the whole set
    cfg = toy_config(train={"device": "cpu"})
    model = model_from_checkpoint(tmp_path / "best.pt")
    single = evaluate_test(cfg, model, toy_bundle(cfg))
    for rot, res in single.items():
        ref = res.as_dict()
        assert r0["test"][rot]["oa_mean"] == pytest.approx(ref["oa_mean"], abs=1e-12)
        assert r0["test"][rot]["macc_mean"] == pytest.approx(ref["macc_mean"], abs=1e-12)
        if rot != "none":
            assert r0["test"][rot]["invariance_error"] == pytest.approx(
                ref["invariance_error"], rel=1e-5
            )
    # rank 0 alone wrote the run folder
    assert (tmp_path / "metrics.csv").is_file() and (tmp_path / "results.json").is_file()
    # per epoch each rank did 18 // 8 = 2 steps (36 training samples split over 2 ranks)
    assert len(r0["history"]) == 2
