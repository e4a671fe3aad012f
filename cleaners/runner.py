"""Run a whole recipe on one input record, without Beam.

`RecipeRunner` is the fused per-record chain (extract -> steps) that the Beam layer runs inside one DoFn
and that tests and benchmarks run directly. For every record it returns what happened as ledger events,
so that every stage can account for its records: in = out + dropped.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from cleaners.document import Document, RawPage, reject_row, stable_hash, to_wudao_record
from cleaners.histogram import chars_bucket, hist_key
from cleaners.recipe import build_steps

READ_STAGE = "read"
EXTRACT_STAGE = "extract"


@dataclass
class Outcome:
    """The result of one input record: the kept WuDao record or the reject, plus ledger counts."""

    record: dict[str, Any] | None = None
    reject: dict[str, Any] | None = None
    counts: Counter = field(default_factory=Counter)


def ledger_key(stage: str, what: str) -> str:
    """Ledger counter names: `<stage>|in`, `<stage>|out`, `<stage>|drop|<reason>`, `<stage>|count|<name>`
    (`<stage>|hist|<name>|<bucket>` from `cleaners.histogram.hist_key`)."""
    return f"{stage}|{what}"


class RecipeRunner:
    """The fused recipe: a `PageExtractor` from the recipe's `extract` section, then its `steps`."""

    def __init__(self, config: dict[str, Any]):
        from cleaners.extract import PageExtractor

        self.config = config
        self.extractor = PageExtractor(**(config.get("extract") or {}))
        self.steps = build_steps(config)
        self.stage_names = _unique_names([s.stage_name or s.name for s in self.steps])
        self._ready = False

    def setup(self) -> None:
        self.extractor.setup()
        for step in self.steps:
            step.setup()
        self._ready = True

    def teardown(self) -> None:
        teardown = getattr(self.extractor, "teardown", None)
        if teardown:
            teardown()

    def stages(self) -> list[str]:
        """Stage names in order, as they appear in stats.json."""
        return [READ_STAGE, EXTRACT_STAGE, *self.stage_names]

    def skip(self, key: str, source: str, reason: str, url: str = "") -> Outcome:
        """A record the reader could not turn into a page (non-HTML, request record, damage...)."""
        out = Outcome()
        out.counts[ledger_key(READ_STAGE, "in")] += 1
        out.counts[ledger_key(READ_STAGE, "drop|" + reason)] += 1
        out.reject = reject_row(READ_STAGE, reason, id=stable_hash(key), key=key, url=url, source=source)
        return out

    def process(self, raw: RawPage) -> Outcome:
        if not self._ready:
            self.setup()
        out = Outcome()
        c = out.counts
        c[ledger_key(READ_STAGE, "in")] += 1
        c[ledger_key(READ_STAGE, "out")] += 1
        c[ledger_key(EXTRACT_STAGE, "in")] += 1
        result = self.extractor.process(raw)
        if isinstance(result, str):
            c[ledger_key(EXTRACT_STAGE, "drop|" + result)] += 1
            out.reject = reject_row(EXTRACT_STAGE, result, id=stable_hash(raw.key), key=raw.key, url=raw.url,
                                    source=raw.source)
            return out
        c[ledger_key(EXTRACT_STAGE, "out")] += 1
        doc: Document = result
        c[hist_key(EXTRACT_STAGE, "chars", chars_bucket(len(doc.text)))] += 1  # length "before" the steps
        for stage, step in zip(self.stage_names, self.steps):
            if not step.applies_to(doc):
                continue
            c[ledger_key(stage, "in")] += 1
            try:
                result = step.apply(doc)
            except Exception as exc:  # a bug or a pathological page must not take the run down
                result = f"step-error:{type(exc).__name__}"
            if isinstance(result, str):
                c[ledger_key(stage, "drop|" + result)] += 1
                out.reject = reject_row(stage, result, id=doc.id, key=raw.key, url=doc.url, source=doc.source)
                return out
            doc = result
            c[ledger_key(stage, "out")] += 1
            for kind, n in (doc.meta.pop("pii", None) or {}).items():
                c[ledger_key(stage, "count|" + kind)] += n
        doc.id = stable_hash(doc.url, doc.title, doc.text)
        out.record = to_wudao_record(doc)
        out.record["_key"] = raw.key  # travels through the dedup stages for rejects/, never written
        return out


def _unique_names(names: list[str]) -> list[str]:
    seen: Counter = Counter()
    result = []
    for name in names:
        seen[name] += 1
        result.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    return result
