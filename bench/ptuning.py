"""P-tuning v2 against full fine-tuning on real labeled titles (bench/data/ptune: CSL, Apache-2.0).

A demo-sized GLM (config `tiny`) is pretrained here, with the project's own tokenizer, shard and training code, on
the training titles as unlabeled text (blank infilling); then, on the same frozen checkpoint:
  - no tuning: the verbalizer scored by the pretrained model as is (zero-shot blank filling);
  - P-tuning v2: a deep prompt (`--prompt-length` positions per layer) trained, the model frozen, at each
    `--prompt-lr` (P-tuning v2 searches its learning rate per task; 5e-3 is `tune`'s default);
  - full fine-tuning: every weight trained with the same cloze objective, steps and batches.
Reported: test accuracy, trainable parameters and their share of the model's, and the majority-class floor.

    .venv/bin/python bench/ptuning.py                 # writes bench/results/ptuning.md, about 10 min
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from shards.manifest import build_manifest, write_manifest  # noqa: E402
from shards.writer import encode_sample, write_shard  # noqa: E402
from tokenizer.text import TextTokenizer, tokenizer_hash, train_sentencepiece  # noqa: E402
from train.glm_generate import load_filler  # noqa: E402
from train.loop import train  # noqa: E402
from train.ptuning import ClozeTask, evaluate, read_labeled, trainable_parameters, tune  # noqa: E402

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "ptune")
TEMPLATE = "{text}。学科：[MASK]"


def pretrain(work: str, titles: list[str], steps: int, seed: int) -> tuple[str, str]:
    """Tokenizer on the titles, one GLM shard of them, `steps` of GLM pretraining: (checkpoint, tokenizer dir)."""
    lines = os.path.join(work, "titles.txt")
    with open(lines, "w", encoding="utf-8") as f:
        f.write("\n".join(titles))
    tok_dir = os.path.join(work, "tok")
    train_sentencepiece([lines], tok_dir, vocab_size=4000)
    tok = TextTokenizer.load(tok_dir)
    shards = os.path.join(work, "shards")
    os.makedirs(shards)
    tok.vocab.write(shards)
    entries = []
    for split, part in (("train", titles[:-200]), ("val", titles[-200:])):
        samples = [encode_sample({"id": f"{split}{i:05d}"}, tok.encode(t), "uint16") for i, t in enumerate(part)]
        info = write_shard(samples, os.path.join(shards, f"{split}-000000.tar"))
        entries.append({**info.to_dict(), "split": split})
    write_manifest(shards, build_manifest(entries, tokenizer_hash(tok_dir), "uint16", 256, "ptune-bench"))
    run = os.path.join(work, "run")
    train("glm", shards, "tiny", steps=steps, out=run, seed=seed, tokenizer_dir=tok_dir, log=lambda _: None,
          warmup_steps=100, eval_every=steps, eval_batches=2)
    return os.path.join(run, "ckpt.pt"), tok_dir


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pretrain-steps", type=int, default=1500)
    ap.add_argument("--tune-steps", type=int, default=600)
    ap.add_argument("--prompt-length", type=int, default=16)
    ap.add_argument("--prompt-lr", type=float, action="append", help="default: 5e-3 and 3e-2")
    ap.add_argument("--work", help="keep the tokenizer and pretrained model here (reused when present)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                                  "ptuning.md"))
    args = ap.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    train_rows = read_labeled(os.path.join(DATA, "train.jsonl"))
    test_rows = read_labeled(os.path.join(DATA, "test.jsonl"))
    labels = sorted({label for _, label in train_rows})
    task = ClozeTask(TEMPLATE, {label: label for label in labels})
    majority = collections.Counter(label for _, label in test_rows).most_common(1)[0][1] / len(test_rows)
    results = []
    runs = [("no tuning (zero-shot cloze)", None, None)]
    runs += [(f"P-tuning v2 (deep prompt), lr {lr:g}", False, lr) for lr in args.prompt_lr or [5e-3, 3e-2]]
    runs += [("full fine-tuning, lr 1e-4", True, None)]
    with tempfile.TemporaryDirectory() as scratch:
        work = args.work or scratch
        ckpt, tok_dir = os.path.join(work, "run", "ckpt.pt"), os.path.join(work, "tok")
        if not os.path.isfile(ckpt):
            os.makedirs(work, exist_ok=True)
            pretrain(work, [text for text, _ in train_rows], args.pretrain_steps, args.seed)
        for name, full, lr in runs:
            filler, tok = load_filler(ckpt, tok_dir)
            model = filler.model
            before = {k: v.clone() for k, v in model.state_dict().items()}
            prompt = None
            if full is not None:
                prompt = tune(model, tok, filler, task, train_rows, full=full, prompt_length=args.prompt_length,
                              steps=args.tune_steps, seed=args.seed, lr=lr)
            acc = evaluate(model, tok, filler, task, test_rows, prompt)["accuracy"]
            trainable, base = trainable_parameters(model, prompt) if full is not None else (0, 0)
            frozen = all(torch.equal(before[k], v) for k, v in model.state_dict().items())
            results.append({"run": name, "accuracy": acc, "trainable": trainable, "base": base,
                            "share": 100.0 * trainable / base if base else 0.0, "base_unchanged": frozen})
            print(json.dumps(results[-1], ensure_ascii=False), flush=True)
    lines = ["# P-tuning v2 vs full fine-tuning (GLM `tiny`, CSL paper titles -> 8 categories)", "",
             f"Train {len(train_rows)} / test {len(test_rows)} titles ({len(labels)} labels: {', '.join(labels)}); "
             f"template `{TEMPLATE}`, each label its own verbalizer word. GLM `tiny` pretrained here for "
             f"{args.pretrain_steps} steps on the training titles as unlabeled text; tuning "
             f"{args.tune_steps} steps of 16 titles, seed {args.seed}; prompt length {args.prompt_length}.", "",
             "| run | test accuracy | trainable parameters | share of the model | base weights unchanged |",
             "|---|---:|---:|---:|---|"]
    for r in results:
        lines.append(f"| {r['run']} | {r['accuracy']:.3f} | {r['trainable']:,} | {r['share']:.2f}% | "
                     f"{'yes' if r['base_unchanged'] else 'no'} |")
    lines += [f"| majority class | {majority:.3f} | | | |", "", "Rerun:", "", "```",
              ".venv/bin/python bench/ptuning.py" + (" " + " ".join(sys.argv[1:]) if sys.argv[1:] else ""), "```"]
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
