"""Exact and URL deduplication: group records by a key with one shuffle, keep one per group, drop the rest.

The keeper is chosen deterministically by a rank (smaller is better), so every runner and every rerun keeps
the same record. A group is read twice (best first, then the drops that name it): Beam's grouped values are
re-iterable, and runners page large groups from the shuffle instead of holding them in memory.
"""
from __future__ import annotations

import unicodedata
from typing import Any, Callable, Iterable

import apache_beam as beam

from cleaners.document import stable_hash
from cleaners.urlnorm import normalize_url
from pipelines import ledger
from pipelines.dedup.common import StageOutput, quality_rank
from pipelines.dedup.packed import pack, unpack



def content_key(record: dict[str, Any]) -> str:
    """Hash of the normalized content: NFKC, case-folded, whitespace runs collapsed."""
    text = unicodedata.normalize("NFKC", record.get("content") or "").casefold()
    return stable_hash(" ".join(text.split()))


def url_key(record: dict[str, Any]) -> str:
    return normalize_url(record.get("url") or "")


def newest_first(record: dict[str, Any]) -> tuple:
    """URL dedup keeps the newest capture (ISO dates compare as strings), then the best quality, then smallest id."""
    date = str(record.get("date") or "")
    return ((1,) if not date else (0, tuple(-ord(c) for c in date))) + quality_rank(record)


class _KeepBest(beam.DoFn):
    def __init__(self, stage: str, rank: Callable[[dict], Any], reason: str):
        self.stage, self.rank, self.reason = stage, rank, reason

    def process(self, element: tuple[str, Iterable[bytes]]):
        _, group = element  # packed records (pipelines/dedup/packed.py)
        best = min(group, key=lambda packed: self.rank(unpack(packed)))
        keeper = unpack(best)["id"]
        kept_one = False
        for packed in group:
            record = unpack(packed)
            if not kept_one and packed == best:
                kept_one = True
                yield ledger.passed(self.stage)
                yield record
            else:
                reason = f"{self.reason}-of:{keeper}"
                yield from ledger.dropped(record, self.stage, reason)


class _PassThrough(beam.DoFn):
    """Records without a key (no URL) are not part of the stage's groups; they go on, counted."""

    def __init__(self, stage: str):
        self.stage = stage

    def process(self, record: dict[str, Any]):
        yield ledger.passed(self.stage)
        yield record


class KeepOnePerKey(beam.PTransform):
    """Keep the best-ranked record of every group of records sharing `key(record)`; drop the others with
    reason `<reason>-of:<kept id>`. Records whose key is empty pass through."""

    def __init__(self, stage: str, key: Callable[[dict], str], rank: Callable[[dict], Any], reason: str):
        super().__init__(label=None)
        self.stage, self.key, self.rank, self.reason = stage, key, rank, reason

    def expand(self, records: beam.PCollection) -> StageOutput:
        key = self.key
        keyed = records | "Key" >> beam.Map(lambda r: (key(r), r))
        with_key, without_key = keyed | "SplitKeyless" >> beam.Partition(lambda kv, _: 0 if kv[0] else 1, 2)
        grouped = (with_key
                   | "Pack" >> beam.Map(lambda kv: (kv[0], pack(kv[1])))
                   | "Group" >> beam.GroupByKey()
                   | "KeepBest" >> beam.ParDo(_KeepBest(self.stage, self.rank, self.reason))
                   .with_outputs(ledger.REJECTS, ledger.COUNTS, main="kept"))
        passed = (without_key | "Unkey" >> beam.Values()
                  | "PassKeyless" >> beam.ParDo(_PassThrough(self.stage)).with_outputs(ledger.COUNTS, main="kept"))
        kept = (grouped.kept, passed.kept) | "MergeKept" >> beam.Flatten()
        counts = (grouped[ledger.COUNTS], passed[ledger.COUNTS]) | "MergeCounts" >> beam.Flatten()
        return StageOutput(kept, grouped[ledger.REJECTS], counts)


def ExactDedup(stage: str = "exact_dedup") -> KeepOnePerKey:
    """Exact duplicates by normalized content; keeps the highest quality score, then the smallest id."""
    return KeepOnePerKey(stage, content_key, quality_rank, "exact-duplicate")


def UrlDedup(stage: str = "url_dedup") -> KeepOnePerKey:
    """Captures of the same normalized URL; keeps the newest (then quality, then smallest id)."""
    return KeepOnePerKey(stage, url_key, newest_first, "url-duplicate")
