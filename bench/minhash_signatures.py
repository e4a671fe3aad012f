"""MinHash signature throughput: ours (`cleaners.minhash.MinHasher.signatures`) against datasketch (one
`update()` per shingle, and its batch `MinHash.bulk`), rensa 0.5.0 and datatrove 0.10.1's `MinhashDedupSignature`,
on the same documents.

    .venv/bin/python bench/minhash_signatures.py                  # about 7 CPU-minutes
    .venv/bin/python bench/minhash_signatures.py --docs 500 --repeat 1 --no-datatrove

Documents: the real texts in ../shared/corpus-samples (en_text: data-juicer JSONL, the FlagAI text file,
tinyshakespeare; zh_text: chinese-poetry, THUCNews titles, the WuDao-format files, keeping only their
mostly-Chinese records), joined per language and cut into windows of `--doc-bytes` UTF-8 bytes every
`--stride` bytes (the samples hold about 2-3 MB per language, so windows overlap to give `--docs` documents).
The documents are written to bench/work/minhash/<lang>.jsonl and the datatrove side reads that file.

Columns (all num_perm 128 except datatrove's own 112 = 14 buckets x 8; all 5-gram shingles):
  (a) ours: MinHasher().signatures(texts, lang): normalization, shingling, rensa 0.5.0's RMinHash digest matrix
      per batch of 256 documents (the signatures of (e));
  (b) datasketch per-token: our shingles (same normalization and n-grams, shingling time included), then
      MinHash(num_perm=128) with datasketch's default hash (SHA-1) and one update() per shingle;
  (b') the same with xxHash32 as the hash function, to separate batching from the hash function
      (its signatures are checked to equal (d)'s);
  (d) datasketch's batch API, `MinHash.bulk` of our shingles with xxHash32: the best pure-datasketch way, and
      our signatures before issue 19; (a') our shingling alone, all documents' shingles built at once (as (e)
      needs them; (a) builds 256 documents' at a time, which allocates less and can take less time);
  (e) rensa 0.5.0 called directly, `RMinHash.digest_matrix_from_token_byte_sets` of our shingles, shingling
      included (its signatures are checked to equal ours); (e') rensa's hashing alone, shingles given. rensa's
      hash and permutations differ from datasketch's, so accuracy is compared: mean absolute error of the
      estimated Jaccard against the exact Jaccard of our shingle sets over pairs of overlapping documents;
  (c) datatrove: bench/datatrove_minhash.py in bench/.venv-datatrove, language `eng` / `cmn_Hani`
      (spaCy word tokenizer, jieba for Chinese), timed as the whole stage (signatures + writing, sorting and
      verifying its 14 bucket files) and as signature compute only.
CPU time is time.process_time of the process doing the work (one core: the work is single-threaded), median
of `--repeat` runs; MB/s per core = document UTF-8 bytes / CPU s. Start-up (imports, tokenizer and table
building) is excluded on both sides by a warm-up.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rensa
import xxhash
from datasketch import MinHash

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))

from cleaners.minhash import MinHasher, shingles, uses_character_ngrams  # noqa: E402

SAMPLES = REPO.parent / "shared" / "corpus-samples"
WORK = BENCH / "work" / "minhash"
RESULTS = BENCH / "results" / "minhash_signatures.md"
DATATROVE_PYTHON = BENCH / ".venv-datatrove" / "bin" / "python"
DATATROVE_LANGUAGE = {"en": "eng", "zh": "cmn_Hani"}
POETRY_TEXT_KEYS = ("title", "rhythmic", "chapter", "section", "paragraphs", "content", "comment", "notes")


# ---------------------------------------------------------------- documents


def english_texts(samples: Path) -> list[str]:
    folder = samples / "en_text"
    texts = [json.loads(line)["text"] for path in sorted(folder.glob("*.jsonl"))
             for line in path.open(encoding="utf-8") if line.strip()]
    texts += [path.read_text(encoding="utf-8") for path in sorted(folder.glob("*.txt"))]
    return texts


def _poetry_strings(node) -> list[str]:
    """The text fields of a chinese-poetry JSON tree (titles, paragraphs, content, comments)."""
    if isinstance(node, list):
        return [text for item in node for text in _poetry_strings(item)]
    if isinstance(node, dict):
        out: list[str] = []
        for key in POETRY_TEXT_KEYS:
            value = node.get(key)
            out += [value] if isinstance(value, str) else _poetry_strings(value) if value else []
        return out
    return [node] if isinstance(node, str) else []


def chinese_texts(samples: Path) -> list[str]:
    folder = samples / "zh_text"
    texts = ["\n".join(_poetry_strings(json.loads(path.read_text(encoding="utf-8"))))
             for path in sorted((folder / "chinese-poetry").glob("*.json"))]
    texts += ["\n".join(line.split("\t")[0] for line in (folder / "thucnews_titles" / "test.txt")
                        .read_text(encoding="utf-8").splitlines())]
    wudao = folder / "wudao_format"
    records = json.loads((wudao / "flagai_glm_pretrain_jinrong_data.json").read_text(encoding="utf-8"))["RECORDS"]
    candidates = [row["content"] for row in records]
    candidates += [json.loads(line)["text"] for line in (wudao / "flagai_indexed_dataset_demo.jsonl")
                   .open(encoding="utf-8") if line.strip()]
    texts += [text for text in candidates if uses_character_ngrams(None, text)]   # drops the English Pile rows
    return texts


def cut_documents(texts: list[str], doc_bytes: int, stride: int, limit: int) -> list[str]:
    """Windows of `doc_bytes` UTF-8 bytes every `stride` bytes over the joined texts (partial characters at
    the edges dropped), at most `limit`."""
    blob = "\n\n".join(texts).encode("utf-8")
    starts = range(0, max(1, len(blob) - doc_bytes + 1), stride)
    return [blob[start:start + doc_bytes].decode("utf-8", errors="ignore") for start in starts][:limit]


def write_jsonl(docs: list[str], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for number, text in enumerate(docs):
            f.write(json.dumps({"id": str(number), "text": text}, ensure_ascii=False) + "\n")


# ---------------------------------------------------------------- timings


@dataclass
class Row:
    method: str
    lang: str
    docs: int
    bytes: int
    cpu_s: float
    note: str = ""

    @property
    def docs_per_s(self) -> float:
        return self.docs / self.cpu_s

    @property
    def mb_per_s(self) -> float:
        return self.bytes / 1e6 / self.cpu_s


def median_cpu(function, repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        start = time.process_time()
        result = function()
        times.append(time.process_time() - start)
    return statistics.median(times), result


def ours(docs: list[str], lang: str) -> np.ndarray:
    return MinHasher().signatures(docs, lang)


def per_token(docs: list[str], lang: str, hashfunc=None) -> np.ndarray:
    rows = []
    for text in docs:
        minhash = MinHash(num_perm=128) if hashfunc is None else MinHash(num_perm=128, hashfunc=hashfunc)
        for shingle in shingles(text, lang):
            minhash.update(shingle)
        rows.append(minhash.hashvalues)
    return np.array(rows)


def bulk(docs: list[str], lang: str) -> np.ndarray:
    batch = [shingles(text, lang) for text in docs]
    return np.array([m.hashvalues for m in MinHash.bulk(batch, num_perm=128, hashfunc=xxhash.xxh32_intdigest)])


def shingling_only(docs: list[str], lang: str) -> list[list[bytes]]:
    return [shingles(text, lang) for text in docs]


def rensa_signatures(batch: list[list[bytes]]) -> np.ndarray:
    """rensa's digest matrix as uint32[n, 128] (its `to_rows()` lists: the conversion is timed too, as our rows
    are numpy)."""
    matrix = rensa.RMinHash.digest_matrix_from_token_byte_sets(batch, 128, 1)
    return np.array(matrix.to_rows(), dtype=np.uint32)


def jaccard_error(signatures: np.ndarray, batch: list[list[bytes]]) -> float:
    """Mean |estimated - exact| Jaccard over pairs of neighbouring documents (windows that overlap)."""
    errors = []
    for i in range(len(batch) - 1):
        a, b = set(batch[i]), set(batch[i + 1])
        exact = len(a & b) / len(a | b) if a | b else 1.0
        errors.append(abs(float(np.mean(signatures[i] == signatures[i + 1])) - exact))
    return float(np.mean(errors))


def datatrove(jsonl: Path, lang: str, repeat: int) -> dict:
    command = [str(DATATROVE_PYTHON), str(BENCH / "datatrove_minhash.py"), "--input", str(jsonl),
               "--language", DATATROVE_LANGUAGE[lang], "--repeat", str(repeat)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"datatrove run failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(lang: str, docs: list[str], repeat: int, with_datatrove: bool) -> list[Row]:
    size = sum(len(text.encode("utf-8")) for text in docs)
    ours(docs[:20], lang)                                  # warm-up: punctuation table, permutations
    rows = []
    cpu, ours_sigs = median_cpu(lambda: ours(docs, lang), repeat)
    rows.append(Row("(a) ours: MinHasher.signatures", lang, len(docs), size, cpu))
    cpu, _ = median_cpu(lambda: per_token(docs, lang), repeat)
    rows.append(Row("(b) datasketch update() per shingle, SHA-1", lang, len(docs), size, cpu))
    cpu, xx_sigs = median_cpu(lambda: per_token(docs, lang, xxhash.xxh32_intdigest), repeat)
    rows.append(Row("(b') datasketch update() per shingle, xxh32", lang, len(docs), size, cpu,
                    "signatures identical to (d)"))
    cpu, bulk_sigs = median_cpu(lambda: bulk(docs, lang), repeat)
    if not np.array_equal(bulk_sigs, xx_sigs):
        raise AssertionError("datasketch MinHash.bulk disagrees with per-token datasketch (xxh32)")
    cpu_shingles, batch = median_cpu(lambda: shingling_only(docs, lang), repeat)
    rows.append(Row("(d) datasketch MinHash.bulk, xxh32 (our backend before issue 19)", lang, len(docs), size, cpu,
                    f"Jaccard error {jaccard_error(bulk_sigs, batch):.4f}"))
    rows.append(Row("(a') ours: shingling alone, every document at once", lang, len(docs), size, cpu_shingles,
                    f"Jaccard error of (a): {jaccard_error(ours_sigs, batch):.4f}"))
    rensa.RMinHash.digest_matrix_from_token_byte_sets(batch[:20], 128, 1)      # warm-up
    cpu, rensa_sigs = median_cpu(lambda: rensa_signatures(shingling_only(docs, lang)), repeat)
    if not np.array_equal(rensa_sigs, ours_sigs):
        raise AssertionError("rensa called directly disagrees with MinHasher.signatures")
    rows.append(Row("(e) rensa 0.5.0 RMinHash called directly, our shingles", lang, len(docs), size, cpu,
                    "signatures identical to (a)"))
    cpu, _ = median_cpu(lambda: rensa_signatures(batch), repeat)
    rows.append(Row("(e') rensa hashing alone (shingles given)", lang, len(docs), size, cpu, ""))
    if with_datatrove:
        jsonl = WORK / f"{lang}.jsonl"
        write_jsonl(docs, jsonl)
        result = datatrove(jsonl, lang, repeat)
        assert result["docs"] == len(docs) and result["bytes"] == size, result
        code = DATATROVE_LANGUAGE[lang]
        rows.append(Row(f"(c) datatrove MinhashDedupSignature stage, {code}", lang, len(docs), size,
                        result["stage_cpu_s"], "incl. writing + sorting 14 bucket files"))
        rows.append(Row(f"(c') datatrove signature compute only, {code}", lang, len(docs), size,
                        result["compute_cpu_s"], "get_shingles + get_signature"))
    return rows


# ---------------------------------------------------------------- report


def table(rows: list[Row]) -> str:
    lines = ["| lang | method | docs | MB | CPU s | docs/s per core | MB/s per core | (a) vs this | note |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for row in rows:
        mine = next(r for r in rows if r.lang == row.lang and r.method.startswith("(a)"))
        ratio = "" if row is mine else f"{row.cpu_s / mine.cpu_s:.1f}x"
        lines.append(f"| {row.lang} | {row.method} | {row.docs} | {row.bytes / 1e6:.2f} | {row.cpu_s:.2f} | "
                     f"{row.docs_per_s:,.0f} | {row.mb_per_s:.2f} | {ratio} | {row.note} |")
    return "\n".join(lines)


def report(rows: list[Row], args: argparse.Namespace, command: str) -> str:
    return "\n".join([
        "# MinHash signature throughput",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {platform.machine()}, {platform.python_implementation()} {platform.python_version()}, "
        f"datasketch 2.0.0, rensa 0.5.0; documents of {args.doc_bytes} UTF-8 bytes cut every {args.stride} bytes from "
        "../shared/corpus-samples en_text and zh_text (see the script's docstring); CPU time of the working "
        f"process, median of {args.repeat} runs.",
        "",
        table(rows),
        "",
        "`(a) vs this` = CPU time of the row / CPU time of (a) on the same documents (how many times faster ours is).",
        "(a) and (e) give identical signatures, and so do (b') and (d) (checked); (b) differs from (b') only in the "
        "hash function (SHA-1).",
        "An `(a) vs this` under 1.0x means the row is faster than ours. Jaccard error: mean |estimate - exact| over "
        "neighbouring (overlapping) documents, exact on our shingle sets.",
        "datatrove computes 112 hashes (14 x 8) of 64-bit xxhash over spaCy / jieba word 5-grams; ours 128 of",
        "32-bit xxhash over word 5-grams (en) or character 5-grams (zh).",
        "",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=2000, help="documents per language (default 2000)")
    parser.add_argument("--doc-bytes", type=int, default=3000, help="UTF-8 bytes per document (default 3000)")
    parser.add_argument("--stride", type=int, default=1000, help="bytes between document starts (default 1000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per column; the median is reported")
    parser.add_argument("--samples", type=Path, default=SAMPLES)
    parser.add_argument("--no-datatrove", action="store_true", help="skip the datatrove columns")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()

    with_datatrove = not args.no_datatrove
    if with_datatrove and not DATATROVE_PYTHON.exists():
        sys.exit(f"{DATATROVE_PYTHON} not found: build it with bench/throughput.py, then "
                 f"{DATATROVE_PYTHON.parent}/pip install jieba==0.42.1 (or pass --no-datatrove)")
    corpora = {"en": english_texts(args.samples), "zh": chinese_texts(args.samples)}
    rows: list[Row] = []
    for lang, texts in corpora.items():
        docs = cut_documents(texts, args.doc_bytes, args.stride, args.docs)
        rows += measure(lang, docs, args.repeat, with_datatrove)
    command = "python bench/minhash_signatures.py " + " ".join(sys.argv[1:])
    text = report(rows, args, command.strip())
    print(text)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
