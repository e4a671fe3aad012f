"""Transformer pieces shared by GLM and CogView: attention, MLP, block, and CogView's two stabilizers.

* Sandwich-LN (CogView, Ding et al. 2021, sec. 3.1, Fig. 4): a second LayerNorm on the output of attention and
  of the MLP before the residual add: ``x = x + LN_out(Attn(LN_in(x)))``, the same for the MLP.
* PB-relax (CogView sec. 3.1), two parts:
  - attention: ``softmax(QK^T/sqrt(d)) = softmax((Q/(alpha*sqrt(d)) K^T - max(...)) * alpha)``: Q is scaled
    before the matmul and the row max is subtracted before multiplying by alpha, so no intermediate leaves
    the fp16 range; equal in exact arithmetic to plain attention (alpha = 32 as in the paper).
  - LayerNorm: ``LN(x) = LN(x / max|x|)`` with the max over each token's features (per token, so no token
    sees another through it; detached, it is a scale LN removes). It is used on the LayerNorms that read the
    residual stream, whose values grow with depth: each block's ``ln_attn_in`` and ``ln_mlp_in`` and the
    models' final LN. The Sandwich output LNs read bounded sub-layer outputs and stay plain. With eps > 0 the
    result is ``(x - mean) / sqrt(var + eps * max|x|^2)``, i.e. plain LN up to a slightly larger epsilon.

The MLP slot takes any module whose ``forward(x)`` returns ``y`` or ``(y, aux_dict)`` (``train/moe.py``'s
``MoEMLP``); ``Block.forward`` returns ``(x, aux_dict)``.

``KVCache`` holds each layer's keys and values of earlier positions: decoding feeds only the new tokens
(incremental decoding, as in GPT-2 and THUDM/GLM's ``mems``), and P-tuning v2 puts its trainable prompt keys and
values there. A query at new position i (absolute ``past + i``) sees a key j where its mask allows; ``causal``
means ``j <= past + i``.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class PBRelaxLayerNorm(nn.LayerNorm):
    """LayerNorm that divides its input by the per-token max |x| first (PB-relax); plain when ``relax`` is False."""

    def __init__(self, d: int, eps: float = 1e-5, relax: bool = True):
        super().__init__(d, eps=eps)
        self.relax = relax

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.relax:
            scale = x.detach().abs().amax(dim=-1, keepdim=True)
            x = x / scale.clamp_min(torch.finfo(x.dtype).tiny)
        return super().forward(x)


def pb_relax_scores(q: torch.Tensor, k: torch.Tensor, alpha: float, mask: torch.Tensor | None) -> torch.Tensor:
    """Attention logits ``(Q/(alpha*sqrt(d)) K^T - rowmax) * alpha`` with disallowed entries at -inf.
    q, k: [..., L, d]; mask: bool, True = may attend, broadcastable to [..., Lq, Lk]."""
    s = (q / (alpha * math.sqrt(q.size(-1)))) @ k.transpose(-2, -1)
    if mask is not None:
        s = s.masked_fill(~mask, float("-inf"))
    s = s - s.detach().amax(dim=-1, keepdim=True)
    return s * alpha


class LayerKV:
    """One layer's cached keys and values, [B, H, T, d] each (None while empty)."""

    def __init__(self, k: torch.Tensor | None = None, v: torch.Tensor | None = None):
        self.k, self.v = k, v

    def extend(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append the new positions' k, v; returns the keys and values of all positions."""
        if self.k is not None:
            k, v = torch.cat([self.k, k], dim=2), torch.cat([self.v, v], dim=2)
        self.k, self.v = k, v
        return k, v


class KVCache:
    """Per-layer keys and values of the positions fed so far; ``length`` positions, ``batch`` rows."""

    def __init__(self, n_layers: int):
        self.layers = [LayerKV() for _ in range(n_layers)]

    @property
    def length(self) -> int:
        k = self.layers[0].k
        return 0 if k is None else k.size(2)

    @property
    def batch(self) -> int:
        k = self.layers[0].k
        return 0 if k is None else k.size(0)

    def select(self, rows: torch.Tensor) -> "KVCache":
        """A cache of the given batch rows (beam search reorders beams this way; repeats allowed)."""
        out = KVCache(len(self.layers))
        for src, dst in zip(self.layers, out.layers):
            if src.k is not None:
                dst.k, dst.v = src.k.index_select(0, rows), src.v.index_select(0, rows)
        return out


class Attention(nn.Module):
    """Multi-head self-attention. ``forward(x [B, L, d], mask=None, causal=False, kv=None)``; ``mask`` is boolean,
    True where query i may attend key j, shaped [L, Lk], [B, L, Lk] or [B, H, L, Lk] (Lk = cached + L positions);
    each row needs one True. With ``kv`` (a ``LayerKV``) the new keys and values are appended to it first.
    Uses torch SDPA unless ``pb_relax`` (which needs the scores by hand)."""

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0, pb_relax: bool = False, alpha: float = 32.0):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
        if alpha <= 0:
            raise ValueError(f"alpha must be positive, got {alpha}")
        self.n_heads, self.pb_relax, self.alpha, self.dropout = n_heads, pb_relax, float(alpha), dropout
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, causal: bool = False,
                kv: LayerKV | None = None) -> torch.Tensor:
        B, L, D = x.shape
        q, k, v = self.qkv(x).view(B, L, 3, self.n_heads, D // self.n_heads).permute(2, 0, 3, 1, 4)
        if kv is not None:
            k, v = kv.extend(k, v)
        if mask is not None:
            if mask.dtype != torch.bool:
                raise ValueError("attention mask must be boolean (True = may attend)")
            if mask.dim() == 3:
                mask = mask[:, None]
        if causal:
            past = k.size(2) - L
            keys = torch.arange(k.size(2), device=x.device)
            tri = keys[None, :] <= torch.arange(past, past + L, device=x.device)[:, None]
            mask = tri if mask is None else mask & tri
        p = self.dropout if self.training else 0.0
        if self.pb_relax:
            att = torch.softmax(pb_relax_scores(q, k, self.alpha, mask), dim=-1)
            y = F.dropout(att, p, self.training) @ v
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        return self.proj(y.transpose(1, 2).reshape(B, L, D))


class MLP(nn.Module):
    """d_model -> d_ff -> GELU -> d_model."""

    def __init__(self, d_model: int, d_ff: int, dropout: float = 0.0):
        super().__init__()
        self.fc, self.proj, self.drop = nn.Linear(d_model, d_ff), nn.Linear(d_ff, d_model), nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.proj(F.gelu(self.fc(x))))


