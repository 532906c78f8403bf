"""A tiny backbone learns scikit-learn's bundled 8x8 digits (no download) well above chance."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pointlib.models import create_model

datasets = pytest.importorskip("sklearn.datasets")


def test_convit_tiny_learns_digits():
    torch.manual_seed(0)
    digits = datasets.load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0  # [1797, 1, 8, 8]
    x = (x - 0.3) / 0.4
    y = torch.tensor(digits.target)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    train, test = perm[:1400], perm[1400:]
    # 2x2 patches -> 16 tokens; one GPSA block, one plain self-attention block, mean-pooled head
    model = create_model(
        "convit_test_tiny",
        img_size=8,
        patch_size=2,
        in_chans=1,
        depth=2,
        local_up_to_layer=1,
        embed_dim=32,
        global_pool="avg",
    )
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.01)
    model.train()
    for _epoch in range(4):
        order = train[torch.randperm(len(train))]
        for i in range(0, len(order), 50):
            idx = order[i : i + 50]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        acc = (model(x[test]).argmax(1) == y[test]).float().mean().item()
    # ~0.75 after 4 epochs; chance is 0.1
    assert acc > 0.5, f"test accuracy {acc:.3f} (chance 0.1)"
