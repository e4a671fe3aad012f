#!/usr/bin/env python
"""Tokenizer encode throughput: `TextTokenizer.encode_batch` (every core) vs single-threaded `sentencepiece.encode`.

    .venv/bin/python bench/encode_throughput.py [--samples ../shared/corpus-samples] [--mb 20] [--vocab 8000]

Trains a tokenizer (`tokenizer.text.train_sentencepiece`, unigram) on a seeded slice of the real zh/en text in
corpus-samples, then encodes about `--mb` MB of documents (3 KB, Chinese and English mixed) with:
(a) plain `SentencePieceProcessor.encode(text)` one document at a time, one thread (the reference);
(b) `TextTokenizer.encode` one at a time (ours, with the newline and U+2581 handling);
(c) `TextTokenizer.encode_batch(docs)` with SentencePiece's threads on every core.
Reports wall MB/s, CPU MB/s per core, and the ratio to (a); writes bench/results/encode.md.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))

from tokenizer.text import TextTokenizer, train_sentencepiece  # noqa: E402


def documents(samples: Path, mb: float, seed: int = 0) -> list[str]:
    zh = []
    for path in sorted((samples / "zh_text" / "chinese-poetry").glob("*.json")):
        for entry in json.loads(path.read_text("utf-8")):
            if isinstance(entry, dict):
                zh.append("\n".join(p for p in entry.get("paragraphs", []) if isinstance(p, str)))
    en = (samples / "en_text" / "flagai_gpt2_title_generation_debug.txt").read_text("utf-8").splitlines()
    en += (samples / "en_text" / "tinyshakespeare_input.txt").read_text("utf-8").split("\n\n")
    rng = random.Random(seed)
    pool = "\n".join(t for t in zh + en if t.strip())
    docs, size = [], 0
    while size < mb * 1e6:
        start = rng.randrange(0, len(pool) - 3000)
        doc = pool[start:start + 1000]  # 1000 characters: about 3 KB of Chinese, 1 KB of English
        docs.append(doc)
        size += len(doc.encode("utf-8"))
    return docs


def timed(fn):
    c0, w0 = time.process_time(), time.perf_counter()
    fn()
    return time.perf_counter() - w0, time.process_time() - c0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", default=str(REPO.parent / "shared" / "corpus-samples"))
    parser.add_argument("--mb", type=float, default=20)
    parser.add_argument("--vocab", type=int, default=8000)
    parser.add_argument("--results", default=str(BENCH / "results" / "encode.md"))
    args = parser.parse_args(argv)
    docs = documents(Path(args.samples), args.mb)
    mb = sum(len(d.encode("utf-8")) for d in docs) / 1e6
    with tempfile.TemporaryDirectory() as tmp:
        train_file = Path(tmp) / "train.txt"
        train_file.write_text("\n".join(docs[: max(200, len(docs) // 10)]), encoding="utf-8")
        train_sentencepiece([str(train_file)], tmp, vocab_size=args.vocab, image_codes=8192)
        tok = TextTokenizer.load(tmp)
        sp = tok.sp
        assert tok.encode_batch(docs[:50]) == [tok.encode(d) for d in docs[:50]]
        rows = [("(a) sentencepiece encode, one doc at a time, 1 thread", timed(lambda: [sp.encode(d) for d in docs])),
                ("(b) TextTokenizer.encode, one doc at a time", timed(lambda: [tok.encode(d) for d in docs])),
                (f"(c) TextTokenizer.encode_batch, {os.cpu_count()} threads", timed(lambda: tok.encode_batch(docs)))]
    base_wall = rows[0][1][0]
    lines = ["# Tokenizer encode throughput", "", "```",
             shlex.join([".venv/bin/python", "bench/encode_throughput.py",
                         *(argv if argv is not None else sys.argv[1:])]),
             "```", "", f"{len(docs)} documents, {mb:.1f} MB (Chinese poetry and English text from corpus-samples), "
             f"unigram vocabulary {args.vocab}.", "",
             "| method | wall s | wall MB/s | CPU s | MB/s per CPU core | wall speed vs (a) |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, (wall, cpu) in rows:
        lines.append(f"| {name} | {wall:.2f} | {mb / wall:.1f} | {cpu:.2f} | {mb / cpu:.1f} "
                     f"| {base_wall / wall:.2f}x |")
    text = "\n".join(lines) + "\n"
    Path(args.results).write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
