"""Training tokens/s on CPU for the tiny configs, side by side with a plain PyTorch reference.

    .venv/bin/python bench/train_throughput.py [--steps 20] [--threads 2]   # writes bench/results/train_throughput.md

Each row trains the model on the same synthetic batches (batch 8 x seq_len 256 tokens, the `tiny` config:
d_model 128, 4 layers, 4 heads, d_ff 512) with AdamW, forward + backward + step, and reports input tokens per
second (median of 3 timed windows after 3 warm-up steps). The reference is `torch.nn.TransformerEncoder`
(PyTorch's own fused layer, norm_first, causal mask) of the same width and depth with a tied LM head: what
the custom parts cost (GLM's 2D positions and Part A/B mask, CogView's Sandwich-LN and PB-relax, MoE routing).
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tokenizer.glm import GLMMasking  # noqa: E402
from tokenizer.vocab import Vocab  # noqa: E402
from train.configs import load_config, with_vocab  # noqa: E402
from train.loop import build_model, forward_loss, make_optimizer  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "train_throughput.md"
TEXT_VOCAB = 2000
BATCH, SEQ = 8, 256


class Reference(torch.nn.Module):
    def __init__(self, vocab: int, d: int, layers: int, heads: int, d_ff: int, seq: int):
        super().__init__()
        self.tok = torch.nn.Embedding(vocab, d)
        self.pos = torch.nn.Embedding(seq, d)
        layer = torch.nn.TransformerEncoderLayer(d, heads, d_ff, dropout=0.0, activation="gelu", batch_first=True,
                                                 norm_first=True)
        self.body = torch.nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.ln = torch.nn.LayerNorm(d)
        self.register_buffer("mask", torch.nn.Transformer.generate_square_subsequent_mask(seq), persistent=False)

    def forward(self, ids):
        x = self.tok(ids) + self.pos(torch.arange(ids.shape[1]))
        x = self.ln(self.body(x, mask=self.mask, is_causal=True))
        logits = x @ self.tok.weight.T
        return torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten())


def _time(step, steps: int) -> float:
    for _ in range(3):
        step()
    rates = []
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(steps):
            step()
        rates.append(BATCH * SEQ * steps / (time.perf_counter() - start))
    return statistics.median(rates)


def measure(kind: str, moe: bool, steps: int, vocab: Vocab) -> float:
    overrides = {"num_experts": 8, "moe_every_n_layers": 2} if moe else {}
    cfg = with_vocab(load_config("tiny", seq_len=SEQ, batch_size=BATCH, **overrides), vocab)
    torch.manual_seed(0)
    model = build_model(kind, cfg)
    opt = make_optimizer(model, cfg)
    rng = np.random.default_rng(0)
    if kind == "glm":
        masking = GLMMasking(vocab, ratios={"mask": 0.5, "sentence": 0.0, "gmask": 0.5})
        windows = [rng.integers(3, TEXT_VOCAB, int(SEQ * 0.85)) for _ in range(BATCH)]
        sample = masking.build_batch(windows, rng, max_len=SEQ)
        batch = {k: torch.from_numpy(np.asarray(sample[k])) for k in
                 ("input_ids", "position_ids", "sep", "targets", "loss_mask")}
    else:
        from tokenizer.cogview import cogview_sample

        text, codes = 63, SEQ - 63 - 4   # [ROI1] 63 text ids [BASE] [BOI1] codes [EOI1] = SEQ ids
        batch = {"ids": torch.tensor([cogview_sample(rng.integers(3, TEXT_VOCAB, text).tolist(),
                                                     rng.integers(0, 8192, codes), vocab) for _ in range(BATCH)])}

    def step():
        opt.zero_grad(set_to_none=True)
        loss, _, _ = forward_loss(kind, model, batch, cfg)
        loss.backward()
        opt.step()

    return _time(step, steps)


def measure_reference(steps: int, vocab: Vocab) -> float:
    cfg = load_config("tiny")
    torch.manual_seed(0)
    model = Reference(vocab.total_size, cfg.d_model, cfg.n_layers, cfg.n_heads, cfg.d_ff, SEQ)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    ids = torch.randint(3, TEXT_VOCAB, (BATCH, SEQ))

    def step():
        opt.zero_grad(set_to_none=True)
        model(ids).backward()
        opt.step()

    return _time(step, steps)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="steps per timed window")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    vocab = Vocab.build(TEXT_VOCAB)
    reference = measure_reference(args.steps, vocab)
    rows = [("reference: `nn.TransformerEncoder`, causal, same size", reference)]
    for kind, moe, label in (("glm", False, "GLM tiny (2D positions, Part A/B mask)"),
                             ("glm", True, "GLM tiny, MoE 8 experts (switch) every 2nd layer"),
                             ("cogview", False, "CogView tiny (Sandwich-LN, PB-relax)"),
                             ("cogview", True, "CogView tiny, MoE 8 experts (switch) every 2nd layer")):
        rows.append((label, measure(kind, moe, args.steps, vocab)))
        print(f"{label}: {rows[-1][1]:,.0f} tokens/s", file=sys.stderr)
    lines = ["# Training tokens/s on CPU, tiny configs", "", "```",
             f".venv/bin/python bench/train_throughput.py --steps {args.steps} --threads {args.threads}", "```", "",
             f"Batch {BATCH} x {SEQ} tokens, d_model 128, 4 layers, 4 heads, d_ff 512, vocab {vocab.total_size}; "
             f"AdamW step included; {args.threads} threads; median of 3 windows of {args.steps} steps. "
             f"Machine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}, "
             f"torch {torch.__version__}.", "",
             "| model | tokens/s | vs reference |", "|---|---:|---:|"]
    lines += [f"| {label} | {rate:,.0f} | {rate / reference:.2f}x |" for label, rate in rows]
    lines += ["", "GPU: not measured here (no GPU was lent to this session)."]
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
