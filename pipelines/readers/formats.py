"""`iter_file`: sniff an input file's format and stream its records as `RawPage` / `Skip` items.

Sniffing looks at the first bytes (gzip magic, then on the decoded bytes `WARC/1.`, ARC `filedesc://`,
Parquet `PAR1`, `{` / `[` JSON, `<` HTML) and falls back to the file name's extension.
"""
from __future__ import annotations

import re
from typing import BinaryIO, Iterator

from cleaners.document import RawPage
from pipelines.readers.arc import iter_arc
from pipelines.readers.bytesource import GZIP_MAGIC, ByteSource
from pipelines.readers.http import sniff_html
from pipelines.readers.parquet import iter_parquet
from pipelines.readers.skip import Skip
from pipelines.readers.textfiles import ARRAY_START, iter_html_file, iter_json_array, iter_json_lines
from pipelines.readers.warc import iter_warc

PARQUET_MAGIC = b"PAR1"
SNIFF_BYTES = 4096
_EXTENSIONS = (
    ("warc", (".warc", ".wet", ".wat")),
    ("arc", (".arc",)),
    ("jsonl", (".jsonl", ".ndjson", ".json")),
    ("html", (".html", ".htm", ".xhtml")),
    ("parquet", (".parquet",)),
)
_COMPRESSION_SUFFIX = re.compile(r"\.(?:gz|gzip)$", re.IGNORECASE)
_BOM_AND_SPACE = b"\xef\xbb\xbf \t\r\n"


def detect_format(decoded_head: bytes, path: str) -> str | None:
    """'warc', 'arc', 'json-array', 'jsonl', 'html' or None, from the first decoded bytes and the name."""
    head = decoded_head.lstrip(_BOM_AND_SPACE)
    if head.startswith(b"WARC/"):
        return "warc"
    if head.startswith(b"filedesc://"):
        return "arc"
    if ARRAY_START.match(head):
        return "json-array"
    if head.startswith(b"{"):
        return "jsonl"
    if sniff_html(head) or head[:1] == b"<" and _by_extension(path) == "html":
        return "html"
    by_name = _by_extension(path)
    return by_name if by_name not in (None, "parquet") else None


def _by_extension(path: str) -> str | None:
    name = _COMPRESSION_SUFFIX.sub("", path.lower())
    for fmt, suffixes in _EXTENSIONS:
        if name.endswith(suffixes):
            return fmt
    return None


def _read_head(stream: BinaryIO, n: int) -> bytes:
    """Up to `n` bytes (fewer only at the end): raw streams may return short reads."""
    parts, have = [], 0
    while have < n:
        chunk = stream.read(n - have)
        if not chunk:
            break
        parts.append(chunk)
        have += len(chunk)
    return b"".join(parts)


def iter_file(stream: BinaryIO, path: str, *, max_record_bytes: int = 20_000_000) -> Iterator[RawPage | Skip]:
    """Every record of one input file: one `RawPage` or `Skip` per record, plus `damaged:*` Skips for damage.

    Streams: memory is bounded by one record (at most `max_record_bytes`) plus read buffers, except Parquet,
    which pyarrow reads a row group at a time. Bad data never raises; I/O errors of `stream` do.
    """
    head = _read_head(stream, SNIFF_BYTES)
    if head.startswith(PARQUET_MAGIC):
        yield from iter_parquet(stream, path, head, max_record_bytes)
        return
    src = ByteSource(stream, gzipped=head.startswith(GZIP_MAGIC), prefix=head)
    fmt = detect_format(src.peek(SNIFF_BYTES), path)
    if fmt is None:
        if src.at_eof():
            if src.damage:
                yield Skip(f"{path}#0", path, src.damage[0], detail=src.damage[1])
            return
        yield Skip(f"{path}#0", path, "unknown-format", detail=repr(src.peek(16)))
        return
    reader = {"warc": iter_warc, "arc": iter_arc, "json-array": iter_json_array,
              "jsonl": iter_json_lines, "html": iter_html_file}[fmt]
    try:
        yield from reader(src, path, max_record_bytes)
    except (OSError, MemoryError):
        raise
    except Exception as exc:  # noqa: BLE001 - a reader bug on strange bytes must not stop the run
        yield Skip(f"{path}#{src.position_key()}", path, "damaged:reader-error", detail=f"{type(exc).__name__}: {exc}")
