"""CogView sampling speed with the KV cache against recomputing the whole prefix at every step (the reference,
`generate_image_codes(..., use_cache=False)`), same model, caption and seed in one run; checks that both draw the
same codes.

    .venv/bin/python bench/cogview_sampling.py           # writes bench/results/cogview_sampling.md, about 3 min

Models have random weights (speed only) in the shared id space of the default tokenizer (50,000 text pieces,
8,192 image codes): the output head over 58,208 ids is part of every step's cost, as it is for a trained model.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tokenizer.vocab import Vocab  # noqa: E402
from train.cogview_model import CogViewModel, generate_image_codes  # noqa: E402
from train.configs import Config, with_vocab  # noqa: E402

VOCAB = Vocab.build(50_000)
CAPTION = list(range(100, 116))      # 16 text tokens
CASES = [  # (name, config fields, grid, samples)
    ("tiny (d 128, 4 layers), 16x16 grid", dict(d_model=128, n_layers=4, n_heads=4, d_ff=512), 16, 1),
    ("tiny, 16x16 grid, 4 samples", dict(d_model=128, n_layers=4, n_heads=4, d_ff=512), 16, 4),
    ("d 512, 8 layers, 16x16 grid", dict(d_model=512, n_layers=8, n_heads=8, d_ff=2048), 16, 1),
    ("tiny, 32x32 grid (CogView's 1024 codes)", dict(d_model=128, n_layers=4, n_heads=4, d_ff=512), 32, 1),
]


def timed(model, grid, samples, cached, seed):
    start = time.perf_counter()
    codes = generate_image_codes(model, CAPTION, VOCAB, grid=grid, top_k=100, num_samples=samples,
                                 generator=torch.Generator().manual_seed(seed), use_cache=cached)
    return time.perf_counter() - start, codes


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                                  "cogview_sampling.md"))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    for name, fields, grid, samples in CASES:
        torch.manual_seed(args.seed)
        cfg = with_vocab(Config(**fields, seq_len=len(CAPTION) + 3 + grid * grid), VOCAB)
        model = CogViewModel(cfg).eval()
        timed(model, 2, 1, True, args.seed)                       # warm-up
        cached_s, cached = timed(model, grid, samples, True, args.seed)
        full_s, full = timed(model, grid, samples, False, args.seed)
        tokens = grid * grid * samples
        rows.append((name, tokens, tokens / full_s, tokens / cached_s, full_s / cached_s, torch.equal(cached, full)))
        print(rows[-1], flush=True)
    lines = ["# CogView sampling: KV cache vs recomputing the prefix", "",
             f"One thread; random weights; caption of {len(CAPTION)} tokens; top-k 100; seed {args.seed}.", "",
             "| model, grid | codes sampled | tokens/s, no cache | tokens/s, KV cache | speed-up | same codes |",
             "|---|---:|---:|---:|---:|---|"]
    for name, tokens, full_rate, cached_rate, ratio, same in rows:
        lines.append(f"| {name} | {tokens} | {full_rate:.1f} | {cached_rate:.1f} | **{ratio:.1f}x** | "
                     f"{'yes' if same else 'no'} |")
    lines += ["", "Rerun:", "", "```", ".venv/bin/python bench/cogview_sampling.py", "```"]
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
