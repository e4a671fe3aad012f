"""The run's ledger: per-stage counts of records in, out and dropped by reason, and `stats.json`.

Counts travel as plain dicts `{"<stage>|in": n, "<stage>|out": n, "<stage>|drop|<reason>": n,
"<stage>|created": n, "<stage>|count|<name>": n, "<stage>|hist|<name>|<bucket>": n}` (see
`cleaners.runner.ledger_key`), summed with a CombineFn, so the stats are exact on any runner and need no runner
metrics API. `created` is for stages that make more records than they take (a dialogue session split into
fragments): for every stage in + created = out + dropped. `hist` counts (fixed buckets from `cleaners.histogram`:
document lengths, languages, scores) stand apart from that balance and go to a top-level `histograms`.
"""
from __future__ import annotations

import json
from collections import Counter
from typing import Any, Iterable

import apache_beam as beam

from cleaners.histogram import ordered as ordered_buckets


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
    record and stage in memory until the last stage finishes)."""

    def start_bundle(self) -> None:
        self._sum: Counter = Counter()

    def process(self, counts: dict[str, int]):
        self._sum.update(counts)
        return ()

    def finish_bundle(self):
        from apache_beam.transforms.window import GlobalWindow
        from apache_beam.utils.timestamp import MIN_TIMESTAMP
        from apache_beam.utils.windowed_value import WindowedValue

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
