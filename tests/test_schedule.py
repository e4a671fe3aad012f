"""One warm-up + cosine schedule (tokenizer/schedule.py) behind both the VQ trainer's `lr_schedule="cosine"` and
the GLM/CogView loop's `lr_at`: the same multiplier at every step as the two formulas it replaced, written out
here as they were."""
from __future__ import annotations

import math

import pytest

from tokenizer.schedule import warmup_cosine
from tokenizer.vq_train import lr_factor


def old_vq_factor(step: int, steps: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup - 1)
    return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def old_loop_lr(step: int, lr: float, warmup_steps: int, min_lr_ratio: float, total: int) -> float:
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total - warmup_steps))
    floor = lr * min_lr_ratio
    return floor + 0.5 * (lr - floor) * (1.0 + math.cos(math.pi * progress))


@pytest.mark.parametrize("steps, warmup", [(10, 4), (10, 0), (1, 0), (2, 1), (5, 5), (7, 10), (1000, 37)])
def test_vq_cosine_is_unchanged(steps, warmup):
    for step in range(steps + 3):       # past the end too
        assert lr_factor(step, steps, "cosine", warmup) == old_vq_factor(step, steps, warmup)
        assert lr_factor(step, steps, "constant", warmup) == 1.0


@pytest.mark.parametrize("lr, warmup, ratio, total", [
    (1.0, 10, 0.1, 100), (3e-4, 0, 0.1, 50), (6e-4, 200, 0.0, 5000), (1e-3, 5, 0.5, 5), (2e-4, 8, 0.1, 3),
    (1e-3, 0, 1.0, 10), (5e-4, 1, 0.05, 1),
])
def test_loop_cosine_is_unchanged(lr, warmup, ratio, total):
    from train.configs import load_config
    from train.loop import lr_at

    cfg = load_config("tiny", lr=lr, warmup_steps=warmup, min_lr_ratio=ratio)
    for step in range(total + 3):
        assert lr_at(step, cfg, total) == pytest.approx(old_loop_lr(step, lr, warmup, ratio, total),
                                                        rel=1e-12, abs=0.0)


def test_shape():
    assert [warmup_cosine(s, 4, 10, 0.1) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert warmup_cosine(4, 4, 10, 0.1) == 1.0
    assert warmup_cosine(9, 4, 10, 0.1) == pytest.approx(0.55)
    assert warmup_cosine(14, 4, 10, 0.1) == pytest.approx(0.1)
    assert warmup_cosine(99, 4, 10, 0.1) == pytest.approx(0.1)
    values = [warmup_cosine(s, 4, 10, 0.2) for s in range(4, 15)]
    assert values == sorted(values, reverse=True)
