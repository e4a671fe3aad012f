"""Pre-extracted text corpora (JSON lines, JSON arrays) and bare HTML files -> `RawPage` / `Skip`.

Accepted record shapes (one JSON object per record):
- the WuDaoCorpora schema: `id`, `uniqueKey`, `titleUkey`, `dataType`, `title`, `content` (WuDaoCorpora 2.0
  release; FlagAI's GLM examples), also inside a `{"RECORDS": [...]}` export (FlagAI's `jinrong_data.json`);
- `text` (+ optional `url`, `title`, `id`, `meta.url`): RedPajama / The Pile / data-juicer / Dolma style.
`content` wins over `text` when both are strings. A line that is not a JSON object is `bad-json` and reading goes
on; a record without text is `no-text`. JSON arrays are streamed element by element (never loaded whole); a broken
array ends with one `damaged:bad-json` Skip, since nothing after the break can be trusted.
"""
from __future__ import annotations

import codecs
import json
import re
from typing import Any, Iterator

from cleaners.document import RawPage
from pipelines.readers.bytesource import ByteSource
from pipelines.readers.http import Origin, payload_page
from pipelines.readers.skip import Skip

ARRAY_START = re.compile(rb"(?:\xef\xbb\xbf)?\s*(?:\[|\{\s*\"RECORDS\"\s*:\s*\[)")
_DECODER = json.JSONDecoder()
_SPACE_OR_COMMA = re.compile(r"[\s,]*")
_TEXT_READ = 1 << 20


def record_to_page(record: Any, key: str, path: str) -> RawPage | Skip:
    """One parsed JSON value -> a text RawPage, or the reason it is not one."""
    if not isinstance(record, dict):
        return Skip(key, path, "bad-json", detail=f"a JSON {type(record).__name__}, not an object")
    meta_field = record.get("meta") if isinstance(record.get("meta"), dict) else {}
    url = record.get("url") or meta_field.get("url") or ""
    url = url if isinstance(url, str) else ""
    text = record.get("content")
    if not isinstance(text, str):
        text = record.get("text")
    if not isinstance(text, str) or not text.strip():
        return Skip(key, path, "no-text", url)
    title = record.get("title")
    meta = {name: record[name] for name in ("id", "dataType", "uniqueKey") if record.get(name) not in (None, "")}
    date = record.get("date") or meta_field.get("date") or ""
    return RawPage(key=key, source=path, url=url, date=date if isinstance(date, str) else "", text=text,
                   title=title if isinstance(title, str) else "", content_type="text/plain", meta=meta)


def iter_json_lines(src: ByteSource, path: str, max_record_bytes: int) -> Iterator[RawPage | Skip]:
    """One item per non-blank line; keys are `path#<line number from 1>`."""
    line_no = 0
    while not src.at_eof():
        line_no += 1
        key = f"{path}#{line_no}"
        line = src.readline(max_record_bytes + 1)
        if len(line) > max_record_bytes:
            rest = 0 if line.endswith(b"\n") else _drop_line(src)
            yield Skip(key, path, "too-large", detail=f"line longer than {max_record_bytes} bytes (+{rest})")
            continue
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (ValueError, RecursionError) as exc:   # JSONDecodeError and UnicodeDecodeError are ValueErrors
            yield Skip(key, path, "bad-json", detail=str(exc)[:200])
            continue
        yield record_to_page(record, key, path)
    if src.damage:
        yield Skip(f"{path}#{line_no + 1}", path, src.damage[0], detail=src.damage[1])


def _drop_line(src: ByteSource) -> int:
    dropped = 0
    while True:
        chunk = src.readline(1 << 20)
        dropped += len(chunk)
        if not chunk or chunk.endswith(b"\n"):
            return dropped


def iter_json_array(src: ByteSource, path: str, max_record_bytes: int) -> Iterator[RawPage | Skip]:
    """Elements of a top-level JSON array (or of `{"RECORDS": [...]}`), streamed; keys `path#<index>`."""
    prefix = ARRAY_START.match(src.peek(4096))
    src.drop(prefix.end() if prefix else 0)
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    buf, pos, index, eof = "", 0, 0, False
    while True:
        pos = _SPACE_OR_COMMA.match(buf, pos).end()
        if pos == len(buf) and not eof:
            buf, pos = buf[pos:] + decoder.decode(src.take(_TEXT_READ), final=src.at_eof()), 0
            eof = src.at_eof()
            continue
        if buf.startswith("]", pos):
            return
        key = f"{path}#{index}"
        try:
            value, end = _DECODER.raw_decode(buf, pos)
        except (ValueError, RecursionError) as exc:
            if not eof and len(buf) - pos <= max_record_bytes:
                buf, pos = buf[pos:] + decoder.decode(src.take(_TEXT_READ), final=False), 0
                eof = src.at_eof()
                continue
            reason = src.damage[0] if src.damage else "damaged:bad-json"
            detail = "array ends early" if pos >= len(buf) else str(exc)[:200]
            yield Skip(key, path, reason, detail=detail)
            return
        yield record_to_page(value, key, path)
        index += 1
        pos = end


def iter_html_file(src: ByteSource, path: str, max_record_bytes: int) -> Iterator[RawPage | Skip]:
    """A bare HTML file is one page, keyed `path#0`; the charset is left to the extractor (meta tags, sniffing)."""
    key = f"{path}#0"
    body = src.take(max_record_bytes + 1)
    if len(body) > max_record_bytes:
        yield Skip(key, path, "too-large", detail=f"more than {max_record_bytes} bytes")
        return
    if src.damage:
        yield Skip(key, path, src.damage[0], detail="compressed HTML file damaged")
        return
    yield payload_page(body, "text/html", None, Origin(key, path))
