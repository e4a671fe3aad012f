"""From a captured HTTP response (or a bare payload with a known media type) to a `RawPage` or a `Skip`.

Shared by the WARC and ARC readers. The rules:
- only complete pages are kept: status 200 or 203 (206 is a partial body, 204 has none, 3xx/4xx/5xx are not
  the page); anything else is `http-status:NNN`;
- `Transfer-Encoding: chunked` is undone; when the chunk sizes are wrong the raw body is kept (warcio's reader
  does the same on its `example-wrong-chunks` test file);
- `Content-Encoding: gzip / x-gzip / deflate` is undone (bounded, so a decompression bomb is `too-large`);
  a gzip stream cut short keeps what decodes; other codings (br, zstd, compress) are `content-encoding:<name>`;
- only HTML-ish media types are pages (text/html, application/xhtml+xml); when the type is missing the body is
  sniffed with the HTML patterns of the WHATWG MIME Sniffing standard (section 7.1);
- the `charset=` parameter of Content-Type is kept in `RawPage.http_charset`; bytes are never decoded here.
"""
from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

from cleaners.document import RawPage
from pipelines.readers.skip import Skip

HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
KEEP_STATUS = frozenset({200, 203})
MAX_HEADER_BYTES = 1 << 16

_STATUS_LINE = re.compile(rb"HTTP/\d(?:\.\d)?[ \t]+(\d{3})")
_HEADER_END = re.compile(rb"\r?\n\r?\n")
# WHATWG MIME Sniffing 7.1 "identifying a resource with an unknown MIME type": the HTML patterns
_HTML_SNIFF = re.compile(
    rb"(?:\xef\xbb\xbf)?[\t\n\x0c\r ]*<(?:!doctype html|html|head|script|iframe|h1|div|font|table|a|style|title"
    rb"|b|body|br|p|!--)[ >]",
    re.IGNORECASE,
)
_CHUNK_SIZE = re.compile(rb"[ \t]*([0-9A-Fa-f]{1,16})[ \t]*(?:;[^\r\n]*)?\r?\n")
_CHUNK_END = re.compile(rb"\r?\n")


@dataclass
class HttpResponse:
    status: int
    headers: dict[str, str]           # lower-cased names; repeated headers joined with ", "
    body: bytes


@dataclass
class Origin:
    """Where a payload came from: copied into the RawPage or Skip."""

    key: str
    source: str
    url: str = ""
    date: str = ""


def parse_response(block: bytes) -> HttpResponse | None:
    """Split an HTTP/1.x response into status, headers and body; None if it is not one."""
    m = _STATUS_LINE.match(block)
    if not m:
        return None
    end = _HEADER_END.search(block, 0, MAX_HEADER_BYTES)
    if end is None:
        head, body = block[:MAX_HEADER_BYTES], b""
        if len(block) > MAX_HEADER_BYTES:
            return None
    else:
        head, body = block[: end.start()], block[end.end() :]
    headers: dict[str, str] = {}
    for line in head.split(b"\n")[1:]:
        name, sep, value = line.partition(b":")
        if not sep:
            continue
        key = name.strip().lower().decode("latin-1")
        val = value.strip().decode("latin-1")
        headers[key] = f"{headers[key]}, {val}" if key in headers else val
    return HttpResponse(int(m.group(1)), headers, body)


def parse_content_type(value: str) -> tuple[str, str | None]:
    """`text/html; charset="GBK"` -> ("text/html", "gbk"). Repeated values: the first media type wins."""
    media, _, params = value.partition(",")[0].partition(";")
    charset = None
    for param in params.split(";"):
        name, _, val = param.partition("=")
        if name.strip().lower() == "charset":
            charset = val.strip().strip("\"'").strip().lower() or None
    return media.strip().lower(), charset


def sniff_html(body: bytes) -> bool:
    return _HTML_SNIFF.match(body, 0, 1024) is not None


def dechunk(body: bytes) -> bytes | None:
    """Undo chunked transfer coding; None when the chunk framing does not fit the bytes."""
    parts = []
    pos = 0
    while True:
        m = _CHUNK_SIZE.match(body, pos)
        if not m:
            return None
        size = int(m.group(1), 16)
        start = m.end()
        if size == 0:
            return b"".join(parts)
        if start + size > len(body):
            return None
        parts.append(body[start : start + size])
        pos = start + size
        end = _CHUNK_END.match(body, pos)
        if not end:
            return None
        pos = end.end()


def decode_content(body: bytes, coding: str, max_bytes: int) -> bytes | str:
    """Undo one Content-Encoding; returns the bytes or a Skip reason."""
    if coding in ("", "identity", "none", "utf-8", "binary"):
        return body
    if coding in ("gzip", "x-gzip"):
        if not body.startswith(b"\x1f\x8b"):
            # many crawlers store the decoded body but keep the header
            return body if sniff_html(body) else "content-encoding:bad-gzip"
        attempts = (31,)
    elif coding == "deflate":
        attempts = (15, -15)          # zlib-wrapped (RFC 9110) or raw deflate (what some servers send)
    else:
        return f"content-encoding:{coding}"
    for wbits in attempts:
        dec = zlib.decompressobj(wbits)
        try:
            out = dec.decompress(body, max_bytes + 1)
        except zlib.error:
            continue
        if len(out) > max_bytes:
            return "too-large"
        if out or dec.eof:
            return out
    return body if sniff_html(body) else f"content-encoding:bad-{coding}"


def payload_page(
    body: bytes, media: str, charset: str | None, origin: Origin, meta: dict | None = None
) -> RawPage | Skip:
    """A bare payload (WARC resource, ARC non-HTTP record, HTML file) of media type `media` ('' = unknown)."""
    if media and media not in HTML_TYPES:
        return Skip(origin.key, origin.source, f"non-html:{media}", origin.url)
    if not media and not sniff_html(body):
        return Skip(origin.key, origin.source, "non-html:unknown", origin.url)
    if not body.strip():
        return Skip(origin.key, origin.source, "no-text", origin.url)
    return RawPage(
        key=origin.key, source=origin.source, url=origin.url, date=origin.date, html=body,
        http_charset=charset, content_type=media or "text/html", meta=meta or {},
    )


def response_page(block: bytes, origin: Origin, max_bytes: int) -> RawPage | Skip:
    """A captured HTTP response (status line, headers, body) to a page or a counted reason."""
    resp = parse_response(block)
    if resp is None:
        return Skip(origin.key, origin.source, "bad-http", origin.url, repr(block[:40]))
    if resp.status not in KEEP_STATUS:
        return Skip(origin.key, origin.source, f"http-status:{resp.status}", origin.url)
    media, charset = parse_content_type(resp.headers.get("content-type", ""))
    if media and media not in HTML_TYPES:
        return Skip(origin.key, origin.source, f"non-html:{media}", origin.url)
    meta: dict = {"http_status": resp.status}
    body = resp.body
    if "chunked" in resp.headers.get("transfer-encoding", "").lower():
        plain = dechunk(body)
        if plain is None:
            meta["bad_chunking"] = True
        else:
            body = plain
    for coding in reversed(resp.headers.get("content-encoding", "").lower().split(",")):
        decoded = decode_content(body, coding.strip(), max_bytes)
        if isinstance(decoded, str):
            return Skip(origin.key, origin.source, decoded, origin.url)
        body = decoded
    return payload_page(body, media, charset, origin, meta)
