"""Model and training configs: named ones (`tiny` for 2 CPU cores up to `large` for GPUs) and YAML files.

Sizes: `base` and `large` are GLM's GLM_Base (12 layers, 768 hidden, 12 heads) and GLM_Large (24 layers,
1024 hidden, 16 heads) from Du et al. 2022, Table 1; d_ff = 4 * d_model. MoE defaults follow Switch (Fedus et
al. 2021: capacity factor 1.25, balance coefficient 1e-2) and GShard (Lepikhin et al. 2020: MoE in every other
layer). `vocab_size`, `image_code_offset` and `pad_id` come from `vocab.json` at train time (`with_vocab`).

A YAML file holds field: value pairs, optionally `base: NAME` to start from a named config; unknown keys
are an error.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, fields, replace


@dataclass(frozen=True)
class Config:
    # model
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    d_ff: int = 512
    seq_len: int = 256
    dropout: float = 0.0
    sandwich_ln: bool | None = None   # None: the model's default (CogView on, GLM off)
    pb_relax: bool | None = None      # None: the model's default (CogView on, GLM off)
    pb_relax_alpha: float = 32.0      # CogView sec. 3.1
    ln_eps: float = 1e-5
    # vocabulary (from vocab.json; see with_vocab)
    vocab_size: int = 0
    image_code_offset: int | None = None
    pad_id: int | None = None
    # GLM objectives mixed per batch: [MASK] spans, [sMASK] sentences, [gMASK] document ends (THUDM GLM-Large
    # multi-task: 0.5 / 0.3 / 0.2)
    glm_objectives: tuple[float, float, float] = (0.5, 0.3, 0.2)
    # CogView loss weights per target token kind
    text_loss_weight: float = 1.0
    image_loss_weight: float = 1.0
    # share of CogView samples trained image-to-text (`[BOI2] image [EOI2] [ROI2] caption`), for self-reranking
    caption_share: float = 0.0
    # mixture of experts (num_experts 0 = dense)
    num_experts: int = 0
    moe_gate: str = "switch"
    moe_top_k: int | None = None      # None: the gate's own (switch 1, gshard 2)
    capacity_factor: float = 1.25
    moe_every_n_layers: int = 2
    moe_balance_weight: float = 1e-2
    expert_parallel: bool = False     # under torchrun: each rank holds num_experts / world of every MoE layer
    # optimizer and schedule
    lr: float = 1e-3
    warmup_steps: int = 50
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0
    batch_size: int = 8
    grad_accum: int = 1
    max_steps: int = 1000
    bf16: bool = False                # bf16 autocast; on a GPU without bf16 it becomes fp16 with loss scaling
    fp16: bool = False                # fp16 autocast with dynamic loss scaling (torch.amp.GradScaler)
    eval_every: int = 100
    eval_batches: int = 8
    # GLM masking in this many worker processes, ahead of training (0: on the training thread)
    mask_workers: int = 0
    # checkpoints: every `checkpoint_every` steps (0: only at the end), the newest `keep_checkpoints` kept
    checkpoint_every: int = 0
    keep_checkpoints: int = 3

    def __post_init__(self) -> None:
        for name in ("d_model", "n_layers", "n_heads", "d_ff", "seq_len", "batch_size", "grad_accum",
                     "moe_every_n_layers"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}")
        if self.mask_workers < 0:
            raise ValueError("mask_workers must be >= 0")
        if self.bf16 and self.fp16:
            raise ValueError("choose one of bf16 and fp16")
        if self.checkpoint_every < 0 or self.keep_checkpoints < 1:
            raise ValueError("checkpoint_every must be >= 0 and keep_checkpoints >= 1")
        if self.num_experts < 0 or self.vocab_size < 0:
            raise ValueError("num_experts and vocab_size must be >= 0")
        if not 0.0 <= self.dropout < 1.0 or not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError("dropout must be in [0, 1) and min_lr_ratio in [0, 1]")
        if not 0.0 <= self.caption_share <= 1.0:
            raise ValueError("caption_share must be in [0, 1]")
        if self.lr <= 0 or self.pb_relax_alpha <= 0 or self.text_loss_weight < 0 or self.image_loss_weight < 0:
            raise ValueError("lr and pb_relax_alpha must be positive, loss weights non-negative")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


CONFIGS: dict[str, Config] = {
    "tiny": Config(),
    "small": Config(d_model=512, n_layers=8, n_heads=8, d_ff=2048, seq_len=512, dropout=0.1, lr=6e-4,
                    warmup_steps=1000, batch_size=32, max_steps=50_000, bf16=True, eval_every=1000, eval_batches=50,
                    checkpoint_every=1000, mask_workers=2),
    "base": Config(d_model=768, n_layers=12, n_heads=12, d_ff=3072, seq_len=512, dropout=0.1, lr=4e-4,
                   warmup_steps=2000, batch_size=64, max_steps=200_000, bf16=True, eval_every=2000, eval_batches=100,
                   checkpoint_every=2000, mask_workers=2),
    "large": Config(d_model=1024, n_layers=24, n_heads=16, d_ff=4096, seq_len=512, dropout=0.1, lr=2e-4,
                    warmup_steps=2000, batch_size=64, grad_accum=4, max_steps=200_000, bf16=True, eval_every=2000,
                    eval_batches=100, checkpoint_every=2000, mask_workers=2),
}


def load_config(name_or_path: str, **overrides) -> Config:
    """A named config (`tiny`, `small`, `base`, `large`) or a YAML file, with keyword overrides on top."""
    if name_or_path in CONFIGS:
        cfg, data = CONFIGS[name_or_path], {}
    elif os.path.isfile(name_or_path):
        import yaml
        with open(name_or_path, encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{name_or_path}: a config file must be a mapping of field: value")
        base = data.pop("base", "tiny")
        if base not in CONFIGS:
            raise ValueError(f"{name_or_path}: unknown base config {base!r} (have {sorted(CONFIGS)})")
        cfg = CONFIGS[base]
    else:
        raise ValueError(f"no config named {name_or_path!r} (have {sorted(CONFIGS)}) and no such file")
    data.update(overrides)
    known = {f.name for f in fields(Config)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown config fields {unknown}")
    for name in ("betas", "glm_objectives"):
        if isinstance(data.get(name), list):
            data[name] = tuple(data[name])
    return replace(cfg, **data)


def with_vocab(cfg: Config, vocab) -> Config:
    """Fill the vocabulary fields from a `tokenizer.vocab.Vocab`."""
    return replace(cfg, vocab_size=vocab.total_size, image_code_offset=vocab.image_code_offset,
                   pad_id=vocab.token_id("[PAD]"))
