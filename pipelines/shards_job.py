"""Beam graph: a clean corpus (JSONL/JSONL.gz `corpus/part-*`) -> tokenized WebDataset shards + manifest.json.

    read records -> split by id hash -> tokenize in batches (tokenizer loaded in DoFn.setup)
    -> per split: estimated tar bytes summed -> number of shards = ceil(bytes / shard_size_bytes)
    -> key (split, shard_of(id, n)) -> GroupByKey -> write each shard (sorted, temp name + rename)
    -> manifest.json (atomic), stale shards of an earlier run removed.

Which record lands in which shard, and every shard's bytes, depend only on the corpus and the tokenizer, never on
the runner, bundling or worker count (tested: FnApiRunner in-process vs multi_processing). A rerun keeps a shard
already on disk whose manifest entry (and tokenizer hash and dtype) matches what it would write.
The shard files are written with local file operations (os.replace), so `output` is a local or mounted path.
"""
from __future__ import annotations

import gzip
import io
import json
import logging
import math
import os
from typing import Any, Callable, Iterable, Sequence

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from pipelines import progress
from pipelines.run import pipeline_options
from shards.index import open_index, write_index
from shards.manifest import build_manifest, read_manifest, write_manifest
from shards.writer import (check_key, dtype_for, encode_sample, file_sha256, remove_unlisted_shards, shard_name,
                           shard_of, split_of, tar_bytes, tokens_per_label, write_shard)

LOG = logging.getLogger("wudao.shards")


class ProjectTokenizer:
    """Adapter over the project's tokenizer: `encode_batch`, `vocab_size` (whole id space) and `hash`."""

    def __init__(self, directory: str):
        from tokenizer.text import TextTokenizer, tokenizer_hash

        self._tok = TextTokenizer.load(directory)
        self.vocab_size = len(self._tok)  # the whole shared id space (text, specials, image codes)
        self.hash = tokenizer_hash(directory)

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return self._tok.encode_batch(list(texts))


def sample_text(record: dict[str, Any]) -> str | None:
    """The text a record is tokenized from: its `content` (WuDao schema), or `text`; None when neither is a
    non-empty string."""
    for field in ("content", "text"):
        value = record.get(field)
        if isinstance(value, str) and value.strip():
            return value
    return None


class ReadRecords(beam.DoFn):
    """Records `{"id", "source", "lang", "dataType", "text"}` of one JSONL(.gz) file; unusable lines are counted,
    skipped. `dataType` is the record's WuDao domain label ("" when it has no string one)."""

    def process(self, metadata: fileio.FileMetadata) -> Iterable[dict[str, Any]]:
        try:
            with FileSystems.open(metadata.path, compression_type=CompressionTypes.UNCOMPRESSED) as raw:
                head = raw.read(2)
                raw.seek(0)
                stream = gzip.GzipFile(fileobj=raw) if head == b"\x1f\x8b" else raw
                for line in io.TextIOWrapper(stream, encoding="utf-8", errors="replace"):
                    if not line.strip():
                        continue
                    row = self._row(line)
                    if row is None:
                        progress.counter("shards|records-skipped").inc()
                    else:
                        progress.counter("shards|records-read").inc()
                        yield row
        except (OSError, EOFError, gzip.BadGzipFile) as exc:  # truncated file: what was read stays
            LOG.warning("shards: %s is damaged (%s)", metadata.path, exc)
            progress.counter("shards|files-damaged").inc()

    @staticmethod
    def _row(line: str) -> dict[str, Any] | None:
        try:
            record = json.loads(line)
            check_key(record["id"])
        except (ValueError, KeyError, TypeError):
            return None
        text = sample_text(record)
        if text is None:
            return None
        label = record.get("dataType")
        return {"id": record["id"], "source": str(record.get("source", "")), "lang": str(record.get("lang", "")),
                "dataType": label if isinstance(label, str) else "", "text": text}


