"""CogView (Ding et al. 2021): a decoder-only transformer over `[ROI1] text [BASE] [BOI1] image codes [EOI1]`.

Causal attention, learned positions, Sandwich-LN and PB-relax on by default (sec. 3.1), final LayerNorm, head tied
to the token embedding. The loss is a weighted mean over next-token targets: image-code targets (ids in
`[image_code_offset, vocab_size)`, `Vocab.is_image_code`) weigh `image_loss_weight`, all other targets
`text_loss_weight`; `[PAD]` targets are ignored. The paper (sec. 2.3) finds text modeling is key: with text
loss weight 0 the model fails to connect images to their captions, so keep the text weight above zero.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from train.layers import Block, PBRelaxLayerNorm, aux_total, block_mlp, init_weights


class CogViewModel(nn.Module):
    """``forward(ids [B, L], text_weight=None, image_weight=None)`` -> dict(logits, loss, text_loss, image_loss,
    n_text, n_image, aux_loss, aux); weights default to the config's. text_loss / image_loss are plain means
    over their targets (0.0 when there are none). ``loss`` excludes the MoE term (see GLMModel)."""

    def __init__(self, cfg, mlp_factory=None):
        super().__init__()
        if cfg.vocab_size <= 0 or cfg.image_code_offset is None:
            raise ValueError("config vocab_size / image_code_offset unset (fill them with configs.with_vocab)")
        self.cfg = cfg
        sandwich = True if cfg.sandwich_ln is None else bool(cfg.sandwich_ln)
        relax = True if cfg.pb_relax is None else bool(cfg.pb_relax)
        factory = mlp_factory or (lambda i: block_mlp(cfg, i))
        self.tok = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos = nn.Embedding(cfg.seq_len, cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(
            Block(cfg.d_model, cfg.n_heads, cfg.d_ff, cfg.dropout, sandwich, relax, factory(i), cfg.pb_relax_alpha,
                  cfg.ln_eps) for i in range(cfg.n_layers))
        self.ln_f = PBRelaxLayerNorm(cfg.d_model, cfg.ln_eps, relax=relax)
        init_weights(self, cfg.n_layers)

    def logits(self, ids: torch.Tensor, cache=None, last: int | None = None):
        """(logits [B, L, V], auxes) of `ids`; with a ``KVCache``, `ids` are the positions after the cached ones;
        with `last`, the logits of the last `last` positions only (the head is the largest matmul)."""
        B, L = ids.shape
        past = 0 if cache is None else cache.length
        if past + L > self.cfg.seq_len:
            raise ValueError(f"sequence of {past + L} tokens is longer than seq_len {self.cfg.seq_len}")
        x = self.drop(self.tok(ids) + self.pos(torch.arange(past, past + L, device=ids.device)))
        auxes = []
        for i, block in enumerate(self.blocks):
            x, aux = block(x, causal=True, kv=None if cache is None else cache.layers[i])
            auxes.append(aux)
        if last is not None:
            x = x[:, -last:]
        return F.linear(self.ln_f(x), self.tok.weight), auxes

    def forward(self, ids, text_weight: float | None = None, image_weight: float | None = None) -> dict:
        cfg = self.cfg
        tw = cfg.text_loss_weight if text_weight is None else float(text_weight)
        iw = cfg.image_loss_weight if image_weight is None else float(image_weight)
        logits, auxes = self.logits(ids)
        targets = ids[:, 1:]
        ce = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), targets.flatten(), reduction="none")
        is_image = (targets.flatten() >= cfg.image_code_offset) & (targets.flatten() < cfg.vocab_size)
        valid = torch.ones_like(is_image) if cfg.pad_id is None else targets.flatten() != cfg.pad_id
        is_text = valid & ~is_image
        n_text, n_image = is_text.sum(), is_image.sum()
        text_sum, image_sum = (ce * is_text).sum(), (ce * is_image).sum()
        denom = tw * n_text + iw * n_image
        loss = (tw * text_sum + iw * image_sum) / denom.clamp_min(1e-12)
        return {"logits": logits, "loss": loss, "text_loss": text_sum / n_text.clamp_min(1),
                "image_loss": image_sum / n_image.clamp_min(1), "n_text": int(n_text), "n_image": int(n_image),
                "aux_loss": aux_total(auxes), "aux": auxes}


@torch.no_grad()
def generate_image_codes(model: CogViewModel, text_ids, vocab, grid: int = 32, temperature: float = 1.0,
                         top_k: int | None = None, generator: torch.Generator | None = None,
                         num_codes: int | None = None, top_p: float | None = None, num_samples: int = 1,
                         use_cache: bool = True) -> torch.Tensor:
    """Sample `num_samples` grid x grid images after `[ROI1] text [BASE] [BOI1]`, row-major; returns raw codes
    (0..vocab.image_codes-1, LongTensor [num_samples, grid*grid]) for the VQ decoder. Only image-code ids are
    sampled, and with `num_codes` only the first `num_codes` of them (the VQ's codebook size). With `use_cache`
    (default) the prefix is fed once into a ``KVCache`` and each step feeds one code per sample; without it every
    step recomputes the whole sequence (the reference the cache is tested and benchmarked against)."""
    from train.decoding import Decoding, pick_next
    from train.layers import KVCache

    if grid < 1 or temperature <= 0 or num_samples < 1:
        raise ValueError("grid and num_samples must be >= 1 and temperature > 0")
    text = [int(t) for t in (text_ids.tolist() if hasattr(text_ids, "tolist") else text_ids)]
    if not text or not all(vocab.is_text(t) for t in text):
        raise ValueError("text_ids must be a non-empty list of text-piece ids")
    prefix = [vocab.token_id("[ROI1]")] + text + [vocab.token_id("[BASE]"), vocab.token_id("[BOI1]")]
    if len(prefix) + grid * grid - 1 > model.cfg.seq_len:
        raise ValueError(f"prefix {len(prefix)} + {grid * grid} codes do not fit seq_len {model.cfg.seq_len}")
    lo, hi = vocab.image_code_offset, vocab.total_size
    if num_codes is not None:  # the VQ in use may have fewer codes than the id space reserves
        if not 1 <= num_codes <= vocab.image_codes:
            raise ValueError(f"num_codes must be in 1..{vocab.image_codes}")
        hi = lo + num_codes
    rule = Decoding("sample", temperature=temperature, top_k=top_k, top_p=top_p)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    ids = torch.tensor([prefix], dtype=torch.long, device=device)
    cache = KVCache(len(model.blocks)) if use_cache else None
    logits = model.logits(ids, cache, last=1)[0][:, -1].expand(num_samples, -1)
    if use_cache:
        cache = cache.select(torch.zeros(num_samples, dtype=torch.long, device=device))
    else:
        ids = ids.expand(num_samples, -1)
    codes = []
    for step in range(grid * grid):
        k = pick_next(logits[:, lo:hi], rule, generator)
        codes.append(k)
        if step == grid * grid - 1:
            break
        new = (lo + k)[:, None].to(device)
        if use_cache:
            logits = model.logits(new, cache)[0][:, -1]
        else:
            ids = torch.cat([ids, new], dim=1)
            logits = model.logits(ids, last=1)[0][:, -1]
    model.train(was_training)
    return torch.stack(codes, dim=1).cpu()


@torch.no_grad()
def caption_scores(model: CogViewModel, text_ids, codes: torch.Tensor, vocab) -> torch.Tensor:
    """CogView's self-reranking score (Ding et al. 2021, sec. 4.2, "Caption Score"): for each image's codes
    (rows of [N, grid*grid]), the mean log-probability per token of `text <|endoftext|>` after
    `[BOI2] codes [EOI2] [ROI2]`, under a model trained in both directions (config `caption_share` > 0)."""
    from tokenizer.cogview import caption_sample

    text = [int(t) for t in (text_ids.tolist() if hasattr(text_ids, "tolist") else text_ids)]
    rows = [caption_sample(text, c, vocab) for c in codes.tolist()]
    if len(rows[0]) > model.cfg.seq_len:
        raise ValueError(f"caption sample of {len(rows[0])} tokens is longer than seq_len {model.cfg.seq_len}")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    ids = torch.tensor(rows, dtype=torch.long, device=device)
    n = len(text) + 1   # the targets: text and <|endoftext|>, predicted from the positions before them
    logits = model.logits(ids[:, :-1], last=n)[0]
    logp = torch.log_softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), dim=-1)
    scored = logp.gather(2, ids[:, -n:, None]).squeeze(2)
    model.train(was_training)
    return scored.mean(dim=1).cpu()
