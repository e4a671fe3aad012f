#!/usr/bin/env python
"""Train the bundled topic model (`cleaners/data/topic/topic.bin`) and print its held-out accuracy.

    python scripts/train_topic.py --output cleaners/data/topic/topic.bin

Training data, all in `scripts/topic_data/` (sources, commits and licences in its SOURCES.md):
- 33,590 THUCNews headlines (`thucnews_train.txt.gz`): the ten THUCNews classes;
- SIB-200's Chinese and English sentences (train and dev splits): science, travel, politics, sports, health,
  entertainment, geography, in both languages;
- CSL paper titles of four disciplines (train and dev splits): 农学 agriculture, 军事学 military, 医学 health,
  法学 law.
Held out, never trained on: the 10,000 THUCNews test headlines of the shared samples
(`../shared/corpus-samples/zh_text/thucnews_titles/test.txt`, a different split of the same corpus; skipped when
absent), SIB-200's test split (204 sentences per language) and CSL's test split. Single thread, fixed seed: the
output file is byte-identical on reruns (about 20 s here).
"""
from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from cleaners.domain import MIN_TOPIC_SCORE  # noqa: E402
from cleaners.topic import TopicModel, evaluate, read_labeled, train_topic  # noqa: E402

SEED = 20241203
DATA = REPO / "scripts" / "topic_data"
THUCNEWS_CLASSES = ["finance", "realty", "stocks", "education", "science", "society", "politics", "sports", "game",
                    "entertainment"]                       # THUCNews's class.txt, in class-id order
SIB_TRAIN_LINES = 800                                      # SIB-200: lines 1-701 train, 702-800 dev, 801-1004 test
CSL_TRAIN_LINES = 9000                                     # CSL: lines 1-8000 train, 8001-9000 dev, 9001-10000 test
CSL_LABELS = {"agriculture": "agriculture", "military": "military", "medicine": "health", "jurisprudence": "law"}


def thucnews(lines: list[str]) -> list[tuple[str, str]]:
    """(headline, label) from THUCNews's `headline<TAB>class id` lines."""
    pairs = []
    for line in lines:
        text, _, class_id = line.rstrip("\n").rpartition("\t")
        if text:
            pairs.append((text, THUCNEWS_CLASSES[int(class_id)]))
    return pairs


def jsonl(name: str) -> list[tuple[str, str]]:
    pairs, skipped = read_labeled(str(DATA / name))
    if skipped:
        raise ValueError(f"{name}: {skipped} unreadable lines")
    return pairs


def splits() -> tuple[list[tuple[str, str]], dict[str, list[tuple[str, str]]]]:
    """The training pairs, and the held-out pairs by name."""
    with gzip.open(DATA / "thucnews_train.txt.gz", "rt", encoding="utf-8") as fh:
        train = thucnews(fh.readlines())
    held: dict[str, list[tuple[str, str]]] = {}
    for name in ("sib200_zho_hans", "sib200_eng"):
        pairs = jsonl(f"{name}.jsonl.gz")
        train += pairs[:SIB_TRAIN_LINES]
        held[name] = pairs[SIB_TRAIN_LINES:]
    csl = [(text, CSL_LABELS[label]) if label in CSL_LABELS else None
           for text, label in jsonl("csl_category_titles.jsonl.gz")]
    train += [pair for pair in csl[:CSL_TRAIN_LINES] if pair]
    held["csl_titles"] = [pair for pair in csl[CSL_TRAIN_LINES:] if pair]
    return train, held


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", default=str(REPO.parent / "shared" / "corpus-samples"),
                        help="the shared corpus samples, for the held-out THUCNews test split")
    parser.add_argument("--output", default=str(REPO / "cleaners" / "data" / "topic" / "topic.bin"))
    parser.add_argument("--quantize", action="store_true",
                        help="product-quantize (a smaller .ftz; the bundled model is not quantized)")
    args = parser.parse_args(argv)
    train, held = splits()
    thucnews_test = Path(args.samples) / "zh_text" / "thucnews_titles" / "test.txt"
    if thucnews_test.is_file():
        held = {"thucnews_test": thucnews(thucnews_test.read_text(encoding="utf-8").splitlines()), **held}
    counts = train_topic(train, args.output, seed=SEED, quantize=args.quantize)
    model = TopicModel(args.output)
    report = {"trained": counts, "held_out": {name: evaluate(model, pairs, min_score=MIN_TOPIC_SCORE)
                                              for name, pairs in held.items()}}
    print(json.dumps(report, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
