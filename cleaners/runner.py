"""Run a recipe's steps on one record, without Beam: one runner for every record kind.

`StepRunner` runs configured steps (`cleaners.step`) in order on one record: the fused per-record chain that the
Beam layer runs inside one DoFn and that tests and benchmarks run directly. A step that raises is a counted drop
(`step-error:<exception>`), never a failed run. What happened comes back as an `Outcome`: the records kept, the
records dropped with their stage and reason, and event counts `{(stage, kind, name): n}` with kind `in`, `out`,
`created`, `drop` (name: the reason), `count` or `hist` (name: `<histogram>|<bucket>`), so that every stage
can account for its records: in + created = out + dropped. `pipelines.ledger` turns events into ledger keys and
reject rows; nothing here knows their format.

`RecipeRunner` is the web-text recipe: the `read` and `extract` stages, then the recipe's steps, then the WuDao
record.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Sequence

from cleaners.document import RawPage, stable_hash, to_wudao_record
from cleaners.histogram import chars_bucket
from cleaners.recipe import build_steps
from cleaners.step import Counted, Step

READ_STAGE = "read"
EXTRACT_STAGE = "extract"


@dataclass
class Outcome:
    """What became of one input record: the records kept, the drops `(record, stage, reason)`, event counts."""

    kept: list[Any] = field(default_factory=list)
    drops: list[tuple[Any, str, str]] = field(default_factory=list)
    events: Counter = field(default_factory=Counter)

    def passed(self, stage: str, n: int = 1) -> None:
        """`n` records went through `stage` unchanged in number (a stage outside the steps, e.g. `read`)."""
        self.events[(stage, "in", "")] += n
        self.events[(stage, "out", "")] += n

    def drop(self, record: Any, stage: str, reason: str) -> None:
        self.events[(stage, "in", "")] += 1
        self.events[(stage, "drop", reason)] += 1
        self.drops.append((record, stage, reason))

    def hist(self, stage: str, name: str, bucket: str) -> None:
        self.events[(stage, "hist", f"{name}|{bucket}")] += 1


def unique_names(names: Sequence[str]) -> list[str]:
    """Stage names made unique in order: a second `gopher_repetition` becomes `gopher_repetition#2`."""
    seen: Counter = Counter()
    result = []
    for name in names:
        seen[name] += 1
        result.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    return result


class StepRunner:
    """Configured steps run in order on one record (see the module docstring)."""

    def __init__(self, steps: Sequence[Step]):
        self.steps = list(steps)
        self.stage_names = unique_names([s.stage_name or s.name for s in self.steps])
        self._ready = False

    def setup(self) -> None:
        for step in self.steps:
            step.setup()
        self._ready = True

    def teardown(self) -> None:
        for step in self.steps:
            teardown = getattr(step, "teardown", None)
            if teardown:
                teardown()

    def run(self, record: Any, outcome: Outcome | None = None) -> Outcome:
        """Run every step on `record` (and on every record a step splits it into); results go into `outcome`."""
        if not self._ready:
            self.setup()
        out = outcome if outcome is not None else Outcome()
        work = [record]
        for stage, step in zip(self.stage_names, self.steps):
            after: list[Any] = []
            for item in work:
                if not step.applies_to(item):
                    after.append(item)
                    continue
                after.extend(self._apply(step, stage, item, out))
            work = after
        out.kept.extend(work)
        return out

    @staticmethod
    def _apply(step: Step, stage: str, item: Any, out: Outcome) -> list[Any]:
        try:
            result = step.apply(item)
        except Exception as exc:  # a bug or a pathological record must not take the run down
            result = f"step-error:{type(exc).__name__}"
        if isinstance(result, Counted):
            for name, n in result.counts.items():
                if n:
                    out.events[(stage, "count", name)] += n
            for name, bucket in result.hists.items():
                out.hist(stage, name, bucket)
            result = result.result
        if isinstance(result, str):
            out.drop(item, stage, result)
            return []
        records = result if isinstance(result, list) else [result]
        if not records:                # a step bug (a split that kept nothing, without a reason): a counted drop
            out.drop(item, stage, "step-error:no-output")
            return []
        out.events[(stage, "in", "")] += 1
        out.events[(stage, "out", "")] += len(records)
        if len(records) > 1:
            out.events[(stage, "created", "")] += len(records) - 1
        return records


class ExtractStep(Step):
    """`RawPage` -> `Document` through the recipe's `extract` section (`cleaners.extract.PageExtractor`)."""

    name = EXTRACT_STAGE

    def __init__(self, **params: Any):
        from cleaners.extract import PageExtractor

        self.extractor = PageExtractor(**params)

    def setup(self) -> None:
        self.extractor.setup()

    def teardown(self) -> None:
        teardown = getattr(self.extractor, "teardown", None)
        if teardown:
            teardown()

    def apply(self, raw: RawPage) -> Counted:
        """The document, or the reason; the `chars` histogram of the extracted text ("before" the steps) and the
        extraction path it took (`path:precision`, `path:precision:confident`, `path:discussion`, `path:recall`,
        `path:thread:<engine>`; see ExtractResult)."""
        doc, path = self.extractor.process_with_path(raw)
        if isinstance(doc, str):
            return Counted(doc)
        return Counted(doc, counts={f"path:{path}": 1} if path else {},
                       hists={"chars": chars_bucket(len(doc.text))})


class RecipeRunner:
    """The fused web-text recipe: `read`, `extract` (the recipe's `extract` section), then its `steps`."""

    def __init__(self, config: dict[str, Any]):
        self.config = config
        self.steps = StepRunner([ExtractStep(**(config.get("extract") or {})), *build_steps(config)])

    def setup(self) -> None:
        self.steps.setup()

    def teardown(self) -> None:
        self.steps.teardown()

    def stages(self) -> list[str]:
        """Stage names in order, as they appear in stats.json."""
        return [READ_STAGE, *self.steps.stage_names]

    def skip(self, key: str, source: str, reason: str, url: str = "") -> Outcome:
        """A record the reader could not turn into a page (non-HTML, request record, damage...)."""
        out = Outcome()
        out.drop({"id": stable_hash(key), "key": key, "url": url, "source": source}, READ_STAGE, reason)
        return out

    def process(self, raw: RawPage) -> Outcome:
        out = Outcome()
        out.passed(READ_STAGE)
        self.steps.run(raw, out)
        kept, out.kept = out.kept, []
        for doc in kept:
            doc.id = stable_hash(doc.url, doc.title, doc.text)
            record = to_wudao_record(doc)
            record["_key"] = raw.key  # travels through the dedup stages for rejects/, never written
            out.kept.append(record)
        return out
