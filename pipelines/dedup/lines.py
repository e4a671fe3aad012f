"""Line/paragraph deduplication: lines that repeat across many documents (site footers, "版权所有 …", cookie
notices, share buttons) are cut from every document that has them, then changed documents are re-checked.

Sources: CCNet (Wenzek et al. 2020, section 3.3) hashes normalized paragraphs and removes those repeated across
a shard of the crawl; C4 (Raffel et al. 2020, section 2.2) discards repeated three-sentence spans and then
re-applies its page rules. Here a line counts as boilerplate when it is in at least `min_docs` distinct
documents (default 10, so a quote shared by a handful of articles survives), and every copy is removed: a line
that dozens of pages carry is the site's, not the content's. Normalization and hashing: `cleaners.lines`.

The graph has no single-worker step and no side input, so worker memory is bounded by one document plus
Beam's shuffles:

    records --(hash, doc_id) per distinct line--> Count.PerKey --count >= min_docs--> boilerplate hashes
    (hash, doc_id) CoGroupByKey boilerplate hashes   --> (doc_id, hash to remove)
    (doc_id, record) CoGroupByKey (doc_id, hash)     --> lines removed, uniqueKey updated, re-checked

A changed record gets its new `content` and `uniqueKey` (sha1 of the content, `cleaners.document.stable_hash`);
`id` stays (later stages and rejects refer to it) and no field is added, so the record schema (and the Parquet
schema) is unchanged. The ledger counts the cut lines: a kept document that lost lines carries
`<stage>|count|lines-removed: n` in its count dict. Records that lose no line pass through unchanged.

Drop reasons: `line-dedup:empty` (nothing but whitespace left), `line-dedup:<reason>` from a `recheck_steps`
step (e.g. `line-dedup:zh-too-few-chinese-chars`), `line-dedup:bad-record` (no string `id` or `content`).
"""
from __future__ import annotations

from typing import Any, Iterable

import apache_beam as beam

from cleaners.document import Document, stable_hash
from cleaners.lines import distinct_line_hashes, remove_lines
from pipelines import ledger
from pipelines.dedup.common import StageOutput
from pipelines.dedup.packed import pack, unpack

REASON_PREFIX = "line-dedup"
KEPT = "kept"


def _is_valid(record: Any) -> bool:
    return (isinstance(record, dict) and isinstance(record.get("id"), str) and record["id"] != ""
            and isinstance(record.get("content"), str))


class _SplitValid(beam.DoFn):
    """Records with a string `id` and `content` go on; others are dropped as `line-dedup:bad-record`."""

    def __init__(self, stage: str) -> None:
        self.stage = stage

    def process(self, record: Any):
        if _is_valid(record):
            yield record
            return
        row = record if isinstance(record, dict) else {}
        reason = f"{REASON_PREFIX}:bad-record"
        yield from ledger.dropped(row, self.stage, reason)


def _hash_doc_pairs(record: dict[str, Any], min_line_chars: int) -> Iterable[tuple[bytes, str]]:
    """(line hash, doc id) for each distinct countable line of the record."""
    doc_id = record["id"]
    for digest in distinct_line_hashes(record["content"], min_line_chars):
        yield digest, doc_id


def _removals_for_boilerplate(joined: tuple[bytes, dict[str, Iterable[Any]]]) -> Iterable[tuple[str, bytes]]:
    """From one line hash's join: (doc id, hash) for every document with the line, if the line is boilerplate."""
    digest, groups = joined
    if not any(True for _ in groups["boilerplate"]):
        return
    for doc_id in groups["docs"]:
        yield doc_id, digest


class _RemoveAndRecheck(beam.DoFn):
    """Per document id: cut its boilerplate lines, update `uniqueKey`, re-check; route to kept/rejects/counts."""

    def __init__(self, stage: str, min_line_chars: int, recheck_steps: list[Any]) -> None:
        self.stage = stage
        self.min_line_chars = min_line_chars
        self.recheck_steps = recheck_steps
        self._steps: list[Any] = []

    def setup(self) -> None:
        from cleaners.recipe import build_steps

        self._steps = build_steps({"steps": self.recheck_steps})
        for step in self._steps:
            step.setup()

    def process(self, joined: tuple[str, dict[str, Iterable[Any]]]):
        _, groups = joined
        to_remove = frozenset(groups["remove"])
        for packed in groups["record"]:   # one record per id; more only if the input broke the id contract
            yield from self._one(unpack(packed), to_remove)

    def _one(self, record: dict[str, Any], to_remove: frozenset[bytes]):
        content, removed = remove_lines(record["content"], to_remove, self.min_line_chars)
        if not removed:
            yield record
            yield ledger.passed(self.stage)
            return
        reason = "empty" if not content.strip() else self._recheck(record, content)
        if reason is not None:
            reason = f"{REASON_PREFIX}:{reason}"
            yield from ledger.dropped(record, self.stage, reason)
            return
        changed = dict(record)
        changed["content"] = content
        changed["uniqueKey"] = stable_hash(content)
        yield changed
        yield ledger.counted({**ledger.kept_counts(self.stage),
                              ledger.key(self.stage, "count", "lines-removed"): removed})

    def _recheck(self, record: dict[str, Any], content: str) -> str | None:
        """The first recheck step's reason to drop the shortened document, or None to keep it.

        Steps only judge here: a step that changes the text (wudao_zh cuts short paragraphs) does not change the
        output, which is the input minus the boilerplate lines; later steps see the changed text, as in a recipe.
        """
        doc = Document(id=record["id"], text=content, title=str(record.get("title") or ""),
                       url=str(record.get("url") or ""), lang=str(record.get("lang") or ""))
        for step in self._steps:
            if not step.applies_to(doc):
                continue
            result = step.apply(doc)
            if isinstance(result, str):
                return result
            doc = result
        return None


