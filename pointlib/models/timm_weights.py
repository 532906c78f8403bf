"""Load timm state dicts into pointlib's 2D backbones.

timm is not needed: pass any state dict saved by timm (``timm_model.state_dict()`` or a
``*.pth``/``*.safetensors`` file of timm weights) and a pointlib model of the same variant::

    import torch
    from pointlib.models import create_model, load_timm_weights

    model = create_model("convit_tiny")
    load_timm_weights(model, torch.load("convit_tiny.pth", map_location="cpu"))

Supported: ConViT, CrossViT, DaViT, HaloNet, VOLO and SHViT (``convit_*``, ``crossvit_*``,
``davit_*``, ``halonet26t``, ``volo_*``, ``shvit_*``). The key maps are:

=========  ====================================================================================
ConViT     GPSA ``attn.qk`` + ``attn.v`` -> fused ``attn.qkv``; ``attn.pos_proj`` /
           ``attn.gating_param`` -> ``attn.gate_pos.*`` (the core's ``GatedPositional``)
CrossViT   fusion ``attn.wq`` -> ``attn.q``; ``attn.wk`` + ``attn.wv`` -> ``attn.kv``;
           original-checkpoint ``pos_embed.0`` / ``cls_token.0`` -> ``pos_embed_0`` / ...
DaViT      identical names (the core's ``ChannelAttention`` and ``NeighborhoodAttention`` keep
           timm's ``qkv`` / ``proj``)
HaloNet    ``self_attn.kv`` rows regrouped from per-head ``[k_h; v_h]`` to ``[k; v]``;
           ``pos_embed.height_rel`` / ``width_rel`` -> ``pos.tables.0`` / ``.1``, rolled by the
           halo (timm indexes its tables from the window corner, the core from the query)
VOLO       identical names (``OutlookAttention`` keeps ``v`` / ``attn`` / ``proj``)
SHViT      identical names
=========  ====================================================================================
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

import torch
from torch import Tensor, nn

__all__ = ["convert_timm_state_dict", "load_timm_weights"]

StateDict = dict[str, Tensor]


def _unwrap(state_dict: Mapping[str, Tensor]) -> StateDict:
    for key in ("state_dict", "model"):
        inner = state_dict.get(key) if isinstance(state_dict, Mapping) else None
        if isinstance(inner, Mapping):
            return dict(inner)
    return dict(state_dict)


def _fuse(sd: StateDict, out: str, parts: list[str]) -> None:
    """Concatenate ``parts`` (weights, then biases if present) along dim 0 into ``out``."""
    for suffix in ("weight", "bias"):
        keys = [f"{p}.{suffix}" for p in parts]
        if all(k in sd for k in keys):
            sd[f"{out}.{suffix}"] = torch.cat([sd.pop(k) for k in keys], 0)


def _convit(sd: StateDict, model: nn.Module) -> StateDict:
    for key in [k for k in sd if k.endswith(".attn.qk.weight")]:
        base = key[: -len(".qk.weight")]
        _fuse(sd, f"{base}.qkv", [f"{base}.qk", f"{base}.v"])
        for name in ("pos_proj.weight", "pos_proj.bias", "gating_param"):
            if f"{base}.{name}" in sd:
                sd[f"{base}.gate_pos.{name}"] = sd.pop(f"{base}.{name}")
    return sd


def _crossvit(sd: StateDict, model: nn.Module) -> StateDict:
    out: StateDict = {}
    for key, val in sd.items():
        key = re.sub(r"^(pos_embed|cls_token)\.(\d+)$", r"\1_\2", key)
        out[key] = val
    for key in [k for k in out if k.endswith(".attn.wq.weight")]:
        base = key[: -len(".wq.weight")]
        for suffix in ("weight", "bias"):
            if f"{base}.wq.{suffix}" in out:
                out[f"{base}.q.{suffix}"] = out.pop(f"{base}.wq.{suffix}")
        _fuse(out, f"{base}.kv", [f"{base}.wk", f"{base}.wv"])
    return out


def _davit(sd: StateDict, model: nn.Module) -> StateDict:
    return sd


def _halonet(sd: StateDict, model: nn.Module) -> StateDict:
    from pointlib.models.vision.halonet import HaloAttention

    for name, mod in model.named_modules():
        if not isinstance(mod, HaloAttention):
            continue
        kv = f"{name}.kv.weight"
        if kv in sd:  # (H * 2d, C, 1, 1): per head [k_h; v_h] -> [k_1..k_H; v_1..v_H]
            w = sd[kv]
            h, d = mod.num_heads, mod.dim_head
            sd[kv] = w.view(h, 2, d, *w.shape[1:]).transpose(0, 1).reshape(w.shape)
        for i, axis in enumerate(("height_rel", "width_rel")):
            src = f"{name}.pos_embed.{axis}"
            if src in sd:
                sd[f"{name}.pos.tables.{i}"] = torch.roll(sd.pop(src), -mod.halo_size, 0)
    return sd


def _identical(sd: StateDict, model: nn.Module) -> StateDict:
    return sd


def _converter(model: nn.Module) -> Callable[[StateDict, nn.Module], StateDict]:
    from pointlib.models.vision.convit import ConViT
    from pointlib.models.vision.crossvit import CrossViT
    from pointlib.models.vision.davit import DaViT
    from pointlib.models.vision.halonet import HaloNet
    from pointlib.models.vision.shvit import SHViT
    from pointlib.models.vision.volo import VOLO

    table: list[tuple[type, Callable[[StateDict, nn.Module], StateDict]]] = [
        (ConViT, _convit),
        (CrossViT, _crossvit),
        (DaViT, _davit),
        (HaloNet, _halonet),
        (VOLO, _identical),
        (SHViT, _identical),
    ]
    for cls, fn in table:
        if isinstance(model, cls):
            return fn
    names = ", ".join(cls.__name__ for cls, _ in table)
    raise TypeError(f"no timm weight mapping for {type(model).__name__}; supported: {names}")


def convert_timm_state_dict(model: nn.Module, state_dict: Mapping[str, Tensor]) -> StateDict:
    """Rename/reshape a timm state dict into ``model``'s key layout (no loading)."""
    return _converter(model)(_unwrap(state_dict), model)


