"""Parquet text corpora -> `RawPage` / `Skip`, streamed batch by batch with pyarrow.

Columns: `content` or `text` (required; `content` wins, as in the WuDaoCorpora schema; a string, or a list of
strings joined by newlines, else the row drops as `bad-text-type`), optional `url`, `title`, `id`, `date`.
Parquet needs random access (the footer is at the end), so a non-seekable stream is first spooled to a
temporary file. Keys are `path#<row index>`.
"""
from __future__ import annotations

import shutil
import tempfile
from typing import BinaryIO, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from cleaners.document import RawPage
from pipelines.readers.skip import Skip

TEXT_COLUMNS = ("content", "text")
OPTIONAL_COLUMNS = ("url", "title", "id", "date")
BATCH_ROWS = 1024


def iter_parquet(stream: BinaryIO, path: str, prefix: bytes, max_record_bytes: int) -> Iterator[RawPage | Skip]:
    """Rows of a Parquet file. `prefix` holds bytes already read from `stream` by format sniffing."""
    seekable = _is_seekable(stream)
    if seekable:
        stream.seek(0)
        yield from _iter_rows(stream, path, max_record_bytes)
        return
    with tempfile.TemporaryFile(prefix="wudao-parquet-") as spool:
        spool.write(prefix)
        shutil.copyfileobj(stream, spool, 1 << 20)
        spool.seek(0)
        yield from _iter_rows(spool, path, max_record_bytes)


def _is_seekable(stream: BinaryIO) -> bool:
    try:
        return bool(stream.seekable())
    except (AttributeError, OSError, ValueError):
        return False


def _iter_rows(handle: BinaryIO, path: str, max_record_bytes: int) -> Iterator[RawPage | Skip]:
    row = 0
    try:
        pf = pq.ParquetFile(handle)
        names = set(pf.schema_arrow.names)
        text_col = next((c for c in TEXT_COLUMNS if c in names), None)
        if text_col is None:
            yield Skip(f"{path}#0", path, "damaged:no-text-column", detail=f"columns: {sorted(names)}")
            return
        columns = [text_col] + [c for c in OPTIONAL_COLUMNS if c in names]
        for batch in pf.iter_batches(batch_size=BATCH_ROWS, columns=columns):
            values = {name: batch.column(name).to_pylist() for name in columns}
            for i in range(batch.num_rows):
                yield _row_to_page({name: col[i] for name, col in values.items()}, text_col,
                                   f"{path}#{row}", path, max_record_bytes)
                row += 1
    except (pa.ArrowException, OSError, ValueError) as exc:
        yield Skip(f"{path}#{row}", path, "damaged:bad-parquet", detail=str(exc)[:200])


def _as_str(value: object) -> str:
    """A scalar cell as text ('' for null, lists and structs, which no optional column should hold)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return "" if value is None or isinstance(value, (list, dict)) else str(value)


def _as_text(value: object) -> str | None:
    """The text cell: a string, UTF-8 bytes, or a list of strings (paragraphs, joined by newlines); None for
    any other type (numbers, structs, lists of other things)."""
    if value is None or isinstance(value, (str, bytes)):
        return _as_str(value)
    if isinstance(value, list) and all(isinstance(item, (str, type(None))) for item in value):
        return "\n".join(item for item in value if item)
    return None


def _row_to_page(row: dict, text_col: str, key: str, path: str, max_record_bytes: int) -> RawPage | Skip:
    url = _as_str(row.get("url"))
    text = _as_text(row[text_col])
    if text is None:
        return Skip(key, path, "bad-text-type", url, f"column {text_col!r} holds a {type(row[text_col]).__name__}")
    if not text.strip():
        return Skip(key, path, "no-text", url)
    if len(text) > max_record_bytes:
        return Skip(key, path, "too-large", url, f"{len(text)} characters")
    meta = {name: row[name] for name in ("id", "dataType") if row.get(name) not in (None, "")}
    return RawPage(key=key, source=path, url=url, date=_as_str(row.get("date")), text=text,
                   title=_as_str(row.get("title")), content_type="text/plain", meta=meta)
