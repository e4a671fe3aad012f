"""The run's ledger: the one place that accounts for records: ledger keys, reject rows, Beam counters, live
progress, and `stats.json`.

Counts travel as plain dicts `{"<stage>|in": n, "<stage>|out": n, "<stage>|drop|<reason>": n,
"<stage>|created": n, "<stage>|count|<name>": n, "<stage>|hist|<name>|<bucket>": n}` built only by `key`, summed
with a CombineFn, so the stats are exact on any runner and need no runner metrics API. `created` is for stages that
make more records than they take (a dialogue session split into fragments): for every stage in + created = out +
dropped. `hist` counts (fixed buckets from `cleaners.histogram`: document lengths, languages, scores) stand apart
from that balance and go to a top-level `histograms`.

Stages never build keys or rows themselves (datatrove's `BaseFilter.run` is the model: filters never touch
accounting). A DoFn yields `passed(stage)` for a record that goes on, `from dropped(item, stage, reason)` for one
that does not, and `from outcome(result)` for a `cleaners.runner.Outcome`; `SumPerBundle` adds every count to
the Beam counter of the same name (`progress.counter`: every counter of every pipeline is there, in the one
namespace `wudao`, which is what remote runners show).
"""
from __future__ import annotations

import json
from collections import Counter
from typing import Any, Iterable, Iterator

import apache_beam as beam
from apache_beam import pvalue

from cleaners.histogram import ordered as ordered_buckets
from pipelines import progress

#: the tagged outputs every accounting DoFn has besides its main output
REJECTS, COUNTS = "rejects", "counts"


def key(stage: str, kind: str, name: str = "") -> str:
    """A ledger key: `kind` is in, out, created, drop, count or hist (`name`: reason, count name, `name|bucket`).
    A drop counts under its `ledger_reason`."""
    if kind == "drop":
        name = ledger_reason(name)
    return f"{stage}|{kind}|{name}" if name else f"{stage}|{kind}"


def ledger_reason(reason: str) -> str:
    """The reason as counted in stats.json: `minhash-duplicate-of:<id>` counts as `minhash-duplicate-of`
    (one entry, not one per kept record); the full reason stays in rejects/. Other reasons are unchanged."""
    head, sep, _ = reason.partition("-of:")
    return head + "-of" if sep else reason


def kept_counts(stage: str, n: int = 1) -> dict[str, int]:
    """`n` records in and out of `stage`."""
    return {key(stage, "in"): n, key(stage, "out"): n}


def dropped_counts(stage: str, reason: str) -> dict[str, int]:
    return {key(stage, "in"): 1, key(stage, "drop", reason): 1}


def events_to_counts(events: dict[tuple[str, str, str], int]) -> dict[str, int]:
    """`cleaners.runner` event counts `{(stage, kind, name): n}` as ledger counts."""
    return {key(*event): n for event, n in events.items()}


def reject_row(item: Any, stage: str, reason: str) -> dict[str, Any]:
    """The rejects/ row of a dropped item, the same shape for every pipeline and stage: a corpus record (dict), a
    session, post, pair or reader skip (attributes). `key` is the item's place in its input (`path#line`, ...)."""
    if isinstance(item, dict):
        fields = {"id": item.get("id", ""), "key": item.get("key") or item.get("_key", ""),
                  "url": item.get("url", ""), "source": item.get("source", "")}
    else:
        fields = {name: getattr(item, name, "") or "" for name in ("id", "key", "url", "source")}
    return {**{name: value if isinstance(value, str) else "" for name, value in fields.items()},
            "stage": stage, "reason": reason}


def live(counts: dict[str, int]) -> dict[str, int]:
    """`counts` unchanged, after adding its drops to the live progress line (`dropped`)."""
    dropped_now = sum(n for name, n in counts.items() if "|drop|" in name)
    if dropped_now:
        progress.count(dropped=dropped_now)
    return counts


def counted(counts: dict[str, int]) -> pvalue.TaggedOutput:
    """Counts built by this module (`kept_counts`, `dropped_counts`, `key`, ...) as the `counts` output."""
    return pvalue.TaggedOutput(COUNTS, live(counts))


def passed(stage: str, n: int = 1) -> pvalue.TaggedOutput:
    """The counts of `n` records that went through `stage`."""
    return pvalue.TaggedOutput(COUNTS, kept_counts(stage, n))


def dropped(item: Any, stage: str, reason: str, extra: dict[str, int] | None = None) -> Iterator[pvalue.TaggedOutput]:
    """A dropped item: its counts (plus `extra` counts of the same stage) and its reject row."""
    yield counted({**dropped_counts(stage, reason), **(extra or {})})
    yield pvalue.TaggedOutput(REJECTS, reject_row(item, stage, reason))


