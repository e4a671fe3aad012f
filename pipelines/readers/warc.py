"""WARC 1.0 / 1.1 records (WARC, WET, WAT; plain or gzip) -> `RawPage` / `Skip`, streaming.

Record framing follows the WARC 1.1 standard (ISO 28500): a `WARC/1.x` line, named fields, a blank line, a block
of `Content-Length` bytes, then CRLF CRLF. Real files bend it, so the reader is lenient where it is safe:
- any run of CR/LF between records is accepted (some writers emit one byte more or less);
- when the bytes after a block are neither the record terminator nor the next `WARC/` record, Content-Length
  was wrong (cc_net's trimmed WET sample, warcio's `example-trunc`): the record is cut at the first
  `<blank line>WARC/1.x` boundary instead, a `damaged:bad-length` Skip is counted, and reading goes on;
- a record over the cap (`too-large`) is skipped unbuffered, but a `WARC/1.x` line met inside it proves its
  length wrong unless the declared end (when within one cap of it) is itself a record boundary: reading
  goes on at that boundary (`damaged:bad-length`), so a huge or bit-flipped Content-Length never swallows the file;
- a header that is not a WARC header resyncs to the next boundary (`damaged:bad-header`);
- a file that ends inside a record yields one `damaged:truncated` (or the gzip layer's `damaged:bad-gzip`) Skip
  for that record and stops; after a corrupt or non-gzip member reading goes on at the next gzip member that
  decodes (`ByteSource.resume`), its records keyed by their own compressed member offsets.
WARC-Target-URI values wrapped in `<...>` (as in dolma's sample) are unwrapped.
"""
from __future__ import annotations

import re
from typing import Iterator

from cleaners.document import RawPage
from pipelines.readers.bytesource import ByteSource
from pipelines.readers.http import Origin, payload_page, parse_content_type, response_page
from pipelines.readers.skip import Skip

NON_PAGE_TYPES = frozenset({"warcinfo", "request", "revisit", "metadata"})
MAX_HEADER_LINE = 1 << 16
MAX_HEADER_LINES = 512

SEPARATORS = re.compile(rb"[\r\n]*")
RECORD_BOUNDARY = re.compile(rb"\n\r?\nWARC/1\.[01]\r?\n")
RECORD_START = re.compile(rb"\nWARC/1\.[01]\r?\n")
_VERSION = re.compile(rb"WARC/1\.[01]\r?\n")


class _BadHeader(Exception):
    pass


def _read_header(src: ByteSource) -> dict[str, str]:
    """Named fields of one record header (names lower-cased). The version line must already be checked."""
    src.readline(MAX_HEADER_LINE)
    fields: dict[str, str] = {}
    last = ""
    for _ in range(MAX_HEADER_LINES):
        line = src.readline(MAX_HEADER_LINE)
        if not line.endswith(b"\n"):
            if len(line) < MAX_HEADER_LINE:
                raise EOFError
            raise _BadHeader("header line too long")
        text = line.decode("utf-8", "replace").rstrip("\r\n")
        if not text:
            return fields
        if text[0] in " \t" and last:
            fields[last] += " " + text.strip()
            continue
        name, sep, value = text.partition(":")
        if not sep:
            raise _BadHeader(f"not a header field: {text[:60]!r}")
        last = name.strip().lower()
        fields[last] = value.strip()
    raise _BadHeader("too many header lines")


def _unwrap_uri(uri: str) -> str:
    uri = uri.strip()
    if uri.startswith("<") and uri.endswith(">"):
        uri = uri[1:-1].strip()
    return uri


def _classify(fields: dict[str, str], block: bytes, origin: Origin, max_bytes: int) -> RawPage | Skip:
    wtype = fields.get("warc-type", "").lower()
    if wtype in NON_PAGE_TYPES:
        return Skip(origin.key, origin.source, wtype, origin.url)
    if wtype == "conversion":
        text = block.decode("utf-8", "replace").strip("\r\n")
        if not text.strip():
            return Skip(origin.key, origin.source, "no-text", origin.url)
        meta = {"warc_record_id": fields.get("warc-record-id", "")}
        if "warc-identified-content-language" in fields:
            meta["cc_languages"] = fields["warc-identified-content-language"]
        return RawPage(key=origin.key, source=origin.source, url=origin.url, date=origin.date, text=text,
                       content_type="text/plain", meta=meta)
    media, charset = parse_content_type(fields.get("content-type", ""))
    if wtype == "response":
        if media == "application/http" or block.startswith(b"HTTP/"):
            page = response_page(block, origin, max_bytes)
        else:
            page = payload_page(block, media, charset, origin)
    elif wtype == "resource":
        page = payload_page(block, media, charset, origin)
    else:
        return Skip(origin.key, origin.source, f"warc-type:{wtype or 'missing'}", origin.url)
    if isinstance(page, RawPage):
        page.meta["warc_record_id"] = fields.get("warc-record-id", "")
    return page


def iter_warc(src: ByteSource, path: str, max_record_bytes: int) -> Iterator[RawPage | Skip]:
    """Every record of a WARC/WET/WAT stream, one item each, plus `damaged:*` Skips where the file is damaged."""
    while True:
        yield from _iter_records(src, path, max_record_bytes)
        if not src.resume():            # gzip damage ended the records: go on at the next good member, if any
            return


