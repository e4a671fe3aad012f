"""What every dedup stage shares: its output shape and the rank that chooses the record to keep.

A stage is a PTransform from a PCollection of corpus records (dicts in the WuDao schema: `id`, `content`,
`title`, `url`, `date`, `lang`, `scores`, ...) to a `StageOutput`. For every record it sees, a stage emits
exactly one count dict (`ledger.passed`, or `ledger.dropped` with the record's reject row) so that stats.json
keeps in = out + dropped.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import apache_beam as beam


class StageOutput(NamedTuple):
    kept: beam.PCollection        # records that go on
    rejects: beam.PCollection     # reject rows (`pipelines.ledger.reject_row`)
    counts: beam.PCollection      # ledger count dicts, one per input record


def quality_rank(record: dict[str, Any]) -> tuple[float, str]:
    """Sort key for choosing the record to keep among duplicates: highest quality score, then smallest id."""
    scores = record.get("scores") or {}
    return (-float(scores.get("quality", 0.0)), str(record.get("id", "")))