def outcome(result: Any, live_kept: bool = True) -> Iterator[Any]:
    """A `cleaners.runner.Outcome`: its counts, a reject row per drop (tagged) and its kept records (main).

    `live_kept`: the kept records count as `kept` on the live line (the pipeline's last per-record stage)."""
    if live_kept:
        progress.count(kept=len(result.kept))
    yield counted(events_to_counts(result.events))
    for item, stage, reason in result.drops:
        yield pvalue.TaggedOutput(REJECTS, reject_row(item, stage, reason))
    yield from result.kept


class SumCounts(beam.CombineFn):
    """Sum string-keyed count dicts."""

    def create_accumulator(self) -> Counter:
        return Counter()

    def add_input(self, acc: Counter, counts: dict[str, int]) -> Counter:
        acc.update(counts)
        return acc

    def merge_accumulators(self, accs: Iterable[Counter]) -> Counter:
        merged: Counter = Counter()
        for acc in accs:
            merged.update(acc)
        return merged

    def extract_output(self, acc: Counter) -> dict[str, int]:
        return dict(sorted(acc.items()))


class SumPerBundle(beam.DoFn):
    """Sum the count dicts of one bundle and emit them once, at the bundle's end.

    Placed right after the step that makes them, it runs in the same fused stage, so one dict per bundle instead
    of one per record crosses to the final CombineGlobally (the local runner would otherwise hold a dict per
    record and stage in memory until the last stage finishes). It also adds the bundle's counts to the Beam
    counters of the same names (namespace `wudao`)."""

    def start_bundle(self) -> None:
        self._sum: Counter = Counter()

    def process(self, counts: dict[str, int]):
        self._sum.update(counts)
        return ()

    def finish_bundle(self):
        from apache_beam.transforms.window import GlobalWindow
        from apache_beam.utils.timestamp import MIN_TIMESTAMP
        from apache_beam.utils.windowed_value import WindowedValue

        for name, n in self._sum.items():
            progress.counter(name).inc(n)
        if self._sum:
            yield WindowedValue(dict(self._sum), MIN_TIMESTAMP, [GlobalWindow()])
        self._sum = Counter()


def build_stats(counts: dict[str, int], stage_order: list[str], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Turn flat counts into stats.json: one entry per stage in pipeline order, then totals.

    Raises if any stage breaks in = out + dropped: a broken ledger means records were lost or invented.
    `histograms` is `{stage: {name: {bucket: n}}}`, stages in pipeline order, buckets in `histogram.ordered` order.
    """
    stages: dict[str, dict[str, Any]] = {}
    hists: dict[str, dict[str, dict[str, int]]] = {}
    for key, n in counts.items():
        stage, kind, *rest = key.split("|", 2)
        if kind == "hist":
            name, _, bucket = rest[0].partition("|")
            buckets = hists.setdefault(stage, {}).setdefault(name, {})
            buckets[bucket] = buckets.get(bucket, 0) + n
            continue
        entry = stages.setdefault(stage, {"in": 0, "out": 0, "dropped": 0, "dropped_by_reason": {}, "counts": {}})
        if kind == "created":
            entry["created"] = entry.get("created", 0) + n
        elif kind in ("in", "out"):
            entry[kind] += n
        elif kind == "drop":
            entry["dropped"] += n
            entry["dropped_by_reason"][rest[0]] = entry["dropped_by_reason"].get(rest[0], 0) + n
        elif kind == "count":
            entry["counts"][rest[0]] = entry["counts"].get(rest[0], 0) + n
    ordered = [s for s in stage_order if s in stages] + sorted(s for s in stages if s not in stage_order)
    stage_list = []
    for name in ordered:
        entry = stages[name]
        if entry["in"] + entry.get("created", 0) != entry["out"] + entry["dropped"]:
            raise AssertionError(f"ledger broken at stage {name}: {entry}")
        entry["dropped_by_reason"] = dict(sorted(entry["dropped_by_reason"].items(), key=lambda kv: (-kv[1], kv[0])))
        if not entry["counts"]:
            del entry["counts"]
        stage_list.append({"stage": name, **entry})
    records_in = stages.get(stage_order[0], {}).get("in", 0) if stage_order else 0
    dropped = sum(s["dropped"] for s in stage_list)
    created = sum(s.get("created", 0) for s in stage_list)
    kept = counts.get("write|out", 0)
    totals = {"records_in": records_in, "kept": kept, "dropped": dropped}
    if created:
        totals["created"] = created
    if records_in + created != kept + dropped:
        raise AssertionError(f"ledger broken overall: {totals}")
    hist_order = [s for s in stage_order if s in hists] + sorted(s for s in hists if s not in stage_order)
    histograms = {s: {name: ordered_buckets(hists[s][name]) for name in sorted(hists[s])} for s in hist_order}
    stats = {"totals": totals, "stages": stage_list, "histograms": histograms}
    if extra:
        stats.update(extra)
    return stats


def dumps(stats: dict[str, Any]) -> str:
    return json.dumps(stats, ensure_ascii=False, indent=2) + "\n"
