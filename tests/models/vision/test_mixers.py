"""Token mixers of the non-timm backbones against explicit re-derivations of the papers' formulas.

Each oracle is written out independently (materialised weights, per-pixel loops) in float64 and
compared with the module, which runs through :mod:`pointlib.attention`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pointlib.models.vision.biformer import BiLevelRoutingAttention
from pointlib.models.vision.inline import InLineAttention, RALAAttention, apply_rope, rope_2d
from pointlib.models.vision.nat import NeighborhoodAttention2d
from pointlib.models.vision.transnext import AggregatedAttention, pooled_offsets


def setup_module():
    torch.set_default_dtype(torch.float64)


def teardown_module():
    torch.set_default_dtype(torch.float32)


def _heads(t, h):
    b, n, c = t.shape
    return t.reshape(b, n, h, c // h).transpose(1, 2)


def _randomise(module, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))


def test_inline_attention_matches_materialised_weights():
    torch.manual_seed(0)
    b, h, w, c, nh = 2, 3, 4, 12, 3
    n = 1 + h * w
    m = InLineAttention(c, nh).double()
    _randomise(m)
    x = torch.randn(b, n, c)
    q, k, v = (_heads(t, nh) for t in m.qkv(x).chunk(3, -1))
    s = (c // nh) ** -0.5
    sim = q @ k.transpose(-1, -2)
    weights = s / n * (sim - sim.mean(-1, keepdim=True)) + 1.0 / n  # rows sum to one
    torch.testing.assert_close(weights.sum(-1), torch.ones(b, nh, n))
    out = (weights @ v).transpose(1, 2).reshape(b, n, c)
    kern = m.residual(x.mean(1).unsqueeze(-1)).reshape(b, c, 3, 3)
    vp = v[:, :, 1:].transpose(1, 2).reshape(b, h, w, c)
    local = torch.zeros(b, h, w, c)
    for dy in range(3):
        for dx in range(3):
            shifted = F.pad(vp, (0, 0, 1, 1, 1, 1))[:, dy : dy + h, dx : dx + w]
            local += shifted * kern[:, None, None, :, dy, dx]
    out[:, 1:] += local.reshape(b, h * w, c)
    torch.testing.assert_close(m(x, (h, w)), m.proj(out))


def test_rala_attention_matches_reference_formula():
    torch.manual_seed(0)
    b, h, w, c, nh = 2, 3, 4, 16, 2
    n, d = h * w, c // nh
    m = RALAAttention(c, nh).double()
    _randomise(m)
    x = torch.randn(b, n, c)
    q, k, v, o = m.qkvo(x).chunk(4, -1)
    lepe = m.lepe(v.transpose(1, 2).reshape(b, c, h, w)).flatten(2).transpose(1, 2)
    q, k, v = (_heads(t, nh) for t in (q, k, v))
    q, k = F.elu(q) + 1, F.elu(k) + 1
    alpha = torch.softmax(d**-0.5 * q.mean(2, keepdim=True) @ k.transpose(-1, -2), -1)
    k = k * alpha.transpose(-1, -2) * n  # key reweighting
    sin, cos = rope_2d(h, w, d)
    qr, kr = apply_rope(q, sin, cos), apply_rope(k, sin, cos)
    num = (qr @ kr.transpose(-1, -2)) @ v
    den = q @ k.sum(2, keepdim=True).transpose(-1, -2)
    out = (num / den).transpose(1, 2).reshape(b, n, c) + lepe
    torch.testing.assert_close(m(x, (h, w)), m.proj(out * o))


def test_neighborhood_attention_matches_per_pixel_loop():
    torch.manual_seed(0)
    b, h, w, c, nh, k = 1, 5, 6, 8, 2, 3
    m = NeighborhoodAttention2d(c, nh, k).double()
    _randomise(m)
    x = torch.randn(b, h, w, c)
    q, kk, v = (t.reshape(b, h, w, nh, -1) for t in m.attn.qkv(x).chunk(3, -1))
    table = m.attn.bias.table.view(nh, 2 * k - 1, 2 * k - 1)
    out = torch.zeros(b, h, w, nh, c // nh)
    for i in range(h):
        for j in range(w):
            y0 = min(max(i - k // 2, 0), h - k)  # NATTEN: window shifted inward at borders
            x0 = min(max(j - k // 2, 0), w - k)
            keys = kk[:, y0 : y0 + k, x0 : x0 + k].reshape(b, k * k, nh, -1)
            vals = v[:, y0 : y0 + k, x0 : x0 + k].reshape(b, k * k, nh, -1)
            dy = torch.arange(y0, y0 + k)[:, None] - i + k - 1
            dx = torch.arange(x0, x0 + k)[None, :] - j + k - 1
            bias = table[:, dy, dx].reshape(nh, k * k)
            logit = torch.einsum("bhd,bkhd->bhk", q[:, i, j], keys) * (c // nh) ** -0.5 + bias
            out[:, i, j] = torch.einsum("bhk,bkhd->bhd", logit.softmax(-1), vals)
    torch.testing.assert_close(m(x), m.attn.proj(out.reshape(b, h, w, c)))


def test_bi_level_routing_matches_naive_routing():
    torch.manual_seed(0)
    b, h, w, c, nh, n_win, topk = 2, 4, 4, 8, 2, 2, 2
    m = BiLevelRoutingAttention(c, nh, n_win=n_win, topk=topk).double()
    _randomise(m)
    x = torch.randn(b, h, w, c)
    q, k, v = m.qkv(x).split([c, c, c], -1)
    r = h // n_win
    regions = [
        [(y, xx) for y in range(gy * r, gy * r + r) for xx in range(gx * r, gx * r + r)]
        for gy in range(n_win)
        for gx in range(n_win)
    ]
    out = torch.zeros(b, h, w, c)
    for bi in range(b):
        qm = torch.stack([torch.stack([q[bi, y, xx] for y, xx in reg]).mean(0) for reg in regions])
        km = torch.stack([torch.stack([k[bi, y, xx] for y, xx in reg]).mean(0) for reg in regions])
        chosen = (qm @ km.t()).topk(topk, -1).indices
        for g, reg in enumerate(regions):
            keys = [p for rr in chosen[g].tolist() for p in regions[rr]]
            kk = torch.stack([k[bi, y, xx] for y, xx in keys]).view(len(keys), nh, -1)
            vv = torch.stack([v[bi, y, xx] for y, xx in keys]).view(len(keys), nh, -1)
            for y, xx in reg:
                qq = q[bi, y, xx].view(nh, -1)
                a = (torch.einsum("hd,khd->hk", qq, kk) * c**-0.5).softmax(-1)
                out[bi, y, xx] = torch.einsum("hk,khd->hd", a, vv).reshape(c)
    lepe = m.lepe(v.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
    torch.testing.assert_close(m(x), m.wo(out + lepe))


def test_aggregated_attention_matches_unfold_reference():
    torch.manual_seed(0)
    b, h, w, c, nh, sr = 2, 4, 4, 8, 2, 2
    n, d, kk = h * w, c // nh, 9
    m = AggregatedAttention(c, nh, sr).double()
    _randomise(m)
    x = torch.randn(b, n, c)
    ph, pw = h // sr, w // sr
    q_norm = F.normalize(_heads(m.q(x), nh), dim=-1)
    # valid local keys per pixel from unfolding a ones map
    ones = F.unfold(torch.ones(1, 1, h, w), 3, padding=1)[0]  # [9, N]
    scale = torch.log(ones.sum(0) + ph * pw).view(1, 1, n, 1)
    qs = (q_norm + m.query_embedding) * F.softplus(m.temperature) * scale
    k, v = m.kv(x).chunk(2, -1)
    k = F.normalize(k.view(b, n, nh, d), dim=-1).view(b, n, c)
    kv_map = torch.cat([k, v], -1).transpose(1, 2).reshape(b, 2 * c, h, w)
    kl, vl = (
        F.unfold(kv_map, 3, padding=1).view(b, 2 * nh, d, kk, n).permute(0, 1, 4, 2, 3).chunk(2, 1)
    )
    a_local = (qs.unsqueeze(-2) @ kl).squeeze(-2) + m.relative_pos_bias_local[:, None]
    a_local = a_local.masked_fill(ones.t()[None, None] == 0, float("-inf"))
    pooled = F.adaptive_avg_pool2d(m.act(m.sr(x.transpose(1, 2).reshape(b, c, h, w))), (ph, pw))
    pooled = m.norm(pooled.flatten(2).transpose(1, 2))
    kp, vp = (_heads(t, nh) for t in m.kv(pooled).chunk(2, -1))
    table, index = pooled_offsets((h, w), (ph, pw), (h, w))
    pool_bias = m.cpb(table[None])[0][:, index]
    a_pool = qs @ F.normalize(kp, dim=-1).transpose(-1, -2) + pool_bias
    attn = torch.cat([a_local, a_pool], -1).softmax(-1)
    al, ap = attn.split([kk, ph * pw], -1)
    dyn = q_norm @ m.learnable_tokens + m.learnable_bias + al
    out = (dyn.unsqueeze(-2) @ vl.transpose(-2, -1)).squeeze(-2) + ap @ vp
    expected = m.proj(out.transpose(1, 2).reshape(b, n, c))
    torch.testing.assert_close(m(x, (h, w), (h, w)), expected)


def test_shvit_single_head_attention_matches_a_per_query_loop():
    from pointlib.models.vision.shvit import SingleHeadAttention

    torch.manual_seed(0)
    dim, qk, pdim, h, w = 10, 4, 6, 3, 4
    mod = SingleHeadAttention(dim, qk, pdim).eval()
    _randomise(mod)
    with torch.no_grad():
        for bn in (mod.qkv.bn, mod.proj[1].bn):
            bn.running_var.uniform_(0.5, 1.5)
            bn.running_mean.normal_()
    x = torch.randn(2, dim, h, w, requires_grad=True)

    def loop(x):
        x1, x2 = x[:, :pdim], x[:, pdim:]
        qkv = mod.qkv(mod.pre_norm(x1)).flatten(2)  # [B, 2qk + pdim, N]
        q, k, v = qkv[:, :qk], qkv[:, qk : 2 * qk], qkv[:, 2 * qk :]
        cols = []
        for i in range(h * w):  # one query pixel at a time, over every key pixel
            logits = torch.stack([(q[:, :, i] * k[:, :, j]).sum(1) for j in range(h * w)], 1)
            a = torch.softmax(logits * qk**-0.5, dim=1)  # [B, N]
            cols.append((v * a[:, None]).sum(-1))
        x1 = torch.stack(cols, -1).view(x.shape[0], pdim, h, w)
        return mod.proj(torch.cat([x1, x2], 1))

    out, ref = mod(x), loop(x)
    torch.testing.assert_close(out, ref, atol=1e-12, rtol=1e-10)
    g = torch.randn_like(out)
    (gx,) = torch.autograd.grad((out * g).sum(), x)
    (gr,) = torch.autograd.grad((ref * g).sum(), x)
    assert gr.abs().max() > 1e-3
    torch.testing.assert_close(gx, gr, atol=1e-12, rtol=1e-10)


def test_dhvt_head_token_attention_matches_a_per_query_loop():
    from pointlib.models.vision.dhvt import HeadTokenAttention

    torch.manual_seed(0)
    b, n, c, nh = 2, 5, 12, 3
    m = HeadTokenAttention(c, nh)
    _randomise(m)
    x = torch.randn(b, n, c, requires_grad=True)

    def loop(x):
        g = c // nh
        # head token j: GELU(LN_chunk(Linear(mean over all tokens of channel group j))) + embed_j
        hts = []
        for j in range(nh):
            t = m.ht_proj(x[:, :, j * g : (j + 1) * g].mean(1))  # [b, c]
            t = torch.cat([m.ht_norm(t[:, i * g : (i + 1) * g]) for i in range(nh)], -1)
            hts.append(F.gelu(t) + m.head_embed[0, j])
        seq = torch.cat([x, torch.stack(hts, 1)], 1)  # [b, n + H, c]
        q, k, v = m.attn.qkv(seq).chunk(3, -1)
        outs = []
        for i in range(n + nh):  # one query token at a time, over every token
            heads = []
            for hd in range(nh):
                sl = slice(hd * g, (hd + 1) * g)
                a = torch.softmax((q[:, i, None, sl] * k[:, :, sl]).sum(-1) * g**-0.5, 1)
                heads.append((a[..., None] * v[:, :, sl]).sum(1))
            outs.append(torch.cat(heads, -1))
        y = m.attn.proj(torch.stack(outs, 1))
        cls = y[:, :1] + y[:, n:].mean(1, keepdim=True)
        return torch.cat([cls, y[:, 1:n]], 1)

    out, ref = m(x), loop(x)
    torch.testing.assert_close(out, ref)
    gr = torch.randn_like(out)
    (a,) = torch.autograd.grad((out * gr).sum(), x)
    (e,) = torch.autograd.grad((ref * gr).sum(), x)
    assert e.abs().max() > 1e-3
    torch.testing.assert_close(a, e)
