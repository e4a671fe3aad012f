"""Fuzzy deduplication with MinHash-LSH, clustered by distributed connected components.

    records -> MinHash signatures, in batches (cleaners.minhash)
            -> one key per LSH band, packed per partition of the keys in the worker (`bucket_partitions`: sized
               by the document count); GroupByKey by partition, where documents sharing a bucket are candidates
            -> candidate edges (bucket member -> the bucket's smallest id), verified: exact Jaccard of the
               pair's shingle sets >= threshold (or the signatures' estimate); one join by document id of the
               packed records with the candidate edges sends each record to the edges it is in and passes it on
               to the final drop join; one group per edge compares the two, so no bucket ever carries documents
            -> connected components (pipelines.dedup.components: large-star / small-star rounds)
            -> one representative per component: highest quality score, then smallest id
            -> every other member is dropped as `minhash-duplicate-of:<representative id>`

Every step is a shuffle or a per-element map; no step collects documents, edges or signatures into one
worker. Bands x rows come from the recipe, or are chosen for the threshold: with verification, for recall
(`recall_bands`: candidates catch >= 99% of pairs at the threshold, verification removes the false ones);
without, as datasketch's MinHashLSH does (`optimal_bands`). README: "Fuzzy dedup threshold curve".
"""
from __future__ import annotations

import zlib
from typing import Any, Iterable

import apache_beam as beam
import numpy as np

from pipelines import ledger
from pipelines.dedup.common import StageOutput, quality_rank
from pipelines.dedup.packed import pack, unpack



class _Sign(beam.DoFn):
    """Signatures for a batch of records at once (rensa's batch call, not one update per token)."""

    def __init__(self, num_perm: int, seed: int, ngram_zh: int, ngram_en: int):
        self.params = dict(num_perm=num_perm, seed=seed, ngram_zh=ngram_zh, ngram_en=ngram_en)
        self.hasher = None

    def setup(self) -> None:
        from cleaners.minhash import MinHasher

        self.hasher = MinHasher(**self.params)

    def process(self, batch: list[dict[str, Any]]):
        batch = [r for r in batch if (r.get("content") or "").strip()]
        if not batch:
            return
        signatures = self.hasher.signatures([r["content"] for r in batch], [r.get("lang") or "" for r in batch])
        for record, signature in zip(batch, signatures):
            yield record["id"], np.asarray(signature, dtype=np.uint32).tobytes()


#: band entries one bucket partition should hold (~55 MB of Python objects when its buckets are rebuilt)
ENTRIES_PER_PARTITION = 200_000
#: band entries per packed blob: a worker buffers at most this many per partition before emitting one
BLOB_ENTRIES = 4096
_KEY = 18          # cleaners.minhash.band_keys: 2 bytes of band index + 16 of digest
_LENGTH = 4        # big-endian byte length of the document id that follows a key


