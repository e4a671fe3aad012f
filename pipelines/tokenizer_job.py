"""`train_tokenizer`: a seeded, language-balanced Beam sample of a corpus, then SentencePiece training.

Two passes over the corpus: a CombinePerKey counts characters per language, then each record is kept when
a stable hash of (seed, id) scaled to [0, 1) falls under its language's rate (the same id-hash sampling
that C4/seqio use to make sampling reproducible on any runner). Rates aim at `sample_chars` characters
with `zh_share` of them Chinese; when one language is too small to fill its share, the other is cut so the
share still holds. The sample is written as text lines (one per document line), sorted by the hash so
training sees the same order on every runner, and handed to `tokenizer.text.train_sentencepiece`.
"""
from __future__ import annotations

import glob
import hashlib
import json
import os
import tempfile
from typing import Any, Iterable, Sequence

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines.dedup.corpus import ReadCorpus
from tokenizer.text import train_sentencepiece

LANGS = ("zh", "en")
MAX_LINE_CHARS = 4000  # trainer's max_sentence_length is 16384 bytes; 4000 CJK chars are 12000 bytes


def unit_hash(seed: int, record_id: str) -> float:
    """Stable value in [0, 1) for (seed, id)."""
    digest = hashlib.blake2b(f"{seed}\0{record_id}".encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0 ** 64


def sample_rates(totals: dict[str, int], sample_chars: int, zh_share: float) -> dict[str, float]:
    """Per-language keep rates in [0, 1] from the corpus's character totals (see module docstring)."""
    if not 0.0 <= zh_share <= 1.0:
        raise ValueError("zh_share must lie in [0, 1]")
    shares = {"zh": zh_share, "en": 1.0 - zh_share}
    present = {lang: shares[lang] for lang in LANGS if totals.get(lang, 0) > 0 and shares[lang] > 0}
    if not present:
        return {lang: 0.0 for lang in LANGS}
    scale = sum(present.values())
    shares = {lang: s / scale for lang, s in present.items()}  # a missing language leaves its share to the other
    budget = min([float(sample_chars)] + [totals[lang] / s for lang, s in shares.items()])
    return {lang: min(1.0, budget * shares[lang] / totals[lang]) if lang in shares else 0.0 for lang in LANGS}


def training_lines(record: dict[str, Any]) -> Iterable[str]:
    """A document's non-empty lines, long ones cut at MAX_LINE_CHARS; a literal U+2581 becomes a space."""
    for line in record["content"].replace("\u2581", " ").splitlines():
        for start in range(0, len(line), MAX_LINE_CHARS):
            piece = line[start:start + MAX_LINE_CHARS]
            if piece.strip():
                yield piece


def _keyed_lines(record: dict[str, Any], seed: int) -> Iterable[str]:
    key = f"{unit_hash(seed, record['id']):.17f}\t{record['id']}"
    for k, line in enumerate(training_lines(record)):
        yield f"{key}\t{k:08d}\t{line}"


def build_sample(pipeline: beam.Pipeline, corpus_globs: Sequence[str], prefix: str, *, sample_chars: int,
                 zh_share: float, seed: int) -> None:
    records = (pipeline
               | "Globs" >> beam.Create(list(corpus_globs))
               | "Match" >> fileio.MatchAll(fileio.EmptyMatchTreatment.DISALLOW)
               | "Spread" >> beam.Reshuffle()
               | "Read" >> beam.ParDo(ReadCorpus()).with_outputs("rejects", "counts", main="records"))
    routed = records.records | "ZhEn" >> beam.Filter(lambda r: r.get("lang") in LANGS)
    totals = (routed
              | "Chars" >> beam.Map(lambda r: (r["lang"], len(r["content"])))
              | "Total" >> beam.CombinePerKey(sum))
    rates = (totals
             | "AllTotals" >> beam.combiners.ToDict()
             | "Rates" >> beam.Map(sample_rates, sample_chars, zh_share))
    kept = routed | "Keep" >> beam.Filter(
        lambda r, rates: unit_hash(seed, r["id"]) < rates[r["lang"]], beam.pvalue.AsSingleton(rates))
    (kept | "Lines" >> beam.FlatMap(_keyed_lines, seed)
          | "Write" >> beam.io.WriteToText(prefix, file_name_suffix=".txt"))
    (kept | "Count" >> beam.Map(lambda r: (r["lang"], (1, len(r["content"]))))
          | "Sum" >> beam.CombinePerKey(lambda vs: tuple(map(sum, zip(*vs))) if vs else (0, 0))
          | "Stats" >> beam.combiners.ToDict()
          | "StatsJson" >> beam.Map(lambda d, t: json.dumps({"sample": d, "corpus": t}, sort_keys=True),
                                    beam.pvalue.AsDict(totals))
          | "WriteStats" >> beam.io.WriteToText(prefix + "-stats", file_name_suffix=".json",
                                                 shard_name_template=""))


def _merge_sorted(prefix: str, out_path: str) -> int:
    """Sort the keyed sample lines (in memory: the sample is bounded by sample_chars) and strip the keys."""
    lines = []
    for path in sorted(glob.glob(prefix + "-*.txt")):
        with open(path, encoding="utf-8") as f:
            lines.extend(line.rstrip("\n") for line in f)
    lines.sort()
    with open(out_path, "w", encoding="utf-8") as f:
        for line in lines:
            f.write(line.split("\t", 3)[3] + "\n")
    return len(lines)


def train_tokenizer(corpus_globs: Sequence[str], output: str, vocab_size: int = 50000, zh_share: float = 0.5,
                    model_type: str = "unigram", sample_chars: int = 50_000_000, seed: int = 0,
                    beam_args: Sequence[str] = (), image_codes: int = 8192,
                    character_coverage: float = 0.9995) -> dict[str, Any]:
    """Sample the corpus with Beam, train SentencePiece into `output`; returns (and writes to
    `output/training.json`) the sample statistics and settings."""
    os.makedirs(output, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="wudao-tok-") as tmp:
        prefix = os.path.join(tmp, "sample")
        options = PipelineOptions(list(beam_args) or ["--runner=FnApiRunner"])
        with beam.Pipeline(options=options) as pipeline:
            build_sample(pipeline, corpus_globs, prefix, sample_chars=sample_chars, zh_share=zh_share, seed=seed)
        with open(prefix + "-stats.json", encoding="utf-8") as f:
            stats = json.load(f)
        train_file = os.path.join(tmp, "train.txt")
        if _merge_sorted(prefix, train_file) == 0:
            raise ValueError(f"no zh/en text found in {list(corpus_globs)}")
        vocab = train_sentencepiece([train_file], output, vocab_size=vocab_size, model_type=model_type,
                                    seed=seed, image_codes=image_codes,
                                    character_coverage=character_coverage)
    sample = {lang: {"records": n, "chars": c} for lang, (n, c) in stats["sample"].items()}
    chars = sum(v["chars"] for v in sample.values())
    info = {"corpus": list(corpus_globs), "corpus_chars": stats["corpus"], "sample": sample,
            "sample_zh_share": sample.get("zh", {}).get("chars", 0) / chars if chars else 0.0,
            "vocab_size": vocab_size, "text_vocab_size": vocab.text_vocab_size, "zh_share": zh_share,
            "model_type": model_type, "sample_chars": sample_chars, "seed": seed}
    with open(os.path.join(output, "training.json"), "w", encoding="utf-8") as f:
        json.dump(info, f, ensure_ascii=False, indent=1, sort_keys=True)
    return info
