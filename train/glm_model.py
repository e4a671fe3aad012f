"""GLM (Du et al., ACL 2022): a transformer trained by autoregressive blank infilling.

Input = Part A (the text with each span replaced by its mask token) then Part B (the spans, each `[sop] span`).
2D positions (sec. 2.2): ids[:, 0] is the position in Part A (a Part B token takes its span's mask position),
ids[:, 1] the position inside the span (0 in Part A, 1.. in Part B); two learned tables, summed with the token
embedding. Attention: Part A tokens see all of Part A and nothing of Part B; Part B token i sees Part A and
Part B tokens up to i (`glm_attention_mask`). Pre-LN blocks (Sandwich-LN / PB-relax only if the config asks),
final LayerNorm, output head tied to the token embedding.

With a ``KVCache`` (``train/layers.py``) a call feeds only new positions after the ``past`` cached ones: key j is
visible to new query i where ``j < past + sep`` or ``j <= past + i``. Generation feeds Part A with
``sep = len(Part A)`` (bidirectional), then Part B tokens with ``sep = 0`` (each sees all earlier positions).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from train.layers import Block, PBRelaxLayerNorm, aux_total, block_mlp, init_weights


def glm_attention_mask(sep: torch.Tensor, length: int, past: int = 0) -> torch.Tensor:
    """Boolean [B, L, past + L], True where new query i may attend key j: ``j < past + sep[b] or j <= past + i``."""
    j = torch.arange(past + length, device=sep.device)
    i = torch.arange(past, past + length, device=sep.device)
    return (j[None, None, :] < past + sep[:, None, None]) | (j[None, None, :] <= i[None, :, None])


class GLMModel(nn.Module):
    """``forward(input_ids [B, L], position_ids [B, 2, L], sep [B], targets=None, loss_mask=None, cache=None)`` ->
    dict(logits [B, L, V], loss, aux_loss, aux). ``targets`` uses -100 for ignored places; ``loss_mask``
    (0/1 per place), if given, also selects them. ``loss`` is the LM loss only; the loop adds
    ``cfg.moe_balance_weight * aux_loss`` (sum of the MoE blocks' balance losses; 0.0 if dense)."""

    def __init__(self, cfg, mlp_factory=None):
        super().__init__()
        if cfg.vocab_size <= 0:
            raise ValueError("config vocab_size is unset (fill it from vocab.json with with_vocab)")
        self.cfg = cfg
        sandwich = bool(cfg.sandwich_ln) if cfg.sandwich_ln is not None else False
        relax = bool(cfg.pb_relax) if cfg.pb_relax is not None else False
        factory = mlp_factory or (lambda i: block_mlp(cfg, i))
        self.tok = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos = nn.Embedding(cfg.seq_len, cfg.d_model)
        self.block_pos = nn.Embedding(cfg.seq_len + 1, cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(
            Block(cfg.d_model, cfg.n_heads, cfg.d_ff, cfg.dropout, sandwich, relax, factory(i), cfg.pb_relax_alpha,
                  cfg.ln_eps) for i in range(cfg.n_layers))
        self.ln_f = PBRelaxLayerNorm(cfg.d_model, cfg.ln_eps, relax=relax)
        init_weights(self, cfg.n_layers)

    def forward(self, input_ids, position_ids, sep, targets=None, loss_mask=None, cache=None) -> dict:
        B, L = input_ids.shape
        if position_ids.shape != (B, 2, L) or sep.shape != (B,):
            raise ValueError(f"position_ids must be [B, 2, L] = {(B, 2, L)} and sep [B]; got "
                             f"{tuple(position_ids.shape)} and {tuple(sep.shape)}")
        if L > self.cfg.seq_len:
            raise ValueError(f"sequence of {L} tokens is longer than seq_len {self.cfg.seq_len}")
        x = self.tok(input_ids) + self.pos(position_ids[:, 0]) + self.block_pos(position_ids[:, 1])
        x = self.drop(x)
        past = 0 if cache is None else cache.length
        mask = glm_attention_mask(sep, L, past)
        auxes = []
        for i, block in enumerate(self.blocks):
            x, aux = block(x, mask, kv=None if cache is None else cache.layers[i])
            auxes.append(aux)
        logits = F.linear(self.ln_f(x), self.tok.weight)
        loss = None
        if targets is not None:
            if loss_mask is not None:
                targets = targets.masked_fill(loss_mask == 0, -100)
            loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=-100)
        return {"logits": logits, "loss": loss, "aux_loss": aux_total(auxes), "aux": auxes}