class Block(nn.Module):
    """Pre-LN transformer block, optionally Sandwich-LN and PB-relax; ``forward(x, mask, causal, kv) -> (x, aux)``."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float = 0.0, sandwich_ln: bool = False,
                 pb_relax: bool = False, mlp: nn.Module | None = None, alpha: float = 32.0, ln_eps: float = 1e-5):
        super().__init__()
        self.ln_attn_in = PBRelaxLayerNorm(d_model, ln_eps, relax=pb_relax)
        self.attn = Attention(d_model, n_heads, dropout, pb_relax, alpha)
        self.ln_mlp_in = PBRelaxLayerNorm(d_model, ln_eps, relax=pb_relax)
        self.mlp = MLP(d_model, d_ff, dropout) if mlp is None else mlp
        self.ln_attn_out = nn.LayerNorm(d_model, eps=ln_eps) if sandwich_ln else nn.Identity()
        self.ln_mlp_out = nn.LayerNorm(d_model, eps=ln_eps) if sandwich_ln else nn.Identity()
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, causal: bool = False,
                kv: LayerKV | None = None):
        x = x + self.drop(self.ln_attn_out(self.attn(self.ln_attn_in(x), mask, causal, kv)))
        out = self.mlp(self.ln_mlp_in(x))
        y, aux = out if isinstance(out, tuple) else (out, {})
        return x + self.ln_mlp_out(y), aux


def block_mlp(cfg, layer: int, expert_group=None) -> nn.Module | None:
    """The MLP for block ``layer`` under config ``cfg``: None (dense MLP) or a ``MoEMLP`` when
    ``cfg.num_experts > 0`` and ``(layer + 1) % cfg.moe_every_n_layers == 0`` (GShard puts MoE in every other
    layer: every_n 2); its experts split over ``expert_group`` when one is given."""
    if cfg.num_experts <= 0 or (layer + 1) % cfg.moe_every_n_layers:
        return None
    from train.moe import MoEMLP
    return MoEMLP(cfg.d_model, cfg.d_ff, cfg.num_experts, gate=cfg.moe_gate, top_k=cfg.moe_top_k,
                  capacity_factor=cfg.capacity_factor, dropout=cfg.dropout, expert_group=expert_group)


def init_weights(model: nn.Module, n_layers: int, std: float = 0.02) -> None:
    """GPT-2 / Megatron init for every ``nn.Linear`` and ``nn.Embedding``: N(0, std) weights, zero biases, and
    the residual output projections (``attn.proj``, ``mlp.proj``) at std / sqrt(2 * n_layers). LayerNorms stay
    (1, 0); MoE expert tensors keep the init of ``MoEMLP``."""
    for name, m in model.named_modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            out_proj = name.endswith("attn.proj") or name.endswith("mlp.proj")
            nn.init.normal_(m.weight, 0.0, std / math.sqrt(2 * n_layers) if out_proj else std)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)


def aux_total(auxes: list[dict]) -> torch.Tensor | float:
    """Sum of the blocks' ``balance_loss`` entries (0.0 when no block reports one)."""
    losses = [a["balance_loss"] for a in auxes if "balance_loss" in a]
    return torch.stack(losses).sum() if losses else 0.0
