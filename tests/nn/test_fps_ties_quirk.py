"""The ``fps_ties`` quirk: faithful mode samples centres with the official CUDA kernel's tie rule.

On clouds with exact FPS ties the faithful model's first-layer centres follow
``ops.fps(tie_break="cuda")``; ``fps_ties="lowest"`` restores the lowest-index rule; fixed mode
(tie-tolerant FPS, centres sorted by index) is unaffected by the switch.
"""

from __future__ import annotations

import pytest
import torch

import pointlib.ops as ops
from pointlib.models import create_model
from pointlib.nn.quirks import Quirks


def _lattice() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(4)
    xyz = torch.randint(-3, 4, (1, 256, 3), generator=g).double() / 3.0
    nrm = torch.nn.functional.normalize(
        torch.randn(1, 256, 3, generator=g, dtype=torch.float64), dim=-1
    )
    return xyz, nrm


def _first_centres(model, xyz, nrm) -> torch.Tensor:
    seen = []
    layer = model.layers[0]
    handle = layer.register_forward_hook(lambda m, i, o: seen.append(o[0]))
    with torch.no_grad():
        model.double().eval()(xyz, nrm)
    handle.remove()
    return seen[0]


def test_presets():
    assert Quirks.resolve(True).fps_ties == "cuda"
    assert Quirks.resolve(False).fps_ties == "lowest"
    with pytest.raises(ValueError, match="fps_ties must be one of"):
        Quirks.resolve(True, fps_ties="random")


@pytest.mark.parametrize("name", ["risurconv_cls_tiny", "riconv2_cls_tiny"])
def test_faithful_centres_follow_the_cuda_tie_rule(name):
    xyz, nrm = _lattice()
    npoint = 64
    cuda, lowest = ops.fps(xyz, npoint, tie_break="cuda"), ops.fps(xyz, npoint)
    assert not torch.equal(cuda, lowest)  # the cloud really has FPS ties
    got = {}
    for rule in ("cuda", "lowest"):
        torch.manual_seed(0)
        m = create_model(name, num_classes=4, faithful=True, fps_ties=rule)
        assert m.layers[0].npoint == npoint
        got[rule] = _first_centres(m, xyz, nrm)
    torch.testing.assert_close(got["cuda"], ops.gather(xyz, cuda), rtol=0, atol=0)
    torch.testing.assert_close(got["lowest"], ops.gather(xyz, lowest), rtol=0, atol=0)
    torch.manual_seed(0)
    default = create_model(name, num_classes=4, faithful=True)
    torch.testing.assert_close(_first_centres(default, xyz, nrm), got["cuda"], rtol=0, atol=0)


def test_fixed_mode_ignores_the_switch():
    xyz, nrm = _lattice()
    outs = []
    for rule in ("cuda", "lowest"):
        torch.manual_seed(0)
        m = create_model("risurconv_cls_tiny", num_classes=4, fps_ties=rule)
        outs.append(_first_centres(m, xyz, nrm))
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)
