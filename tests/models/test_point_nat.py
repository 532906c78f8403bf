"""point_nat_cls: forward/backward contract, invariances of the attention path, and learning."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pointlib.models import create_model, list_models
from pointlib.testing import make_cloud


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models run fastest single-threaded; intra-op threads only oversubscribe shared CPUs."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_registered():
    assert {"point_nat_cls", "point_nat_cls_tiny"} <= set(list_models("point_nat*"))


@pytest.mark.parametrize("use_normals", [False, True])
def test_forward_backward_every_parameter_gets_a_gradient(use_normals):
    torch.manual_seed(0)
    m = create_model("point_nat_cls_tiny", num_classes=5, use_normals=use_normals)
    xyz, nrm = make_cloud(3, 48, generator=torch.Generator().manual_seed(0))
    logits = m(xyz, nrm if use_normals else None)
    assert logits.shape == (3, 5) and torch.isfinite(logits).all()
    F.cross_entropy(logits, torch.tensor([0, 1, 2])).backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing


def test_batch_independent_in_eval():
    torch.manual_seed(1)
    m = create_model("point_nat_cls_tiny", num_classes=4).double().eval()
    xyz, _ = make_cloud(3, 40, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    full = m(xyz)
    torch.testing.assert_close(m(xyz[:1]), full[:1])
    other = xyz.clone()
    other[1:] = make_cloud(2, 40, generator=torch.Generator().manual_seed(9), dtype=torch.float64)[
        0
    ]
    torch.testing.assert_close(m(other)[0], full[0])


def test_permutation_invariant_without_downsampling():
    """With one stage (no FPS) the model is a function of the point set."""
    torch.manual_seed(2)
    m = (
        create_model(
            "point_nat_cls_tiny", num_classes=3, dims=(16,), depths=(2,), heads=(2,), npoints=()
        )
        .double()
        .eval()
    )
    xyz, _ = make_cloud(2, 30, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    perm = torch.randperm(30)
    torch.testing.assert_close(m(xyz[:, perm]), m(xyz))


def test_bad_input():
    m = create_model("point_nat_cls_tiny", num_classes=3)
    with pytest.raises(ValueError, match="at least"):
        m(torch.randn(1, 10, 3))
    with pytest.raises(ValueError, match="xyz"):
        m(torch.randn(1, 64, 2))
    with pytest.raises(ValueError, match="one entry per stage"):
        create_model("point_nat_cls_tiny", dims=(8, 16, 32))


def test_training_reduces_loss_on_a_toy_problem():
    """Two classes: elongated vs round ellipsoids; a few Adam steps must reduce the loss."""
    g = torch.Generator().manual_seed(3)
    torch.manual_seed(3)
    B, N = 8, 48
    d = torch.randn(B, N, 3, generator=g)
    d = d / d.norm(dim=-1, keepdim=True)
    y = torch.arange(B) % 2
    axes = torch.where(y[:, None] == 1, torch.tensor([1.0, 0.3, 0.3]), torch.ones(3))
    xyz = d * axes[:, None, :]
    m = create_model("point_nat_cls_tiny", num_classes=2, dropout=0.0)
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    losses = []
    for _ in range(12):
        opt.zero_grad()
        loss = F.cross_entropy(m(xyz), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses
