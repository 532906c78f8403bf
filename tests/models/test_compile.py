"""``torch.compile(model)`` end to end on the tiny RISurConv models, both modes (issue 11).

The ``aot_eager`` backend traces every graph with fake tensors (the extension ops' fake
implementations, the fused blocks' custom autograd functions) and runs the traced graphs in
eager mode, without code generation: the compiled model must give the eager outputs and
gradients (dropout off: the compiled graph draws its random numbers differently). Slow
(minutes of tracing on a small CPU machine): run with ``-m slow``.
"""

from __future__ import annotations

import copy

import pytest
import torch

from pointlib.models import create_model
from pointlib.testing import make_cloud

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    ("name", "faithful"),
    [
        ("risurconv_cls_tiny", False),
        ("risurconv_cls_tiny", True),
        ("risurconv_partseg_tiny", False),
    ],
)
def test_compiled_model_matches_eager(name, faithful, gen):
    seg = "partseg" in name
    torch.manual_seed(0)
    if seg:
        kw: dict = dict(num_parts=6, num_categories=3, dropout=0.0)
    else:
        kw = dict(num_classes=5, dropout=0.0, transformer_dropout=0.0)
    model = create_model(name, faithful=faithful, **kw)
    eager = copy.deepcopy(model)
    xyz, nrm = make_cloud(4, 128, generator=gen)
    args = (xyz, nrm, torch.arange(4) % 3) if seg else (xyz, nrm)
    compiled = torch.compile(model, backend="aot_eager")

    model.train()
    eager.train()
    out = compiled(*args)
    expect = eager(*args)
    torch.testing.assert_close(out, expect, rtol=1e-4, atol=1e-5)
    w = torch.randn(out.shape, generator=gen)
    (out * w).sum().backward()
    (expect * w).sum().backward()
    for (pname, p), (_, q) in zip(model.named_parameters(), eager.named_parameters()):
        assert (p.grad is None) == (q.grad is None), pname
        if q.grad is not None:
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-3, atol=1e-4, msg=pname)
    for (bname, a), (_, b) in zip(model.named_buffers(), eager.named_buffers()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=bname)  # running stats

    model.eval()
    eager.eval()
    with torch.no_grad():
        torch.testing.assert_close(compiled(*args), eager(*args), rtol=1e-4, atol=1e-5)
