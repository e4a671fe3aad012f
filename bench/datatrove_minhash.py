"""Time datatrove 0.10.1's MinHash signature stage (`MinhashDedupSignature`) on a JSONL file of documents.

Runs only in bench/.venv-datatrove (datatrove[processing]==0.10.1 + spacy + jieba); bench/minhash_signatures.py
calls it as a subprocess and reads the one JSON object it prints:

    bench/.venv-datatrove/bin/python bench/datatrove_minhash.py --input docs.jsonl --language eng
    bench/.venv-datatrove/bin/python bench/datatrove_minhash.py --input docs.jsonl --language cmn_Hani

Configuration: datatrove's defaults (MinhashConfig: 5-gram word shingles, 14 buckets x 8 hashes = 112 hashes,
64-bit xxhash, its simplify_text normalization), with the word tokenizer of `--language` (spaCy blank `en`
for `eng`, spaCy `zh` with the jieba segmenter for `cmn_Hani`; `zh` would not segment Chinese at all).

Two CPU timings (time.process_time, this process only), both after a warm-up that loads the tokenizer (and
jieba's dictionary) on a few documents, and both excluding the JSONL reading:
- `compute`: `get_shingles` + `get_signature` per document, the signature arithmetic alone;
- `stage`: the whole `MinhashDedupSignature.run` on the documents: the above plus writing the 14 bucket files
  to a local temporary folder, sorting them and datatrove's read-back verification.
"""
from __future__ import annotations

import argparse
import inspect
import json
import statistics
import tempfile
import time

from datatrove.data import Document
from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupSignature

WARMUP_DOCS = 20


def load_documents(path: str) -> list[Document]:
    with open(path, encoding="utf-8") as f:
        return [Document(text=row["text"], id=str(row["id"])) for row in map(json.loads, f)]


def time_compute(step: MinhashDedupSignature, docs: list[Document]) -> float:
    start = time.process_time()
    for doc in docs:
        shingles = step.get_shingles(doc.text)
        if shingles.size:
            step.get_signature(shingles)
    return time.process_time() - start


def time_stage(language: str, docs: list[Document]) -> float:
    with tempfile.TemporaryDirectory(prefix="dt-minhash-") as folder:
        step = MinhashDedupSignature(output_folder=folder, config=MinhashConfig(), language=language)
        warm_up(step, docs)
        start = time.process_time()
        result = step.run(iter(docs), rank=0, world_size=1)
        if inspect.isgenerator(result):
            for _ in result:
                pass
        return time.process_time() - start


def warm_up(step: MinhashDedupSignature, docs: list[Document]) -> None:
    for doc in docs[:WARMUP_DOCS]:
        shingles = step.get_shingles(doc.text)
        if shingles.size:
            step.get_signature(shingles)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--input", required=True, help="JSONL with `id` and `text`")
    parser.add_argument("--language", required=True, help="datatrove language code: eng, cmn_Hani, ...")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each timing; the median is reported")
    args = parser.parse_args()

    docs = load_documents(args.input)
    with tempfile.TemporaryDirectory(prefix="dt-minhash-") as folder:
        step = MinhashDedupSignature(output_folder=folder, config=MinhashConfig(), language=args.language)
        warm_up(step, docs)
        compute = [time_compute(step, docs) for _ in range(args.repeat)]
        num_hashes = step.num_hashes
    stage = [time_stage(args.language, docs) for _ in range(args.repeat)]
    print(json.dumps({
        "docs": len(docs),
        "bytes": sum(len(doc.text.encode("utf-8")) for doc in docs),
        "num_hashes": num_hashes,
        "compute_cpu_s": statistics.median(compute),
        "stage_cpu_s": statistics.median(stage),
        "compute_runs": compute,
        "stage_runs": stage,
    }))


if __name__ == "__main__":
    main()