class Tokenize(beam.DoFn):
    """A batch of rows -> (split, sample) pairs; the tokenizer is loaded once per worker in setup()."""

    def __init__(self, loader: Callable[[str], Any], tokenizer_dir: str, dtype: str, val_fraction: float):
        self._loader, self._dir, self._dtype, self._val = loader, tokenizer_dir, dtype, val_fraction
        self._tok = None

    def setup(self) -> None:
        self._tok = self._loader(self._dir)

    def process(self, rows: list[dict[str, Any]]) -> Iterable[tuple[str, dict[str, Any]]]:
        for row, ids in zip(rows, self._tok.encode_batch([r["text"] for r in rows])):
            progress.counter("shards|tokens").inc(len(ids))
            yield split_of(row["id"], self._val), encode_sample(row, ids, self._dtype)


class WriteShard(beam.DoFn):
    """(split, index), samples -> the shard's manifest entry (with `tokens_per_label`); keeps a shard from an
    earlier run whose entry matches in samples, tokens and tokens per label (an entry without them is rewritten)."""

    def __init__(self, output: str, previous: dict[str, dict[str, Any]]):
        self._output, self._previous = output, previous

    def process(self, element: tuple[tuple[str, int], Iterable[dict[str, Any]]]) -> Iterable[dict[str, Any]]:
        (split, index), samples = element
        unique = self._unique(samples)
        name = shard_name(split, index)
        path = os.path.join(self._output, name)
        labels = tokens_per_label(unique)
        old = self._previous.get(name)
        if old and old["samples"] == len(unique) and old["tokens"] == sum(labels.values()) \
                and old.get("tokens_per_label") == labels and os.path.isfile(path) \
                and file_sha256(path) == (old["sha256"], old["bytes"]):
            progress.counter("shards|shards-kept").inc()
            if isinstance(open_index(path, old["sha256"]), str):  # kept from a run before token indexes
                write_index(path, old["sha256"])
            yield dict(old)
            return
        info = write_shard(unique, path)
        progress.counter("shards|shards-written").inc()
        yield {**info.to_dict(), "split": split}

    @staticmethod
    def _unique(samples: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """One sample per key (the corpus should have unique ids; if not, a fixed one of the copies is kept)."""
        chosen: dict[str, dict[str, Any]] = {}
        for sample in samples:
            key = sample["__key__"]
            have = chosen.get(key)
            if have is None or (sample["npy"], sample["json"]) < (have["npy"], have["json"]):
                if have is not None:
                    progress.counter("shards|duplicate-ids").inc()
                chosen[key] = sample
            else:
                progress.counter("shards|duplicate-ids").inc()
        return list(chosen.values())


def _assign(item: tuple[str, dict[str, Any]], counts: dict[str, int]) -> tuple[tuple[str, int], dict[str, Any]]:
    split, sample = item
    return (split, shard_of(sample["__key__"], counts[split])), sample


def _finish(entries: list[dict[str, Any]], output: str, tokenizer_hash: str, dtype: str, seq_len: int,
            command: str) -> dict[str, Any]:
    """Write manifest.json and remove `train-*.tar` / `val-*.tar` left by an earlier run but not listed now."""
    manifest = build_manifest(entries, tokenizer_hash, dtype, seq_len, command)
    remove_unlisted_shards(output, (e["name"] for e in manifest["shards"]))
    write_manifest(output, manifest)
    return manifest


def write_shards(corpus_globs: Sequence[str], tokenizer_dir: str, output: str, seq_len: int = 512,
                 shard_size_bytes: int = 256 * 1024 * 1024, val_fraction: float = 0.01,
                 beam_args: Sequence[str] = (), loader: Callable[[str], Any] = ProjectTokenizer,
                 command: str | None = None, fmt: str = "text", vq: str | None = None,
                 max_text_tokens: int = 64) -> dict[str, Any]:
    """Tokenize the corpus matched by `corpus_globs` into `output/{train,val}-NNNNNN.tar` + manifest.json.

    `fmt="text"`: JSONL corpus records, one sample per record. `fmt="cogview"`: image-text WebDataset tars from
    `wudao image-text`, one sample per pair laid out `[ROI1] caption [BASE] [BOI1] image codes [EOI1]`, the codes
    from the VQ checkpoint `vq` (pipelines/cogview_shards.py).
    `loader(tokenizer_dir)` gives an object with `encode_batch(texts)`, `vocab_size` and `hash`; it must pickle
    (it is called in the driver and in each worker's setup). Returns the manifest written."""
    if shard_size_bytes < 1:
        raise ValueError("shard_size_bytes must be >= 1")
    if fmt not in ("text", "cogview"):
        raise ValueError(f"unknown shard format {fmt!r} (text or cogview)")
    split_of("", val_fraction)  # validates val_fraction before any work
    if fmt == "cogview":
        from pipelines.cogview_shards import CogViewTokenizer, ReadImagePairs, TokenizeCogView

        if not vq:
            raise ValueError("cogview shards need a VQ checkpoint (--vq vq.pt)")
        tok = CogViewTokenizer(tokenizer_dir, vq, max_text_tokens)
        read, tokenize = ReadImagePairs(), TokenizeCogView(tok, val_fraction)
    else:
        tok = loader(tokenizer_dir)
        read = ReadRecords()
    dtype, tokenizer_hash = dtype_for(tok.vocab_size), str(tok.hash)
    if fmt == "text":
        tokenize = Tokenize(loader, tokenizer_dir, dtype, val_fraction)
    os.makedirs(output, exist_ok=True)
    output = os.path.abspath(output)
    _remove_leftover_temps(output)
    previous = read_manifest(output) or {}
    same_tokens = previous.get("tokenizer_hash") == tokenizer_hash and previous.get("dtype") == dtype
    reusable = {e["name"]: e for e in previous.get("shards", []) if isinstance(e, dict)} if same_tokens else {}
    command = command or (f"write_shards {json.dumps(sorted(corpus_globs))} format={fmt} "
                          f"tokenizer_hash={tokenizer_hash} seq_len={seq_len} shard_size_bytes={shard_size_bytes} "
                          f"val_fraction={val_fraction}")
    with beam.Pipeline(options=pipeline_options(list(beam_args))) as pipeline:
        samples = (pipeline
                   | "Globs" >> beam.Create(sorted(corpus_globs))
                   | "Match" >> fileio.MatchAll(fileio.EmptyMatchTreatment.DISALLOW)
                   | "Read" >> beam.ParDo(read)
                   | "Spread" >> beam.Reshuffle()
                   | "Batch" >> beam.BatchElements(min_batch_size=16 if fmt == "text" else 4,
                                                   max_batch_size=512 if fmt == "text" else 32)
                   | "Tokenize" >> beam.ParDo(tokenize))
        counts = (samples
                  | "Bytes" >> beam.Map(lambda item: (item[0], tar_bytes(item[1])))
                  | "BytesPerSplit" >> beam.CombinePerKey(sum)
                  | "NumShards" >> beam.Map(lambda kv: (kv[0], max(1, math.ceil(kv[1] / shard_size_bytes)))))
        _ = (samples
             | "Assign" >> beam.Map(_assign, counts=beam.pvalue.AsDict(counts))
             | "Group" >> beam.GroupByKey()
             | "Write" >> beam.ParDo(WriteShard(output, reusable))
             | "Entries" >> beam.combiners.ToList()
             | "Manifest" >> beam.Map(_finish, output, tokenizer_hash, dtype, seq_len, command))
    _copy_vocab(tokenizer_dir, output)
    return read_manifest(output) or {}


def _remove_leftover_temps(output: str) -> None:
    """`*.tmp` files a killed run left (a shard or the manifest half written under its temporary name)."""
    for name in os.listdir(output):
        if name.endswith(".tmp") and os.path.isfile(os.path.join(output, name)):
            os.remove(os.path.join(output, name))


def _copy_vocab(tokenizer_dir: str, output: str) -> None:
    """The tokenizer (vocab.json, tokenizer.model) beside the shards, so a training job knows the id space and
    can encode prompts from the shard folder alone."""
    import shutil

    for name in ("vocab.json", "tokenizer.model"):
        source = os.path.join(tokenizer_dir, name)
        if os.path.isfile(source):
            shutil.copyfile(source, os.path.join(output, name + ".tmp"))
            os.replace(os.path.join(output, name + ".tmp"), os.path.join(output, name))