def bucket_partitions(documents: int, bands: int) -> int:
    """How many partitions the LSH band entries are spread over: a power of two, so that each holds about
    `ENTRIES_PER_PARTITION` entries whatever the corpus size (one partition is one group in one worker)."""
    need = max(1, -(-documents * bands // ENTRIES_PER_PARTITION))
    return 1 << (need - 1).bit_length()


class _PackBands(beam.DoFn):
    """(id, signature) -> (partition, zlib blob of entries key | id length | id): a document's band keys, packed
    per partition in the worker, so a shuffle moves one value per `BLOB_ENTRIES` entries instead of one per
    entry (a local runner holds every shuffled value as Python objects: about 270 bytes per entry unpacked)."""

    def __init__(self, bands: int, rows: int):
        self.bands, self.rows = bands, rows
        self.pending: dict[int, list[bytes]] = {}

    def start_bundle(self) -> None:
        self.pending = {}

    def process(self, element: tuple[str, bytes], documents: int):
        from cleaners.minhash import band_keys

        doc_id, signature = element
        parts = bucket_partitions(documents, self.bands)
        encoded = doc_id.encode("utf-8", "surrogatepass")
        for key in band_keys(np.frombuffer(signature, dtype=np.uint32), self.bands, self.rows):
            part = int.from_bytes(key[2:6], "big") % parts
            entries = self.pending.setdefault(part, [])
            entries.append(key + len(encoded).to_bytes(_LENGTH, "big") + encoded)
            if len(entries) >= BLOB_ENTRIES:
                yield part, zlib.compress(b"".join(self.pending.pop(part)), 1)

    def finish_bundle(self):
        from apache_beam.transforms.window import GlobalWindow
        from apache_beam.utils.timestamp import MIN_TIMESTAMP
        from apache_beam.utils.windowed_value import WindowedValue

        for part, entries in sorted(self.pending.items()):
            yield WindowedValue((part, zlib.compress(b"".join(entries), 1)), MIN_TIMESTAMP, [GlobalWindow()])
        self.pending = {}


def _bucket_candidates(element: tuple[int, Iterable[bytes]]):
    """One partition's blobs -> candidate edges: every bucket's members to its smallest id (linear, not all
    pairs). Most buckets hold one document, so a bucket's first member is kept alone and only shared buckets
    get a list."""
    _, blobs = element
    first: dict[bytes, bytes] = {}
    shared: dict[bytes, list[bytes]] = {}
    for blob in blobs:
        data, pos = zlib.decompress(blob), 0
        while pos < len(data):
            key, size = data[pos:pos + _KEY], int.from_bytes(data[pos + _KEY:pos + _KEY + _LENGTH], "big")
            member = data[pos + _KEY + _LENGTH:pos + _KEY + _LENGTH + size]
            pos += _KEY + _LENGTH + size
            if key not in first:
                first[key] = member
            else:
                shared.setdefault(key, []).append(member)
    for key, others in shared.items():
        members = sorted({m.decode("utf-8", "surrogatepass") for m in (first[key], *others)})
        for other in members[1:]:
            yield other, members[0]


def _first(values: Iterable[Any]) -> Any:
    return next(iter(values), None)


def _edge_ends(edge: tuple[str, str]):
    """A candidate edge (other, anchor), keyed by each of its two documents."""
    other, anchor = edge
    yield other, edge
    yield anchor, edge


class _EvidencePerEdge(beam.DoFn):
    """(doc id, {record, edge[, signature]}) -> the packed record, passed on to the drop join, and, tagged
    `evidence`, (edge, (doc id, evidence)) for every candidate edge the document is in. The evidence is the
    packed record itself (`exact`) or its signature (`estimate`): the records cross one join here instead of a
    second packed copy of every text waiting beside them."""

    def __init__(self, method: str):
        self.method = method

    def process(self, element):
        doc_id, grouped = element
        records = list(grouped["record"])
        for record in records:
            yield doc_id, record
        evidence = _first(records) if self.method == "exact" else _first(grouped["signature"])
        if evidence is not None:
            for edge in grouped["edge"]:
                yield beam.pvalue.TaggedOutput("evidence", (tuple(edge), (doc_id, evidence)))


def _verified_edge(element, threshold: float, method: str, ngram_zh: int, ngram_en: int):
    """Keep a candidate edge when the pair's similarity reaches the threshold: `exact` Jaccard of the two
    shingle sets (precise), or the signatures' `estimate`. Yields (anchor, other)."""
    from cleaners.minhash import estimate_jaccard, exact_jaccard, shingles

    (other, anchor), ends = element
    evidence = dict(ends)
    if other not in evidence or anchor not in evidence:  # a document without text or signature
        return
    if method == "exact":  # packed records
        docs = {d: unpack(evidence[d]) for d in (anchor, other)}
        a, b = (set(shingles(docs[d].get("content") or "", docs[d].get("lang") or "", ngram_zh=ngram_zh,
                             ngram_en=ngram_en)) for d in (anchor, other))
        similarity = exact_jaccard(a, b)
    else:
        similarity = estimate_jaccard(*(np.frombuffer(evidence[d], dtype=np.uint32) for d in (anchor, other)))
    if similarity >= threshold:
        yield anchor, other


def _by_component(element):
    """(node, {label, rank}) -> (label, (node, rank)): members of a component meet under its label."""
    node, grouped = element
    rank = _first(grouped["rank"])
    for label in grouped["label"]:
        yield label, (node, rank)


def _choose_representative(element):
    """Members of one component -> (member, representative) for every member but the representative."""
    _, members = element
    members = list(members)
    keeper = min(members, key=lambda m: m[1])[0]
    for node, _ in members:
        if node != keeper:
            yield node, keeper


class _ApplyDrops(beam.DoFn):
    def __init__(self, stage: str):
        self.stage = stage

    def process(self, element):
        _, grouped = element
        keepers = list(grouped["keeper"])
        for record in map(unpack, grouped["record"]):
            if keepers:
                reason = f"minhash-duplicate-of:{keepers[0]}"
                yield from ledger.dropped(record, self.stage, reason)
            else:
                yield ledger.passed(self.stage)
                yield record


def recall_bands(threshold: float, num_perm: int, min_recall: float = 0.99) -> tuple[int, int]:
    """Bands x rows for LSH followed by verification: the most rows per band (fewest false candidates) whose
    collision probability at the threshold, 1 - (1 - t^r)^b with b = num_perm // r, is at least `min_recall`.
    For 0.8 and 128 permutations: 21 bands of 6 rows, P(candidate) = 0.998 at 0.8 and 0.28 at 0.5."""
    from cleaners.minhash import collision_probability

    best = (num_perm, 1)
    for rows in range(1, num_perm + 1):
        bands = num_perm // rows
        if bands >= 1 and collision_probability(threshold, bands, rows) >= min_recall:
            best = (bands, rows)
    return best


class MinHashDedup(beam.PTransform):
    """Drop near-duplicates: documents whose estimated Jaccard similarity reaches `threshold` with another
    document of their cluster, keeping one representative per cluster."""

    def __init__(self, stage: str = "minhash_dedup", threshold: float = 0.8, num_perm: int = 128,
                 bands: int | None = None, rows: int | None = None, ngram_zh: int = 5, ngram_en: int = 5,
                 verify: str | bool = "exact", max_rounds: int = 12, seed: int = 1, batch_size: int = 256):
        super().__init__()
        from cleaners.minhash import optimal_bands

        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"minhash threshold must be in (0, 1], got {threshold}")
        if (bands is None) != (rows is None):
            raise ValueError("give both bands and rows, or neither (then they are chosen for the threshold)")
        if verify not in ("exact", "estimate", "none", True, False):
            raise ValueError(f"minhash verify must be exact, estimate or none, got {verify!r}")
        verify = {True: "exact", False: "none"}.get(verify, verify)
        if bands is None:
            bands, rows = recall_bands(threshold, num_perm) if verify != "none" else optimal_bands(threshold, num_perm)
        if bands * rows > num_perm:
            raise ValueError(f"bands x rows ({bands} x {rows}) exceeds num_perm ({num_perm})")
        self.stage, self.threshold, self.bands, self.rows = stage, threshold, bands, rows
        self.sign = _Sign(num_perm, seed, ngram_zh, ngram_en)
        self.verify, self.max_rounds, self.batch_size = verify, max_rounds, batch_size
        self.ngrams = (ngram_zh, ngram_en)

    def expand(self, records: beam.PCollection) -> StageOutput:
        from pipelines.dedup.components import ConnectedComponents

        bands, rows, threshold = self.bands, self.rows, self.threshold
        signatures = (records
                      | "Batch" >> beam.BatchElements(min_batch_size=16, max_batch_size=self.batch_size)
                      | "Sign" >> beam.ParDo(self.sign))
        documents = signatures | "CountSigned" >> beam.combiners.Count.Globally()
        candidates = (signatures
                      | "Bands" >> beam.ParDo(_PackBands(bands, rows), beam.pvalue.AsSingleton(documents))
                      | "Buckets" >> beam.GroupByKey()
                      | "Candidates" >> beam.FlatMap(_bucket_candidates)
                      | "DistinctCandidates" >> beam.Distinct())
        keyed = records | "KeyById" >> beam.Map(lambda r: (r["id"], pack(r)))
        if self.verify != "none":
            ends = candidates | "EdgeEnds" >> beam.FlatMap(_edge_ends)
            inputs = {"record": keyed, "edge": ends}
            if self.verify == "estimate":
                inputs["signature"] = signatures
            joined = (inputs | "JoinEvidence" >> beam.CoGroupByKey()
                      | "EvidencePerEdge" >> beam.ParDo(_EvidencePerEdge(self.verify)).with_outputs(
                          "evidence", main="record"))
            keyed = joined.record
            edges = (joined.evidence
                     | "PairUp" >> beam.GroupByKey()
                     | "Verify" >> beam.FlatMap(_verified_edge, threshold, self.verify, *self.ngrams))
        else:
            edges = candidates | "Unverified" >> beam.Map(lambda kv: (kv[1], kv[0]))
        labels = edges | "Components" >> ConnectedComponents(max_rounds=self.max_rounds)
        ranks = records | "Rank" >> beam.Map(lambda r: (r["id"], quality_rank(r)))
        drops = (({"label": labels, "rank": ranks} | "JoinRank" >> beam.CoGroupByKey())
                 | "ByComponent" >> beam.FlatMap(_by_component)
                 | "GroupComponents" >> beam.GroupByKey()
                 | "Representative" >> beam.FlatMap(_choose_representative))
        applied = (({"record": keyed, "keeper": drops} | "JoinDrops" >> beam.CoGroupByKey())
                   | "Apply" >> beam.ParDo(_ApplyDrops(self.stage))
                   .with_outputs(ledger.REJECTS, ledger.COUNTS, main="kept"))
        return StageOutput(applied.kept, applied[ledger.REJECTS], applied[ledger.COUNTS])