class LineDedup(beam.PTransform):
    """Remove lines found in at least `min_docs` documents, then re-check the changed documents.

    - `stage`: the name in stats.json and rejects/.
    - `min_docs` (10): a line (after `cleaners.lines.normalize_line`) in this many distinct documents is
      boilerplate. At least 2.
    - `min_line_chars` (0): lines whose normalized form is shorter are never counted nor removed (0: every line
      that normalizes to something).
    - `recheck_steps` (None: no re-check): recipe step entries (as in a recipe's `steps`, e.g.
      `["wudao_zh", {"gopher_quality": {}}]`) run in order on each document that lost lines; a step only sees
      the languages it applies to. Validated here, built and set up once per worker.

    Input: a PCollection of corpus records (WuDao schema dicts, `content` lines separated by "\\n").
    Output: `StageOutput(kept, rejects, counts)`, one count dict per input record.
    """

    def __init__(self, stage: str = "line_dedup", min_docs: int = 10, min_line_chars: int = 0,
                 recheck_steps: list[Any] | None = None) -> None:
        super().__init__()
        if isinstance(min_docs, bool) or not isinstance(min_docs, int) or min_docs < 2:
            raise ValueError(f"line_dedup: min_docs must be an integer >= 2, got {min_docs!r}")
        if isinstance(min_line_chars, bool) or not isinstance(min_line_chars, int) or min_line_chars < 0:
            raise ValueError(f"line_dedup: min_line_chars must be an integer >= 0, got {min_line_chars!r}")
        if recheck_steps is not None and not isinstance(recheck_steps, list):
            raise ValueError(f"line_dedup: recheck_steps must be a list of recipe steps, got {recheck_steps!r}")
        from cleaners.recipe import build_steps

        build_steps({"steps": recheck_steps or []})   # raises ValueError on an unknown step or parameter
        self.stage = stage
        self.min_docs = min_docs
        self.min_line_chars = min_line_chars
        self.recheck_steps = list(recheck_steps or [])

    def expand(self, records: beam.PCollection) -> StageOutput:
        min_docs = self.min_docs
        checked = records | "Validate" >> beam.ParDo(_SplitValid(self.stage)).with_outputs(
            ledger.REJECTS, ledger.COUNTS, main=KEPT)
        valid = checked[KEPT]
        pairs = valid | "LineHashes" >> beam.FlatMap(_hash_doc_pairs, self.min_line_chars)
        boilerplate = (
            pairs
            | "DocsPerLine" >> beam.combiners.Count.PerKey()
            | "Boilerplate" >> beam.Filter(lambda kv: kv[1] >= min_docs)
            | "Marker" >> beam.Map(lambda kv: (kv[0], None))
        )
        removals = (
            {"docs": pairs, "boilerplate": boilerplate}
            | "JoinLines" >> beam.CoGroupByKey()
            | "RemovalsPerDoc" >> beam.FlatMap(_removals_for_boilerplate)
        )
        keyed = valid | "KeyById" >> beam.Map(lambda record: (record["id"], pack(record)))
        results = (
            {"record": keyed, "remove": removals}
            | "JoinDocs" >> beam.CoGroupByKey()
            | "RemoveAndRecheck" >> beam.ParDo(
                _RemoveAndRecheck(self.stage, self.min_line_chars, self.recheck_steps)).with_outputs(
                ledger.REJECTS, ledger.COUNTS, main=KEPT)
        )
        rejects = (checked[ledger.REJECTS], results[ledger.REJECTS]) | "Rejects" >> beam.Flatten()
        counts = (checked[ledger.COUNTS], results[ledger.COUNTS]) | "Counts" >> beam.Flatten()
        return StageOutput(kept=results[KEPT], rejects=rejects, counts=counts)
