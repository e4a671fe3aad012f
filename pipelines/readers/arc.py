"""ARC records (Internet Archive / Heritrix ARC v1 and v2, plain or gzip) -> `RawPage` / `Skip`, streaming.

An ARC record (Internet Archive "ARC file format", 1996; as Heritrix writes it) is one header line
`URL IP-address Archive-date Content-type [v2: Result-code Checksum Location Offset Filename] Archive-length`,
then `Archive-length` bytes (for http: the response status line, headers and body), then a LF.
The first record (`filedesc://...`) describes the file and is skipped as `arcinfo`.
Damage is handled like the WARC reader: a bad header line resyncs to the next line that looks like an ARC
header (`damaged:bad-header`), a cut record is `damaged:truncated` and ends the file.
"""
from __future__ import annotations

import re
from typing import Iterator

from cleaners.document import RawPage
from pipelines.readers.bytesource import ByteSource
from pipelines.readers.http import Origin, payload_page, parse_content_type, response_page
from pipelines.readers.skip import Skip

MAX_HEADER_LINE = 1 << 14
SEPARATORS = re.compile(rb"[\r\n]*")
# scheme:rest  ip  14-digit date  ...  length
_HEADER = re.compile(rb"([A-Za-z][A-Za-z0-9+.-]*:\S*) (\S+) (\d{8,14}) (\S*)(?: \S+){0,5} (\d+)\r?\n\Z")
_NEXT_HEADER = re.compile(rb"\n[A-Za-z][A-Za-z0-9+.-]*:\S* \S+ \d{14} \S*(?: \S+){0,5} \d+\r?\n")


def _iso_date(stamp: bytes) -> str:
    s = stamp.decode("ascii")
    if len(s) != 14:
        return s
    return f"{s[0:4]}-{s[4:6]}-{s[6:8]}T{s[8:10]}:{s[10:12]}:{s[12:14]}Z"


def iter_arc(src: ByteSource, path: str, max_record_bytes: int) -> Iterator[RawPage | Skip]:
    """Every record of an ARC stream, one item each, plus `damaged:*` Skips where the file is damaged."""
    while True:
        src.skip_bytes(SEPARATORS)
        if src.at_eof():
            if src.damage:
                yield Skip(f"{path}#{src.position_key()}", path, src.damage[0], detail=src.damage[1])
            return
        key = f"{path}#{src.position_key()}"
        line = src.readline(MAX_HEADER_LINE)
        m = _HEADER.match(line)
        if not m:
            if not line.endswith(b"\n") and len(line) < MAX_HEADER_LINE:
                yield Skip(key, path, src.damage[0] if src.damage else "damaged:truncated",
                           detail="file ends inside a record header")
                return
            skipped = _resync(src, max_record_bytes)
            yield Skip(key, path, "damaged:bad-header", detail=f"{line[:60]!r}; skipped {skipped} bytes")
            continue
        url = m.group(1).decode("utf-8", "replace")
        length = int(m.group(5))
        origin = Origin(key, path, url, _iso_date(m.group(3)))
        if length > max_record_bytes:
            dropped = src.drop(length)
            if dropped < length:
                yield Skip(key, path, src.damage[0] if src.damage else "damaged:truncated", url,
                           f"record of {length} bytes cut at {dropped}")
                return
            yield Skip(key, path, "too-large", url, f"{length} bytes")
            continue
        body = src.take(length)
        if len(body) < length:
            yield Skip(key, path, src.damage[0] if src.damage else "damaged:truncated", url,
                       f"record of {length} bytes cut at {len(body)}")
            return
        yield _classify(body, url, m.group(4).decode("latin-1"), origin, max_record_bytes)


def _classify(body: bytes, url: str, arc_type: str, origin: Origin, max_bytes: int) -> RawPage | Skip:
    if url.startswith("filedesc:"):
        return Skip(origin.key, origin.source, "arcinfo", url)
    if body.startswith(b"HTTP/"):
        return response_page(body, origin, max_bytes)
    media, charset = parse_content_type(arc_type if arc_type not in ("-", "no-type", "unk") else "")
    return payload_page(body, media, charset, origin)


def _resync(src: ByteSource, limit: int) -> int:
    """Skip to the next line that looks like an ARC header (or the end of the stream); bytes skipped."""
    skipped = 0
    while True:
        found = src.search(_NEXT_HEADER, limit)
        if found >= 0:
            return skipped + src.drop(found + 1)
        dropped = src.drop(max(limit - 256, 1))
        skipped += dropped
        if not dropped or src.at_eof():
            return skipped
