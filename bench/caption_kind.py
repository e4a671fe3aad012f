#!/usr/bin/env python
"""How often `cleaners.image.caption_kind` names real descriptions `description` and real alt texts `alt`.

    .venv/bin/python bench/caption_kind.py        # a few seconds

Sets (bench/data/caption_kind/SOURCE.md): COCO val2017 crowd descriptions (2000, English), Crossmodal-3600 native
Chinese descriptions (3000), web alt texts from img2dataset's test list (1000, English; from the shared samples),
Chinese alt texts of a recipe site (341) and of TiDB's documentation (205), and OpenMoji's English and Chinese names
(1910 each). Each caption goes through the pipeline's caption cleaning first (`clean_caption`), with the language
of its set. Report: stdout and bench/results/caption_kind.md.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cleaners.image.caption import clean_caption  # noqa: E402
from cleaners.image.caption_kind import ALT, DESCRIPTION, caption_kind  # noqa: E402

DATA = ROOT / "bench" / "data" / "caption_kind"
SAMPLES = ROOT.parent / "shared" / "corpus-samples" / "image_text" / "img2dataset_urls" / "test_1000.parquet"
MOJI = ROOT / "bench" / "data" / "alignment" / "openmoji" / "pairs.jsonl"
RESULTS = ROOT / "bench" / "results" / "caption_kind.md"


def lines(path: Path, field: str = "text") -> list[str]:
    return [json.loads(line)[field] for line in path.read_text("utf-8").splitlines() if line.strip()]


def main() -> int:
    moji = [json.loads(line)["captions"] for line in MOJI.read_text("utf-8").splitlines()]
    sets = [
        ("COCO val2017 descriptions", "en", DESCRIPTION, lines(DATA / "en_descriptions_coco_val2017.jsonl")),
        ("Crossmodal-3600 Chinese descriptions", "zh", DESCRIPTION, lines(DATA / "zh_descriptions_xm3600.jsonl")),
        ("img2dataset web alt texts", "en", ALT,
         [t for t in pq.read_table(SAMPLES).column("TEXT").to_pylist() if t]),
        ("HowToCook alt texts", "zh", ALT, lines(DATA / "zh_alt_howtocook.jsonl")),
        ("TiDB documentation alt texts", "zh", ALT, lines(DATA / "zh_alt_tidb_docs.jsonl")),
        ("OpenMoji English names", "en", ALT, [names[0] for names in moji]),
        ("OpenMoji Chinese names", "zh", ALT, [names[1] for names in moji]),
    ]
    rows = []
    for name, lang, expected, texts in sets:
        cleaned = [clean_caption(t) for t in texts]
        right = sum(caption_kind(t, lang) == expected for t in cleaned if t)
        total = sum(1 for t in cleaned if t)
        rows.append(f"| {name} | {lang} | {total} | {expected} | {right / total:.1%} |")
    report = "\n".join([
        "# Caption kind on real captions",
        "",
        "Command: `.venv/bin/python bench/caption_kind.py`. Share of each set given its expected kind by "
        "`cleaners.image.caption_kind` (after `clean_caption`); sources in bench/data/caption_kind/SOURCE.md.",
        "",
        "| set | language | captions | expected | share |",
        "|---|---|---:|---|---:|",
        *rows,
        "",
    ])
    print(report)
    RESULTS.write_text(report, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
