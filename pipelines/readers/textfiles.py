"""Pre-extracted text corpora (JSON lines, JSON arrays) and bare HTML files -> `RawPage` / `Skip`.

Accepted record shapes (one JSON object per record):
- the WuDaoCorpora schema: `id`, `uniqueKey`, `titleUkey`, `dataType`, `title`, `content` (WuDaoCorpora 2.0
  release; FlagAI's GLM examples), also inside a `{"RECORDS": [...]}` export (FlagAI's `jinrong_data.json`);
- `text` (+ optional `url`, `title`, `id`, `meta.url`): RedPajama / The Pile / data-juicer / Dolma style.
`content` wins over `text` when both are strings. A line that is not a JSON object is `bad-json` and reading goes
on; a record without text is `no-text`. JSON is parsed by `jsonrecords` (lone surrogates replaced, nesting bounded,
arrays streamed element by element); a broken array ends with one `damaged:bad-json` Skip, since nothing after the
break can be trusted.
"""
from __future__ import annotations

import re
from typing import Any, Iterator

from cleaners.document import RawPage
from pipelines.readers import jsonrecords
from pipelines.readers.bytesource import ByteSource
from pipelines.readers.http import Origin, payload_page
from pipelines.readers.skip import Skip

ARRAY_START = re.compile(rb"(?:\xef\xbb\xbf)?\s*(?:\[|\{\s*\"RECORDS\"\s*:\s*\[)")


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
    for key, value in jsonrecords.iter_json_lines(src, path, max_record_bytes):
        yield value if isinstance(value, Skip) else record_to_page(value, key, path)


def iter_json_array(src: ByteSource, path: str, max_record_bytes: int) -> Iterator[RawPage | Skip]:
    """Elements of a top-level JSON array (keys `path#<index>`) or of `{"RECORDS": [...]}` (`path#RECORDS/<index>`),
    streamed."""
    for key, _, value in jsonrecords.iter_json_document(src, path, max_record_bytes, array_fields=("RECORDS",)):
        yield value if isinstance(value, Skip) else record_to_page(value, key, path)


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