def _iter_records(src: ByteSource, path: str, max_record_bytes: int) -> Iterator[RawPage | Skip]:
    """The records up to the end of the stream, or up to gzip damage."""
    while True:
        src.skip_bytes(SEPARATORS)
        if src.at_eof():
            if src.damage:          # e.g. a gzip member cut in its trailer, after its last record
                yield Skip(f"{path}#{src.position_key()}", path, src.damage[0], detail=src.damage[1])
            return
        key = f"{path}#{src.position_key()}"
        head = src.peek(16)
        if len(head) < 16 and b"\n" not in head:
            yield Skip(key, path, _end_reason(src), detail=f"file ends with {head!r}")
            return
        if not _VERSION.match(head):
            skipped = _resync(src, max_record_bytes)
            yield Skip(key, path, "damaged:bad-header", detail=f"no WARC/1.x line; skipped {skipped} bytes")
            continue
        try:
            fields = _read_header(src)
            length = int(fields.get("content-length", "").strip())
            if length < 0:
                raise ValueError(length)
        except EOFError:
            yield Skip(key, path, _end_reason(src), detail="file ends inside a record header")
            return
        except (_BadHeader, ValueError) as exc:
            skipped = _resync(src, max_record_bytes)
            yield Skip(key, path, "damaged:bad-header", detail=f"{exc}; skipped {skipped} bytes")
            continue
        origin = Origin(key, path, _unwrap_uri(fields.get("warc-target-uri", "")), fields.get("warc-date", ""))

        if length > max_record_bytes:
            skipped, cut = _skip_large(src, length, max_record_bytes)
            if not cut and skipped < length:
                yield Skip(key, path, _end_reason(src), origin.url, f"record of {length} bytes cut at {skipped}")
                return
            yield Skip(key, path, "too-large", origin.url, f"{length} bytes")
            if cut:
                detail = f"Content-Length {length}, next record at {skipped}"
                yield Skip(f"{path}#{src.position_key()}", path, "damaged:bad-length", detail=detail)
            else:
                damage = _check_boundary_forward(src, path, max_record_bytes)
                if damage:
                    yield damage
            continue

        have = src.fill_to(length + 16)
        if have < length:
            end = src.search(RECORD_BOUNDARY, have)      # a length past the end, but more records follow?
            if end < 0:
                yield Skip(key, path, _end_reason(src), origin.url, f"record of {length} bytes cut at {have}")
                return
            where = f"{path}#{src.position_key(src.tell() + end)}"
            damage = Skip(where, path, "damaged:bad-length", detail=f"Content-Length {length} past the end")
        else:
            end, damage = _block_end(src, length, path, max_record_bytes)
        block = src.take(end)
        yield _classify(fields, block.rstrip(b"\r\n") if damage else block, origin, max_record_bytes)
        if damage:
            yield damage


def _end_reason(src: ByteSource) -> str:
    return src.damage[0] if src.damage else "damaged:truncated"


def _next_is_record(src: ByteSource, offset: int) -> bool:
    """After `offset` bytes from here, is there (past CR/LF) either the end of the stream or a WARC/ line?"""
    have = src.fill_to(offset + 64)
    tail = src.peek_at(offset, 64).lstrip(b"\r\n")
    if tail:
        return tail.startswith(b"WARC/")
    return have < offset + 64


def _block_end(src: ByteSource, length: int, path: str, limit: int) -> tuple[int, Skip | None]:
    """Where this record's block really ends (normally `length`), and a damage Skip when that is not `length`.

    A proper terminator at the declared end is trusted unless a `<blank line>WARC/1.x` boundary inside the block
    shows that the length ran into later records."""
    if _next_is_record(src, length):
        return length, None
    boundary = src.search(RECORD_BOUNDARY, limit + 4)
    if src.peek_at(length, 4).startswith((b"\r\n\r\n", b"\n\n")) and not 0 <= boundary < length:
        return length, None             # right length; whatever follows a proper terminator resyncs as a bad header
    where = f"{path}#{src.position_key(src.tell() + length)}"
    end = boundary if boundary >= 0 else min(src.fill_to(limit), limit)
    detail = f"Content-Length {length}, block ends at {end}"
    return end, Skip(where, path, "damaged:bad-length", detail=detail)


def _skip_large(src: ByteSource, length: int, limit: int) -> tuple[int, bool]:
    """Skip an over-cap block, holding at most `limit` bytes; returns (bytes skipped, cut). `cut`: a `WARC/1.x` line
    inside the block proved `length` wrong and `src` is there. Such a line is only payload text when the declared
    end, if no more than `limit` further on, is a record boundary (a longer look would hold more than the cap)."""
    skipped, cut = src.skip_until(RECORD_START, length, limit)
    rest = length - skipped
    if cut and rest <= limit and src.fill_to(rest) >= rest and _next_is_record(src, rest):
        return skipped + src.drop(rest), False
    return skipped, cut


def _check_boundary_forward(src: ByteSource, path: str, limit: int) -> Skip | None:
    """After a record that was skipped unbuffered: resync forward if the next bytes are not a record."""
    if _next_is_record(src, 0) or src.peek_at(0, 2) == b"\n\n" or src.peek_at(0, 4) == b"\r\n\r\n":
        return None
    key = f"{path}#{src.position_key()}"
    skipped = _resync(src, limit)
    return Skip(key, path, "damaged:bad-length", detail=f"skipped {skipped} bytes to the next record")


def _resync(src: ByteSource, limit: int) -> int:
    """Skip to the start of the next `WARC/1.x` line (or the end of the stream); returns the bytes skipped."""
    skipped = 0
    while True:
        found = src.search(RECORD_START, limit)
        if found >= 0:
            return skipped + src.drop(found + 1)
        dropped = src.drop(max(limit - 64, 1))      # keep an overlap: a boundary may straddle the cut
        skipped += dropped
        if not dropped or src.at_eof():
            return skipped
