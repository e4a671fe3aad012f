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


def _keyed_packed(record: dict[str, Any], key: Callable[[dict], str]) -> tuple[tuple[str, str], bytes]:
    """((key, ""), packed record), or (("", id), packed record) when the key is empty: a group of its own."""
    value = key(record)
    return ((value, "") if value else ("", str(record["id"]))), pack(record)


class KeepOnePerKey(beam.PTransform):
    """Keep the best-ranked record of every group of records sharing `key(record)`; drop the others with
    reason `<reason>-of:<kept id>`. A record whose key is empty (no URL) is grouped alone, keyed ("", its id), so
    it passes: every record takes the one shuffle, and the kept records leave the grouping stage directly (a separate
    pass-through path would have to be merged, which makes the local runner buffer every kept record)."""

    def __init__(self, stage: str, key: Callable[[dict], str], rank: Callable[[dict], Any], reason: str):
        super().__init__(label=None)
        self.stage, self.key, self.rank, self.reason = stage, key, rank, reason

    def expand(self, records: beam.PCollection) -> StageOutput:
        grouped = (records
                   | "Pack" >> beam.Map(_keyed_packed, self.key)
                   | "Group" >> beam.GroupByKey()
                   | "KeepBest" >> beam.ParDo(_KeepBest(self.stage, self.rank, self.reason))
                   .with_outputs(ledger.REJECTS, ledger.COUNTS, main="kept"))
        return StageOutput(grouped.kept, grouped[ledger.REJECTS], grouped[ledger.COUNTS])


def ExactDedup(stage: str = "exact_dedup") -> KeepOnePerKey:
    """Exact duplicates by normalized content; keeps the highest quality score, then the smallest id."""
    return KeepOnePerKey(stage, content_key, quality_rank, "exact-duplicate")


def UrlDedup(stage: str = "url_dedup") -> KeepOnePerKey:
    """Captures of the same normalized URL; keeps the newest (then quality, then smallest id)."""
    return KeepOnePerKey(stage, url_key, newest_first, "url-duplicate")
