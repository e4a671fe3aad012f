"""`wudao dedup`: the dedup stages on an existing corpus of JSONL(.gz) or Parquet records.

Records keep every field they came with; the text may be in `content` (WuDao schema) or `text`, and is
written back under the same name. A record without `id` gets a stable one from its file and line; one
without `lang` gets `zh` when at least a third of its letters are Han characters, else `en` (the choice
only picks the shingling: character n-grams or word n-grams).
"""
from __future__ import annotations

import gzip
import io
import json
from typing import Any, Iterable

import apache_beam as beam
from apache_beam import pvalue
from apache_beam.io import fileio
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from cleaners.document import stable_hash
from cleaners.language import guess_zh_or_en
from pipelines import progress
from pipelines.dedup.common import dropped_count, kept_count, reject_row

READ_STAGE = "read"
REJECTS, COUNTS = "rejects", "counts"
def prepare(record: Any, path: str, position: int) -> dict[str, Any] | str:
    """A corpus record ready for the dedup stages, or the reason it cannot be one."""
    if not isinstance(record, dict):
        return "not-an-object"
    field = "content" if isinstance(record.get("content"), str) else "text" if isinstance(record.get("text"), str) else None
    if field is None:
        return "no-text"
    out = dict(record)
    if field == "text":
        out["content"] = out.pop("text")
        out["_text_field"] = "text"
    out["id"] = str(out.get("id") or stable_hash(f"{path}#{position}"))
    out["lang"] = out.get("lang") or guess_zh_or_en(out["content"])
    out["_key"] = f"{path}#{position}"
    return out


def restore(record: dict[str, Any]) -> dict[str, Any]:
    """Undo `prepare`'s renaming for output."""
    out = dict(record)
    if out.pop("_text_field", None) == "text":
        out["text"] = out.pop("content")
    out.pop("_key", None)
    return out


class ReadCorpus(beam.DoFn):
    """Stream the records of one JSONL(.gz) or Parquet file; bad lines are counted drops of stage `read`."""

    def process(self, metadata: fileio.FileMetadata) -> Iterable[Any]:
        path = metadata.path
        try:
            for position, record in self._records(path):
                progress.count(records_read=1)
                prepared = prepare(record, path, position) if record is not None else "bad-json"
                if isinstance(prepared, str):
                    row = reject_row({"id": stable_hash(f"{path}#{position}"), "key": f"{path}#{position}",
                                      "source": path}, READ_STAGE, prepared)
                    yield pvalue.TaggedOutput(COUNTS, dropped_count(READ_STAGE, prepared))
                    yield pvalue.TaggedOutput(REJECTS, row)
                else:
                    yield pvalue.TaggedOutput(COUNTS, kept_count(READ_STAGE))
                    yield prepared
        except Exception as exc:  # unreadable or truncated file: what was read stays, the damage is counted
            reason = f"damaged:{type(exc).__name__}"
            yield pvalue.TaggedOutput(COUNTS, dropped_count(READ_STAGE, reason))
            yield pvalue.TaggedOutput(REJECTS, reject_row({"key": path, "source": path}, READ_STAGE, reason))
        finally:
            progress.count(files_read=1, bytes_read=metadata.size_in_bytes)

    def finish_bundle(self) -> None:
        progress.flush()

    @staticmethod
    def _records(path: str):
        raw = FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
        with raw:
            head = raw.read(4)
            raw.seek(0)
            if head == b"PAR1":
                import pyarrow.parquet as pq

                data = io.BytesIO(raw.read()) if not raw.seekable() else raw
                position = 0
                for batch in pq.ParquetFile(data).iter_batches(batch_size=1024):
                    for row in batch.to_pylist():
                        yield position, row
                        position += 1
                return
            stream = gzip.GzipFile(fileobj=raw) if head[:2] == b"\x1f\x8b" else raw
            for line_no, line in enumerate(io.TextIOWrapper(stream, encoding="utf-8", errors="replace"), 1):
                if not line.strip():
                    continue
                try:
                    yield line_no, json.loads(line)
                except json.JSONDecodeError:
                    yield line_no, None


def build_dedup_pipeline(pipeline: beam.Pipeline, inputs: list[str], output: str, config: dict[str, Any]) -> None:
    from pipelines.dedup.stages import apply_dedup, stage_names
    from pipelines.text import write_outputs

    read = (pipeline
            | "Inputs" >> beam.Create(inputs)
            | "Match" >> fileio.MatchAll(fileio.EmptyMatchTreatment.DISALLOW)
            | "SpreadFiles" >> beam.Reshuffle()
            | "Read" >> beam.ParDo(ReadCorpus()).with_outputs(REJECTS, COUNTS, main="records"))
    records = read.records | "SpreadRecords" >> beam.Reshuffle()
    kept, rejects, counts = apply_dedup(records, config)
    kept = kept | "Restore" >> beam.Map(restore)
    write_outputs(kept, [read[REJECTS], *rejects], [read[COUNTS], *counts], output, config,
                  [READ_STAGE, *stage_names(config)], {"inputs": inputs, "output": output})
