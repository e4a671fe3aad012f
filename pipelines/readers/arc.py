"""ARC records (Internet Archive / Heritrix ARC v1 and v2, plain or gzip) -> `RawPage` / `Skip`, streaming.

An ARC record (Internet Archive "ARC file format", 1996; as Heritrix writes it) is one header line
`URL IP-address Archive-date Content-type [v2: Result-code Checksum Location Offset Filename] Archive-length`,
then `Archive-length` bytes (for http: the response status line, headers and body), then a LF.
The first record (`filedesc://...`) describes the file and is skipped as `arcinfo`.
Damage is handled like the WARC reader: a bad header line resyncs to the next line that looks like an ARC
header (`damaged:bad-header`), a cut record is `damaged:truncated` and ends the file. A length that runs past the
next header line (the bytes at its end are not a header line, and a header line starts inside the body), or past
the end of the file, is cut there (`damaged:bad-length`), also for records over the cap; after a corrupt gzip member
reading goes on at the next member that decodes.
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
_HEADER_START = re.compile(rb"[A-Za-z][A-Za-z0-9+.-]*:\S* \S+ \d{8,14} ")
_LOOK = 512                   # bytes after a body looked at to tell a header line


def _iso_date(stamp: bytes) -> str:
    s = stamp.decode("ascii")
    if len(s) != 14:
        return s
    return f"{s[0:4]}-{s[4:6]}-{s[6:8]}T{s[8:10]}:{s[10:12]}:{s[12:14]}Z"


def iter_arc(src: ByteSource, path: str, max_record_bytes: int) -> Iterator[RawPage | Skip]:
    """Every record of an ARC stream, one item each, plus `damaged:*` Skips where the file is damaged."""
    while True:
        yield from _iter_records(src, path, max_record_bytes)
        if not src.resume():            # gzip damage ended the records: go on at the next good member, if any
            return


def _iter_records(src: ByteSource, path: str, max_record_bytes: int) -> Iterator[RawPage | Skip]:
    """The records up to the end of the stream, or up to gzip damage."""
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
                yield Skip(key, path, _end_reason(src), detail="file ends inside a record header")
                return
            skipped = _resync(src, max_record_bytes)
            yield Skip(key, path, "damaged:bad-header", detail=f"{line[:60]!r}; skipped {skipped} bytes")
            continue
        url = m.group(1).decode("utf-8", "replace")
        length = int(m.group(5))
        origin = Origin(key, path, url, _iso_date(m.group(3)))
        if length > max_record_bytes:
            skipped, cut = src.skip_until(_NEXT_HEADER, length, max_record_bytes)
            rest = length - skipped
            if cut and rest <= max_record_bytes and src.fill_to(rest) >= rest and _next_is_record(src, rest):
                skipped, cut = skipped + src.drop(rest), False      # the header line was body text
            if not cut and skipped < length:
                yield Skip(key, path, _end_reason(src), url, f"record of {length} bytes cut at {skipped}")
                return
            yield Skip(key, path, "too-large", url, f"{length} bytes")
            if cut:
                yield _bad_length(src, path, length, skipped)
            continue
        have = src.fill_to(length)
        end = length
        if have < length or not _next_is_record(src, length):
            found = src.search(_NEXT_HEADER, min(have, length + _LOOK))
            if 0 <= found < min(have, length):
                end = found                 # a header line inside the body: the length ran into later records
            elif have < length:
                yield Skip(key, path, _end_reason(src), url, f"record of {length} bytes cut at {have}")
                return
        body = src.take(end)
        yield _classify(body, url, m.group(4).decode("latin-1"), origin, max_record_bytes)
        if end < length:
            yield _bad_length(src, path, length, end)


def _end_reason(src: ByteSource) -> str:
    return src.damage[0] if src.damage else "damaged:truncated"


def _next_is_record(src: ByteSource, offset: int) -> bool:
    """After `offset` bytes from here, is there (past CR/LF) an ARC header line or the end of the stream?"""
    have = src.fill_to(offset + _LOOK)
    tail = src.peek_at(offset, _LOOK).lstrip(b"\r\n")
    if tail:
        return bool(_HEADER_START.match(tail))
    return have < offset + _LOOK


def _bad_length(src: ByteSource, path: str, length: int, end: int) -> Skip:
    return Skip(f"{path}#{src.position_key()}", path, "damaged:bad-length",
                detail=f"length {length}, next header line at {end}")


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
