"""DGCNN: EdgeConv against a written-out reference, the dynamic (feature-space) graph, the
registry entries, the published architecture size, and the non-invariance it shares with
PointNet++."""

from __future__ import annotations

import torch

from pointlib.models import create_model, list_models
from pointlib.nn.edgeconv import EdgeConv
from pointlib.ops import reference as ref
from pointlib.testing import make_cloud


def test_registered():
    assert {"dgcnn_cls", "dgcnn_cls_tiny"} <= set(list_models("dgcnn*"))


def test_edgeconv_equals_written_out_reference():
    torch.manual_seed(0)
    conv = EdgeConv(5, 7, k=4).eval()
    x = torch.randn(2, 30, 5)
    idx = ref.knn(x, x, 4)[0]  # the graph in the 5-D input space, self first
    out = conv(x)
    lin, bn, act = conv.mlp
    want = torch.empty(2, 30, 7)
    for b in range(2):
        for i in range(30):
            e = torch.stack([torch.cat([x[b, j] - x[b, i], x[b, i]]) for j in idx[b, i]])
            want[b, i] = act(bn(lin(e))).amax(0)
    torch.testing.assert_close(out, want, rtol=1e-5, atol=1e-6)


def test_graph_is_dynamic_in_feature_space(monkeypatch):
    import pointlib.nn.edgeconv as ec

    dims = []
    real = ec.knn

    def spy(x, k, *a, **kw):
        dims.append(x.shape[-1])
        return real(x, k, *a, **kw)

    monkeypatch.setattr(ec, "knn", spy)
    model = create_model("dgcnn_cls_tiny", num_classes=5).eval()
    model(make_cloud(2, 64)[0])
    assert dims == [3, 16, 16]  # coordinates, then the features of layers 1 and 2


def test_full_model_shape_and_size():
    model = create_model("dgcnn_cls", num_classes=40).eval()
    n = sum(p.numel() for p in model.parameters())
    # Wang et al.'s ModelNet40 network has ~1.8 M parameters
    assert 1.7e6 < n < 1.9e6, n
    with torch.no_grad():
        out = model(make_cloud(2, 256)[0])
    assert out.shape == (2, 40) and torch.isfinite(out).all()


def test_train_step_and_not_rotation_invariant():
    torch.manual_seed(0)
    model = create_model("dgcnn_cls_tiny", num_classes=3)
    xyz = make_cloud(4, 96, generator=torch.Generator().manual_seed(1))[0]
    loss = torch.nn.functional.cross_entropy(model(xyz), torch.tensor([0, 1, 2, 0]))
    loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    model.eval()
    c, s = torch.cos(torch.tensor(1.0)), torch.sin(torch.tensor(1.0))
    R = torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    with torch.no_grad():
        assert (model(xyz) - model(xyz @ R.T)).abs().max() > 1e-3
