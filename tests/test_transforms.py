"""pointlib.transforms: the spec §4 augmentations, rotations for the z / SO3 protocols, seeding."""

from __future__ import annotations

import pytest
import torch

from pointlib import transforms as T
from pointlib.testing import make_cloud


def g(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture
def item():
    xyz, normals = make_cloud(1, 64, generator=g(1), dtype=torch.float64)
    xyz = xyz[0] * 3 + torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    return {"xyz": xyz, "normals": normals[0], "parts": torch.arange(64), "label": torch.tensor(7)}


@pytest.fixture
def batch():
    xyz, normals = make_cloud(4, 32, generator=g(2))
    return {"xyz": xyz, "normals": normals, "parts": torch.arange(32).repeat(4, 1),
            "label": torch.arange(4)}  # fmt: skip


def snapshot(d):
    return {k: v.clone() for k, v in d.items()}


def assert_unchanged(d, snap):
    assert d.keys() == snap.keys()
    for k in d:
        assert torch.equal(d[k], snap[k]), f"input key {k!r} was modified"


def test_normalize_unit_sphere(item, batch):
    snap = snapshot(item)
    out = T.NormalizeUnitSphere()(item)
    assert_unchanged(item, snap)
    torch.testing.assert_close(out["xyz"].mean(0), torch.zeros(3, dtype=torch.float64))
    torch.testing.assert_close(out["xyz"].norm(dim=1).max(), torch.tensor(1.0, dtype=torch.float64))
    assert out["normals"] is item["normals"] and out["label"] is item["label"]
    # a pure similarity: ratios of distances are preserved
    d0 = torch.cdist(item["xyz"], item["xyz"])
    d1 = torch.cdist(out["xyz"], out["xyz"])
    torch.testing.assert_close(d1 * d0.max(), d0 * d1.max(), atol=1e-6, rtol=1e-6)
    # batched: per cloud
    xb = T.NormalizeUnitSphere()(batch["xyz"] * torch.tensor([1.0, 2, 3, 4]).view(4, 1, 1) + 5)
    torch.testing.assert_close(xb.norm(dim=-1).amax(-1), torch.ones(4))
    torch.testing.assert_close(xb.mean(1), torch.zeros(4, 3), atol=1e-6, rtol=0)
    # degenerate cloud: centred, no NaN
    same = T.normalize_unit_sphere(torch.ones(5, 3))
    assert torch.equal(same, torch.zeros(5, 3))


def test_random_scale(item, batch):
    out = T.RandomScale()(item, generator=g())
    ratio = out["xyz"] / item["xyz"]
    s = ratio[0, 0]
    torch.testing.assert_close(ratio, torch.full_like(ratio, float(s)))
    assert 0.8 <= s <= 1.25
    assert torch.equal(out["normals"], item["normals"])
    xb = T.RandomScale()(batch, generator=g())["xyz"]
    scales = (xb / batch["xyz"])[:, 0, 0]
    assert scales.unique().numel() == 4  # one scale per cloud
    many = T.RandomScale()(torch.ones(2000, 1, 3), generator=g())[:, 0, 0]
    assert many.min() >= 0.8 and many.max() <= 1.25
    assert abs(float(many.mean()) - 1.025) < 0.01
    with pytest.raises(ValueError, match="low"):
        T.RandomScale(1.5, 1.0)


def test_random_shift(item, batch):
    out = T.RandomShift()(item, generator=g())
    delta = out["xyz"] - item["xyz"]
    torch.testing.assert_close(delta, delta[:1].expand_as(delta))
    assert delta.abs().max() <= 0.1
    assert torch.equal(out["normals"], item["normals"])
    many = T.RandomShift(0.1)(torch.zeros(3000, 2, 3), generator=g())
    assert torch.equal(many[:, 0], many[:, 1])  # one shift per cloud
    assert many.abs().max() <= 0.1 and many.abs().max() > 0.09
    assert many.mean(0).abs().max() < 0.01


def test_jitter_is_clipped_gaussian(item):
    out = T.Jitter(sigma=0.01, clip=0.05)(item, generator=g())
    delta = out["xyz"] - item["xyz"]
    assert delta.abs().max() <= 0.05
    assert torch.equal(out["normals"], item["normals"])
    noise = T.Jitter(sigma=0.01, clip=0.02)(torch.zeros(20_000, 3), generator=g())
    assert noise.abs().max() <= 0.02 and abs(float(noise.std()) - 0.01) < 0.0005
    clipped = T.Jitter(sigma=1.0, clip=0.05)(torch.zeros(1000, 3), generator=g())
    assert (clipped.abs() == 0.05).float().mean() > 0.9


def test_point_dropout_replaces_with_point_zero(batch):
    B = 4
    snap = snapshot(batch)
    out = T.RandomPointDropout()(batch, generator=g(3))
    assert_unchanged(batch, snap)
    for key in ("xyz", "normals", "parts"):
        assert out[key].shape == batch[key].shape
    dropped = ~(out["xyz"] == batch["xyz"]).all(-1)
    assert dropped.any() and not dropped[:, 0].any()
    for b in range(B):
        d = dropped[b]
        assert torch.equal(out["xyz"][b, d], batch["xyz"][b, 0].expand(int(d.sum()), 3))
        assert torch.equal(out["normals"][b, d], batch["normals"][b, 0].expand(int(d.sum()), 3))
        assert (out["parts"][b, d] == 0).all() and torch.equal(
            out["parts"][b, ~d], batch["parts"][b, ~d]
        )
    assert torch.equal(out["label"], batch["label"])
    # the per-cloud ratio is U(0, 0.875): mean dropped fraction ~0.4375, max below ~0.875
    frac = (~(T.RandomPointDropout()(torch.randn(400, 256, 3, generator=g(4)), generator=g(5))
              == torch.randn(400, 256, 3, generator=g(4))).all(-1)).float().mean(1)  # fmt: skip
    assert abs(float(frac.mean()) - 0.4375) < 0.05
    assert float(frac.max()) < 0.95 and float(frac.min()) < 0.05
    with pytest.raises(ValueError, match="max_ratio"):
        T.RandomPointDropout(1.0)


def test_rotation_about_up_axis(item):
    t = T.RandomRotation("z", up_axis="y", store_as="R")
    out = t(item, generator=g())
    R = out["R"]
    torch.testing.assert_close(out["xyz"][:, 1], item["xyz"][:, 1])  # up coordinate kept
    torch.testing.assert_close(out["xyz"], item["xyz"] @ R.T)
    torch.testing.assert_close(out["normals"], item["normals"] @ R.T)
    assert not torch.allclose(out["xyz"], item["xyz"])
    assert torch.equal(out["parts"], item["parts"])
    out_z = T.RandomRotation("z")(item, generator=g())
    torch.testing.assert_close(out_z["xyz"][:, 2], item["xyz"][:, 2])


def test_so3_rotation_points_and_normals_together(batch):
    out = T.RandomRotation("so3", store_as="R")(batch, generator=g())
    R = out["R"]
    assert R.shape == (4, 3, 3)
    torch.testing.assert_close(torch.linalg.det(R), torch.ones(4))
    torch.testing.assert_close(out["xyz"], batch["xyz"] @ R.transpose(1, 2))
    torch.testing.assert_close(out["normals"], batch["normals"] @ R.transpose(1, 2))
    # geometry between points and normals is preserved
    dots = (batch["xyz"] * batch["normals"]).sum(-1)
    torch.testing.assert_close((out["xyz"] * out["normals"]).sum(-1), dots, atol=1e-5, rtol=0)
    assert not torch.allclose(R[0], R[1])  # one rotation per cloud
    same = T.RandomRotation("so3", store_as="R")(batch, generator=g())
    assert torch.equal(same["R"], R)
    ident = T.RandomRotation("none")(batch)
    torch.testing.assert_close(ident["xyz"], batch["xyz"])
    with pytest.raises(ValueError, match="protocol"):
        T.RandomRotation("so2")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="up_axis"):
        T.RandomRotation("z", up_axis="w")


