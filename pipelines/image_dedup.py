"""Perceptual-hash deduplication of image-text records across the whole dataset, with Beam shuffles only.

    records -> (phash, (id, rank))                 one 64-bit DCT hash per image (cleaners/image/phash.py)
            -> distinct hashes -> split each into max_distance + 1 bands; GroupByKey per (band, value)
               (pigeonhole: two hashes within `max_distance` bits agree exactly on at least one band, so every
               near pair meets in some bucket; Manku, Jain, Das Sarma, "Detecting near-duplicates for web
               crawling", WWW 2007, use the same block permutation idea for simhash)
            -> pairs in a bucket within `max_distance` bits are edges between hashes
            -> connected components of hashes (pipelines/dedup/components.py)
            -> records grouped by their hash's component label (or by the hash itself): keep the image with
               the most original pixels, then the smallest id; every other one is `phash-duplicate-of:<id>`.

Exact duplicates (the same bytes, or the same picture re-encoded) share a hash and need no bucket. A bucket
compares its distinct hashes pairwise; buckets larger than `max_bucket` (degenerate images: blank, single
colour) compare every member with the bucket's first `max_bucket` hashes only, and count `bucket-capped`.
"""
from __future__ import annotations

from typing import Any, Iterable

import apache_beam as beam

from pipelines import ledger, progress
from pipelines.dedup.common import StageOutput

HASH_BITS = 64


def band_masks(max_distance: int) -> list[tuple[int, int]]:
    """(shift, mask) of `max_distance + 1` contiguous bit ranges covering the 64-bit hash."""
    if not 0 <= max_distance < HASH_BITS:
        raise ValueError(f"max_distance must be in [0, {HASH_BITS}), got {max_distance}")
    bands = max_distance + 1
    bounds = [round(i * HASH_BITS / bands) for i in range(bands + 1)]
    return [(lo, (1 << (hi - lo)) - 1) for lo, hi in zip(bounds, bounds[1:])]


def image_rank(record: dict[str, Any]) -> tuple[int, str]:
    """Keep the largest original image (width x height), then the smallest id."""
    facts = record.get("facts") or {}
    pixels = int(facts.get("original_width", 0)) * int(facts.get("original_height", 0))
    return (-pixels, str(record.get("id", "")))


def _hash_of(record: dict[str, Any]) -> str:
    return str((record.get("facts") or {}).get("phash", ""))


def _band_entries(phash: str, masks: list[tuple[int, int]]):
    value = int(phash, 16)
    for band, (shift, mask) in enumerate(masks):
        yield (band, (value >> shift) & mask), phash


class _NearPairs(beam.DoFn):
    """Distinct hashes sharing one band value -> edges between those within `max_distance` bits."""

    def __init__(self, max_distance: int, max_bucket: int):
        self.max_distance, self.max_bucket = max_distance, max_bucket
        self.capped = progress.counter("phash_dedup|bucket-capped")

    def process(self, element: tuple[Any, Iterable[str]]):
        _, hashes = element
        anchors: list[tuple[str, int]] = []
        for phash in hashes:
            value = int(phash, 16)
            for other, other_value in anchors:
                if bin(value ^ other_value).count("1") <= self.max_distance:
                    yield phash, other
            if len(anchors) < self.max_bucket:
                anchors.append((phash, value))
            elif len(anchors) == self.max_bucket:
                self.capped.inc()


def _cluster_members(element):
    """(phash, {"label": [label?], "member": [(id, rank)...]}) -> (cluster, (id, rank)) for every member."""
    phash, grouped = element
    labels = list(grouped["label"])
    cluster = labels[0] if labels else phash
    for member in grouped["member"]:
        yield cluster, member


def _drops(element):
    """Members of one cluster -> (member id, keeper id) for every member but the keeper (two streaming passes)."""
    _, members = element
    keeper = min(members, key=lambda m: m[1])[0]
    for record_id, _ in members:
        if record_id != keeper:
            yield record_id, keeper


class _Apply(beam.DoFn):
    def __init__(self, stage: str):
        self.stage = stage

    def process(self, element):
        _, grouped = element
        keepers = list(grouped["keeper"])
        # records sharing an id are the same bytes with the same caption: one is kept (smallest input key)
        records = sorted(grouped["record"], key=lambda r: str(r.get("key", "")))
        for i, record in enumerate(records):
            if keepers or i:
                reason = f"phash-duplicate-of:{keepers[0] if keepers else record['id']}"
                yield from ledger.dropped(record, self.stage, reason)
            else:
                yield ledger.passed(self.stage)
                yield record


class PerceptualDedup(beam.PTransform):
    """Drop images whose perceptual hash is within `max_distance` bits of another kept image's hash.

    `max_distance` 0 keeps only exact-hash duplicates out; the default 4 of 64 bits catches re-encodes,
    resizes and small crops while distinct photos differ by about 32 bits (random-like hashes)."""

    def __init__(self, stage: str = "phash_dedup", max_distance: int = 4, max_bucket: int = 1000,
                 max_rounds: int = 12):
        super().__init__()
        self.masks = band_masks(max_distance)
        if max_bucket < 1:
            raise ValueError("max_bucket must be >= 1")
        self.stage, self.max_distance, self.max_bucket, self.max_rounds = stage, max_distance, max_bucket, max_rounds

    def expand(self, records: beam.PCollection) -> StageOutput:
        from pipelines.dedup.components import ConnectedComponents

        members = records | "Members" >> beam.Map(lambda r: (_hash_of(r), (r["id"], image_rank(r))))
        hashes = members | "Hashes" >> beam.Keys() | "DistinctHashes" >> beam.Distinct()
        edges = (hashes
                 | "Bands" >> beam.FlatMap(_band_entries, self.masks)
                 | "Buckets" >> beam.GroupByKey()
                 | "NearPairs" >> beam.ParDo(_NearPairs(self.max_distance, self.max_bucket))
                 | "DistinctEdges" >> beam.Map(lambda e: (max(e), min(e))) | "Distinct" >> beam.Distinct())
        labels = edges | "Components" >> ConnectedComponents(max_rounds=self.max_rounds)
        drops = (({"label": labels, "member": members} | "JoinLabels" >> beam.CoGroupByKey())
                 | "Clusters" >> beam.FlatMap(_cluster_members)
                 | "GroupClusters" >> beam.GroupByKey()
                 | "Keepers" >> beam.FlatMap(_drops))
        keyed = records | "KeyById" >> beam.Map(lambda r: (r["id"], r))
        applied = (({"record": keyed, "keeper": drops} | "JoinDrops" >> beam.CoGroupByKey())
                   | "Apply" >> beam.ParDo(_Apply(self.stage)).with_outputs(ledger.REJECTS, ledger.COUNTS, main="kept"))
        return StageOutput(applied.kept, applied[ledger.REJECTS], applied[ledger.COUNTS])
