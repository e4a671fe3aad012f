"""What every dedup stage shares: its output shape and the ledger/reject rows it emits.

A stage is a PTransform from a PCollection of corpus records (dicts in the WuDao schema: `id`, `content`,
`title`, `url`, `date`, `lang`, `scores`, ...) to a `StageOutput`. For every record it sees, a stage emits
exactly one count dict (`{"<stage>|in": 1, "<stage>|out": 1}` or `{"<stage>|in": 1, "<stage>|drop|<reason>": 1}`,
see `ledger_reason`) so that stats.json keeps in = out + dropped, and one reject row per dropped record.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import apache_beam as beam

from cleaners.document import reject_row as cleaner_reject_row


class StageOutput(NamedTuple):
    kept: beam.PCollection        # records that go on
    rejects: beam.PCollection     # reject rows (see `reject_row`)
    counts: beam.PCollection      # ledger count dicts, one per input record


def reject_row(record: dict[str, Any], stage: str, reason: str) -> dict[str, Any]:
    """The rejects/ row for a dropped corpus record (same fields as the per-record stages write)."""
    return cleaner_reject_row(stage, reason, id=record.get("id", ""), key=record.get("key") or record.get("_key", ""),
                              url=record.get("url", ""), source=record.get("source", ""))


def kept_count(stage: str) -> dict[str, int]:
    return {f"{stage}|in": 1, f"{stage}|out": 1}


def ledger_reason(reason: str) -> str:
    """The reason as counted in stats.json: `minhash-duplicate-of:<id>` counts as `minhash-duplicate-of`
    (one entry, not one per kept record); the full reason stays in rejects/. Other reasons are unchanged."""
    head, sep, _ = reason.partition("-of:")
    return head + "-of" if sep else reason


def dropped_count(stage: str, reason: str) -> dict[str, int]:
    return {f"{stage}|in": 1, f"{stage}|drop|{ledger_reason(reason)}": 1}


def quality_rank(record: dict[str, Any]) -> tuple[float, str]:
    """Sort key for choosing the record to keep among duplicates: highest quality score, then smallest id."""
    scores = record.get("scores") or {}
    return (-float(scores.get("quality", 0.0)), str(record.get("id", "")))