def test_random_permutation_keeps_pairs(item, batch):
    out = T.RandomPermutation()(item, generator=g())
    assert not torch.equal(out["parts"], item["parts"])
    assert torch.equal(out["parts"].sort().values, item["parts"])
    p = out["parts"]  # parts were arange, so they name each point's original index
    assert torch.equal(out["xyz"], item["xyz"][p]) and torch.equal(
        out["normals"], item["normals"][p]
    )
    assert torch.equal(out["label"], item["label"])
    ob = T.RandomPermutation()(batch, generator=g())
    for b in range(4):
        pb = ob["parts"][b]
        assert torch.equal(ob["xyz"][b], batch["xyz"][b, pb])
        assert torch.equal(ob["normals"][b], batch["normals"][b, pb])
    assert not torch.equal(ob["parts"][0], ob["parts"][1])  # per-cloud permutations


def test_seeding_and_compose(item):
    pipeline = T.Compose([T.NormalizeUnitSphere(), T.RandomPointDropout(), T.RandomScale(),
                          T.RandomShift(), T.Jitter(), T.RandomRotation("so3"),
                          T.RandomPermutation()])  # fmt: skip
    a = pipeline(item, generator=g(10))
    b = pipeline(item, generator=g(10))
    c = pipeline(item, generator=g(11))
    for k in a:
        assert torch.equal(a[k], b[k])
    assert not torch.allclose(a["xyz"], c["xyz"])
    assert len(pipeline) == 7 and "RandomRotation(protocol='so3'" in repr(pipeline)
    # a constructor generator gives a reproducible stream; a call-time one wins over it
    t1, t2 = T.RandomScale(generator=g(5)), T.RandomScale(generator=g(5))
    assert torch.equal(t1(item)["xyz"], t2(item)["xyz"])
    assert torch.equal(
        t1(item, generator=g(0))["xyz"], T.RandomScale()(item, generator=g(0))["xyz"]
    )
    # plain callables compose too
    assert T.Compose([lambda d: {**d, "seen": True}])(item)["seen"] is True


def test_tensor_input_and_dtypes(item):
    x32 = item["xyz"].float()
    out = T.RandomRotation("so3")(x32, generator=g())
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32 and out.shape == (64, 3)
    out64 = T.Compose([T.RandomScale(), T.Jitter()])(item["xyz"], generator=g())
    assert out64.dtype == torch.float64


@pytest.mark.parametrize(
    ("data", "exc", "match"),
    [
        ({"normals": torch.zeros(4, 3)}, KeyError, "no 'xyz'"),
        ({"xyz": torch.zeros(4, 2)}, ValueError, r"\(N, 3\) or \(B, N, 3\), got \(4, 2\)"),
        ({"xyz": torch.zeros(4, 3, dtype=torch.long)}, TypeError, "floating point"),
        ({"xyz": torch.zeros(4, 3), "normals": torch.zeros(5, 3)}, ValueError, "must match"),
        ([1, 2, 3], TypeError, "tensor or an item dict"),
    ],
)
def test_bad_input(data, exc, match):
    with pytest.raises(exc, match=match):
        T.RandomScale()(data)
