"""Model inputs: dtype mismatches, missing categories and huge coordinates get clear errors."""

from __future__ import annotations

import pytest
import torch

from pointlib.models import create_model
from pointlib.nn._inputs import max_abs_coordinate, one_hot_category
from pointlib.testing import make_cloud


@pytest.fixture(autouse=True)
def _single_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _cloud(dtype=torch.float32, B=2, N=80):
    return make_cloud(B, N, generator=torch.Generator().manual_seed(0), dtype=dtype)


@pytest.mark.parametrize("name", ["risurconv_cls_tiny", "pointnet2_cls_ssg_tiny"])
def test_float64_input_to_float32_model_and_reverse(name):
    model = create_model(name, num_classes=4).eval()
    xyz, nrm = _cloud(torch.float64)
    with pytest.raises(TypeError, match=r"xyz is torch\.float64 but the model's parameters are "
                       r"torch\.float32; pass xyz\.float\(\)"):  # fmt: skip
        model(xyz, nrm)
    model.double()
    with pytest.raises(TypeError, match=r"pass xyz\.double\(\)"):
        model(xyz.float(), nrm.float())
    assert model(xyz, nrm).dtype == torch.float64  # matching dtypes run


def test_partseg_without_category():
    seg = create_model("risurconv_partseg_tiny", num_parts=6, num_categories=3).eval()
    xyz, nrm = _cloud()
    with pytest.raises(TypeError, match=r"category is required for part segmentation: a \(B,\)"):
        seg(xyz, nrm, None)
    with pytest.raises(TypeError, match="integer category indices"):
        seg(xyz, nrm, torch.tensor([0.5, 1.0]))
    with pytest.raises(TypeError, match="category must be a"):
        seg(xyz, nrm, "chair")
    out = seg(xyz, nrm, [0, 2])
    assert out.shape == (2, 80, 6) and torch.isfinite(out).all()


def test_one_hot_category_values():
    like = torch.zeros(1)
    oh = one_hot_category(torch.tensor([2, 0]), 3, 2, 4, like)
    assert (
        oh.shape == (2, 4, 3) and oh[0, 0].tolist() == [0, 0, 1] and oh[1, 3].tolist() == [1, 0, 0]
    )
    assert torch.equal(one_hot_category(torch.tensor([2.0, 0.0]), 3, 2, 4, like), oh)


@pytest.mark.parametrize(
    ("name", "scale"),
    [
        ("risurconv_cls_tiny", 1e20),
        ("risurconv_partseg_tiny", 1e19),
        ("pointnet2_cls_ssg_tiny", 1e19),
    ],
)
def test_huge_coordinates_are_rejected_not_nan(name, scale):
    kw = {"num_parts": 6, "num_categories": 3} if "partseg" in name else {"num_classes": 4}
    model = create_model(name, **kw).eval()
    xyz, nrm = _cloud()
    args = (xyz * scale, nrm) + ((torch.tensor([0, 1]),) if "partseg" in name else ())
    with pytest.raises(ValueError, match=r"\|xyz\| reaches .* beyond the 6\.98e\+10 that "
                       r"torch\.float32 supports"):  # fmt: skip
        model(*args)


@pytest.mark.parametrize("name", ["risurconv_cls_tiny", "risurconv_partseg_tiny"])
def test_largest_accepted_scale_gives_finite_logits(name):
    kw = {"num_parts": 6, "num_categories": 3} if "partseg" in name else {"num_classes": 4}
    model = create_model(name, **kw).eval()
    xyz, nrm = _cloud()
    xyz = xyz / xyz.abs().amax() * max_abs_coordinate(torch.float32) * 0.999
    args = (xyz, nrm) + ((torch.tensor([0, 1]),) if "partseg" in name else ())
    with torch.no_grad():
        out = model(*args)
    assert torch.isfinite(out).all()


def test_limit_values():
    assert max_abs_coordinate(torch.float32) == pytest.approx(6.98e10, rel=1e-3)
    assert max_abs_coordinate(torch.float64) == pytest.approx(5.64e100, rel=1e-2)
