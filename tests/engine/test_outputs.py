"""Output files and lines: strict JSON, modes from the umask, no ``nan`` printed for a metric that
does not exist, the training summary line."""

from __future__ import annotations

import json
import os
import stat

import torch

from pointlib.engine.config import config_from_dict
from pointlib.engine.evaluate import ProtocolResult, summarise
from pointlib.engine.trainer import write_results


def _one_copy() -> ProtocolResult:
    return ProtocolResult(
        rotation="none",
        copies=[{"oa": 0.5, "macc": 0.5, "loss": float("nan")}],
        invariance_error=float("nan"),
        confusion=torch.tensor([[1, 1], [0, 2]]),
    )


def test_results_json_is_strict_and_files_follow_the_umask(tmp_path):
    cfg = config_from_dict({"model": {"name": "pointnet2_cls_ssg_tiny"}})
    old = os.umask(0o002)
    try:
        write_results(tmp_path, cfg, {"none": _one_copy()}, ["a", "b"])
    finally:
        os.umask(old)

    def bad(token):
        raise ValueError(token)

    data = json.loads((tmp_path / "results.json").read_text(), parse_constant=bad)
    proto = data["protocols"]["none"]
    assert proto["invariance_error"] is None and proto["loss_mean"] is None
    assert proto["oa_mean"] == 0.5
    for name in ("results.json", "confusion_none.png"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o664, name


def test_summary_line_has_no_nan():
    line = summarise(_one_copy(), "cls")
    assert "nan" not in line.lower() and "inv.err – (one copy)" in line
    r = _one_copy()
    r.invariance_error = 1.5e-6
    assert "inv.err 1.50e-06" in summarise(r, "cls")
