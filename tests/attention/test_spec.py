"""AttentionSpec alone: validation, keyword options on top of a spec, the resolved options, and
the modules that build one."""

from __future__ import annotations

import pytest
import torch

from pointlib.attention import AttentionSpec, NeighborhoodAttention, attention, knn_neighborhood


def _qkv(n: int = 24, d: int = 8):
    g = torch.Generator().manual_seed(0)
    return tuple(torch.randn(2, 2, n, d, generator=g, dtype=torch.float64) for _ in range(3))


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"kernel": "cosine"}, "kernel must be one of 'softmax', 'linear', 'offset', got 'cosine'"),
        ({"backend": "triton"}, "backend must be one of"),
        ({"linear_norm": "l1"}, "linear_norm must be one of"),
        ({"l1_axis": "key"}, "l1_axis must be one of"),
        ({"feature_map": "tanh"}, "feature_map must be one of"),
        ({"dropout_p": 1.5}, r"dropout_p must lie in \[0, 1\], got 1.5"),
        ({"chunk": 0}, "chunk must be >= 1, got 0"),
    ],
)
def test_spec_rejects_values_outside_its_vocabulary(changes, match):
    with pytest.raises(ValueError, match=match):
        AttentionSpec(**changes)
    with pytest.raises(ValueError, match=match):
        AttentionSpec().replace(**changes)


def test_resolve_picks_the_path_and_the_default_scale():
    soft = AttentionSpec().resolve(16)
    assert soft.use_sdpa and soft.scale == 0.25 and not soft.return_attn
    assert not AttentionSpec().resolve(16, return_attn=True).use_sdpa
    assert not AttentionSpec(backend="explicit").resolve(16).use_sdpa
    assert AttentionSpec(kernel="offset").resolve(16).scale == 1.0
    assert AttentionSpec(kernel="linear").resolve(16).scale is None
    assert AttentionSpec(scale=0.5).resolve(16).scale == 0.5
    with pytest.raises(ValueError, match="backend='sdpa' cannot serve this call"):
        AttentionSpec(kernel="linear", backend="sdpa").resolve(16)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"kernel": "linear", "linear_norm": "injective", "feature_map": "identity"},
        {"kernel": "offset", "l1_axis": "query"},
        {"backend": "explicit", "scale": 0.3},
    ],
)
def test_keyword_options_equal_the_same_spec(options):
    q, k, v = _qkv()
    by_kwargs = attention(q, k, v, **options)
    by_spec = attention(q, k, v, spec=AttentionSpec(**options))
    assert torch.equal(by_kwargs, by_spec)


def test_keywords_apply_on_top_of_a_spec_and_unknown_ones_are_named():
    q, k, v = _qkv()
    nbr = knn_neighborhood(torch.randn(2, 24, 3, dtype=torch.float64), 5)
    spec = AttentionSpec(scale=0.1, backend="explicit")
    a = attention(q, k, v, nbr, spec, scale=0.9)
    b = attention(q, k, v, nbr, AttentionSpec(scale=0.9, backend="explicit"))
    assert torch.equal(a, b) and not torch.equal(a, attention(q, k, v, nbr, spec))
    assert spec.scale == 0.1  # frozen: the call did not change the caller's spec
    with pytest.raises(TypeError, match=r"unexpected keyword argument.*kernal"):
        attention(q, k, v, kernal="linear")
    with pytest.raises(TypeError, match="spec must be an AttentionSpec, got dict"):
        attention(q, k, v, nbr, {"kernel": "linear"})


def test_neighborhood_attention_builds_its_spec_with_dropout_only_in_training():
    layer = NeighborhoodAttention(16, heads=2, kernel="linear", attn_drop=0.25)
    spec = layer.attention_spec()
    assert spec.kernel == "linear" and spec.dropout_p == 0.25
    assert layer.eval().attention_spec().dropout_p == 0.0
    x = torch.randn(2, 10, 16)
    expect = attention(
        *(t.transpose(1, 2) for t in layer.qkv(x).reshape(2, 10, 3, 2, 8).unbind(2)),
        spec=AttentionSpec(kernel="linear"),
    )
    got = layer(x)
    ref = layer.proj(expect.transpose(1, 2).reshape(2, 10, 16))
    assert torch.equal(got, ref)