def load_timm_weights(
    model: nn.Module, state_dict: Mapping[str, Tensor], *, strict: bool = True
) -> nn.Module:
    """Load timm weights into a pointlib backbone of the same variant.

    Args:
        model: a pointlib ConViT / CrossViT / DaViT / HaloNet / VOLO / SHViT.
        state_dict: a timm state dict (optionally nested under ``"state_dict"`` or ``"model"``).
        strict: require every key to match (``False``: skip missing/unexpected keys, e.g. a
            classifier with another number of classes, but still reject shape mismatches).

    Returns:
        ``model`` (weights loaded in place).

    Raises:
        TypeError: the model family has no timm mapping.
        ValueError: keys or shapes do not match (usually a different variant or image size).
    """
    sd = convert_timm_state_dict(model, state_dict)
    own = model.state_dict()
    bad = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in sd.items()
        if k in own and own[k].shape != v.shape
    ]
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    if bad or (strict and (missing or unexpected)):
        lines = [f"timm weights do not fit {type(model).__name__}:"]
        lines += [f"  shape mismatch {b}" for b in bad[:8]]
        if strict:
            lines += [f"  missing {k}" for k in missing[:8]]
            lines += [f"  unexpected {k}" for k in unexpected[:8]]
        lines.append("  (is it the same variant, img_size and num_classes as the timm model?)")
        raise ValueError("\n".join(lines))
    model.load_state_dict({k: v for k, v in sd.items() if k in own}, strict=False)
    return model
