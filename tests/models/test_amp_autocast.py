"""AMP (autocast) is off by default, never used at evaluation unless asked, and its bf16 path
runs on CPU (training step and evaluation) so that it cannot rot before it is measured on a GPU."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from pointlib.engine.config import Config, load_config
from pointlib.engine.data import build_data
from pointlib.engine.evaluate import _autocast
from pointlib.engine.trainer import evaluate_test, train
from pointlib.models import create_model

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))
SMALL_RUN = [
    "data.num_points=64",
    "data.max_train_samples=16",
    "data.max_test_samples=8",
    "data.batch_size=4",
    "data.eval_batch_size=8",
    "data.kwargs.samples_per_class=2",
    "train.epochs=1",
    "train.max_steps=2",
    "train.progress=false",
    "train.tensorboard=false",
    "train.device=cpu",
    "eval.rotations=[so3]",
    "eval.num_rotations=2",
    "eval.angle_sweep=false",
]


def test_amp_is_off_by_default_everywhere(monkeypatch, tmp_path):
    assert Config().train.amp is False and Config().eval.amp is False
    assert Config().train.amp_dtype == "bfloat16"
    monkeypatch.setenv("POINTLIB_DATA_ROOT", str(tmp_path))
    for path in CONFIGS:
        cfg = load_config(path)
        assert cfg.train.amp is False and cfg.eval.amp is False, path.name


def test_autocast_context_selection():
    cpu = torch.device("cpu")
    x = torch.randn(4, 8)
    lin = torch.nn.Linear(8, 3)
    with _autocast(cpu, False):
        assert lin(x).dtype == torch.float32
    with _autocast(cpu, True, "bfloat16"):
        assert lin(x).dtype == torch.bfloat16
    with _autocast(cpu, True, "float16"):  # float16 autocast is a CUDA feature here: no-op
        assert lin(x).dtype == torch.float32
    with pytest.raises(ValueError, match="amp dtype 'int8'"):
        _autocast(cpu, True, "int8")


class _DtypeProbe:
    """Records the output dtype of every Linear layer of a model."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.seen: set[torch.dtype] = set()
        self.handles = [
            m.register_forward_hook(lambda _m, _i, out: self.seen.add(out.dtype))
            for m in model.modules()
            if isinstance(m, torch.nn.Linear)
        ]

    def reset(self) -> set[torch.dtype]:
        seen, self.seen = self.seen, set()
        return seen


@pytest.mark.parametrize("model", ["risurconv_cls_tiny", "dgcnn_cls_tiny"])
def test_bf16_autocast_train_and_eval_on_cpu(model, monkeypatch, tmp_path):
    monkeypatch.setenv("POINTLIB_CACHE", str(tmp_path / "cache"))
    root = Path(__file__).resolve().parents[2] / "configs" / "risurconv_tiny_synthetic.yaml"
    sets = [*SMALL_RUN, f"model.name={model}", "train.amp=true", "train.amp_dtype=bfloat16"]
    cfg = load_config(root, sets)
    data = build_data(cfg)

    seen: set[torch.dtype] = set()
    real_create = create_model

    def probed_create(name, **kw):  # the trainer builds its model through the registry
        m = real_create(name, **kw)
        probe = _DtypeProbe(m)
        m.register_forward_hook(lambda *_: seen.update(probe.reset()))
        return m

    monkeypatch.setattr("pointlib.models.create_model", probed_create)
    res = train(cfg, tmp_path / "run", data=data, run_test=False)
    assert res.epochs_done == 0 or res.epochs_done == 1
    assert torch.bfloat16 in seen, "the training step did not run under bf16 autocast"
    assert (tmp_path / "run" / "last.pt").is_file()

    net = res.model
    assert net is not None
    probe = _DtypeProbe(net)
    fp32 = evaluate_test(cfg, net, data, device=torch.device("cpu"))["so3"]
    assert probe.reset() == {torch.float32}, "evaluation used autocast without eval.amp"
    cfg.eval.amp = True
    bf16 = evaluate_test(cfg, net, data, device=torch.device("cpu"))["so3"]
    assert torch.bfloat16 in probe.reset()
    for r in (fp32, bf16):
        assert math.isfinite(r.invariance_error) and 0 <= r.copies[0]["oa"] <= 1
