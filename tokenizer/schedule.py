"""The one learning-rate schedule shape the project trains with: linear warm-up, then half a cosine down to a floor.

`warmup_cosine(step, warmup, decay_steps, min_ratio)` is the multiplier of the base learning rate at a 0-based
`step` (Loshchilov & Hutter 2017, "SGDR", with the linear warm-up of Goyal et al. 2017). Its two users:

- `tokenizer.vq_train.lr_factor` (`lr_schedule="cosine"`): floor 0.1, reached at the last step (`steps - 1`);
- `train.loop.lr_at`: floor `min_lr_ratio`, reached at step `total`.

It lives in `tokenizer/` because that is the lower of the two rooms that use it: `train/` may import `tokenizer/`
(DESIGN.md) but not the other way round, and `shards/` is only about tar files. Plain `math`: no torch, no Beam.
"""
from __future__ import annotations

import math


def warmup_cosine(step: int, warmup: int, decay_steps: int, min_ratio: float) -> float:
    """Multiplier at 0-based `step`: `(step + 1) / warmup` for the first `warmup` steps (1 at the last of them),
    then `min_ratio + (1 - min_ratio) * (1 + cos(pi * progress)) / 2` with `progress = (step - warmup) /
    max(1, decay_steps)` capped at 1, so 1 right after warm-up and `min_ratio` from `warmup + decay_steps` on."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, decay_steps))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
