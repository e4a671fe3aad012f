"""`wudao dedup`: the dedup stages on an existing corpus of JSONL(.gz) or Parquet records.

Records keep every field they came with; the text may be in `content` (WuDao schema) or `text`, and is
written back under the same name. A record without `id` gets a stable one from its file and line; one
without `lang` gets `zh` when at least a third of its letters are Han characters, else `en` (the choice
only picks the shingling: character n-grams or word n-grams).
"""
from __future__ import annotations

import io
import math
from typing import Any, BinaryIO, Iterable

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from cleaners.document import encodable, stable_hash
from cleaners.language import guess_zh_or_en
from pipelines import progress
from pipelines.inputs import MatchInputs
from pipelines.readers import jsonrecords
from pipelines.readers.bytesource import GZIP_MAGIC, ByteSource
from pipelines.readers.skip import Skip
from pipelines import ledger

READ_STAGE = "read"
MAX_RECORD_BYTES = 20_000_000     # per JSON line, as the web-text readers; longer lines drop as `too-large`

def prepare(record: Any, key: str) -> dict[str, Any] | str:
    """A corpus record ready for the dedup stages, or the reason it cannot be one.

    The stages read `id`, `content`/`text`, `lang`, `url`, `title`, `date` and `scores.quality`: a `lang` that
    is not a string is replaced by the guess, like a missing one; any other of these fields with a type the
    stages cannot use drops the record as `bad-field:<name>`."""
    if not isinstance(record, dict):
        return "not-an-object"
    field = ("content" if isinstance(record.get("content"), str)
             else "text" if isinstance(record.get("text"), str) else None)
    if field is None:
        return "no-text"
    for name in ("url", "title", "date"):
        if record.get(name) is not None and not isinstance(record[name], str):
            return f"bad-field:{name}"
    scores = record.get("scores")
    if scores is not None and (not isinstance(scores, dict) or not _is_number(scores.get("quality", 0.0))):
        return "bad-field:scores"
    out = dict(record)
    if field == "text":
        out["content"] = out.pop("text")
        out["_text_field"] = "text"
    given_id = out.get("id")
    out["id"] = str(given_id) if isinstance(given_id, (str, int)) and given_id != "" else stable_hash(key)
    lang = out.get("lang")
    out["lang"] = lang if isinstance(lang, str) and lang else guess_zh_or_en(out["content"])
    out["_key"] = key
    return out


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def restore(record: dict[str, Any]) -> dict[str, Any]:
    """Undo `prepare`'s renaming for output."""
    out = dict(record)
    if out.pop("_text_field", None) == "text":
        out["text"] = out.pop("content")
    out.pop("_key", None)
    return out


class ReadCorpus(beam.DoFn):
    """Stream the records of one JSONL(.gz) or Parquet file; bad lines are counted drops of stage `read`."""

    def __init__(self, max_record_bytes: int = MAX_RECORD_BYTES) -> None:
        self.max_record_bytes = max_record_bytes

    def process(self, metadata: fileio.FileMetadata) -> Iterable[Any]:
        path = encodable(metadata.path)      # the name records carry; the file opens by its real name
        try:
            raw = FileSystems.open(metadata.path, compression_type=CompressionTypes.UNCOMPRESSED)
        except Exception as exc:  # permissions, a broken link, a vanished file, remote errors
            progress.count(files_read=1, records_read=1)
            yield from self._drop(f"{path}#open", path, f"unreadable-file:{type(exc).__name__}")
            return
        try:
            for key, record in self._records(raw, path):
                if not (isinstance(record, Skip) and record.is_damage):    # damage is not a record read
                    progress.count(records_read=1)
                prepared = record.reason if isinstance(record, Skip) else prepare(record, key)
                if isinstance(prepared, str):
                    yield from self._drop(key, path, prepared)
                else:
                    yield ledger.passed(READ_STAGE)
                    yield prepared
        except Exception as exc:  # I/O errors or a reader bug: what was read stays, the damage is counted
            yield from self._drop(path, path, f"damaged:{type(exc).__name__}")
        finally:
            raw.close()
            progress.count(files_read=1, bytes_read=metadata.size_in_bytes)

    @staticmethod
    def _drop(key: str, path: str, reason: str) -> Iterable[Any]:
        yield from ledger.dropped({"id": stable_hash(key), "key": key, "source": path}, READ_STAGE, reason)

    def finish_bundle(self) -> None:
        progress.flush()

    def _records(self, raw: BinaryIO, path: str) -> Iterable[tuple[str, Any]]:
        """(key, record) per record; the record is a `Skip` for a bad line (too long, not JSON) or damage."""
        head = raw.read(4)
        if head == b"PAR1":
            import pyarrow.parquet as pq

            raw.seek(0)
            data = io.BytesIO(raw.read()) if not raw.seekable() else raw
            position = 0
            for batch in pq.ParquetFile(data).iter_batches(batch_size=1024):
                for row in batch.to_pylist():
                    yield f"{path}#{position}", row
                    position += 1
            return
        src = ByteSource(raw, gzipped=head.startswith(GZIP_MAGIC), prefix=head)
        yield from jsonrecords.iter_json_lines(src, path, self.max_record_bytes)


def build_dedup_pipeline(pipeline: beam.Pipeline, inputs: list[str], output: str, config: dict[str, Any]) -> None:
    from pipelines.dedup.stages import apply_dedup, stage_names
    from pipelines.sinks import write_outputs

    read = (pipeline
            | "Inputs" >> beam.Create(inputs)
            | "Match" >> MatchInputs()
            | "SpreadFiles" >> beam.Reshuffle()
            | "Read" >> beam.ParDo(ReadCorpus()).with_outputs(ledger.REJECTS, ledger.COUNTS, main="records"))
    records = read.records | "SpreadRecords" >> beam.Reshuffle()
    kept, rejects, counts = apply_dedup(records, config)
    kept = kept | "Restore" >> beam.Map(restore)
    write_outputs(kept, [read[ledger.REJECTS], *rejects], [read[ledger.COUNTS], *counts], output, config,
                  [READ_STAGE, *stage_names(config)], {"inputs": inputs, "output": output})
