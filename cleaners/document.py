"""Record types that flow through the web-text recipe.

`RawPage` is what a reader yields (one fetched page or one pre-extracted text record);
`Document` is what the per-record steps transform and filter; `to_wudao_record` turns a kept
document into the WuDaoCorpora JSON schema (`id`, `uniqueKey`, `titleUkey`, `dataType`, `title`,
`content`, plus `url`, `lang`, `source` and scores).
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def encodable(value: Any) -> Any:
    """`value` with every lone surrogate in its strings replaced by U+FFFD (dict keys and nested values too).

    A lone surrogate cannot be written as UTF-8. Readers pass what enters a record through here at read time
    (JSON values through `jsonrecords.parse_json`, file names in the read DoFns), so no string fails a run later."""
    if isinstance(value, str):
        return _LONE_SURROGATE.sub("\ufffd", value)
    if isinstance(value, list):
        return [encodable(item) for item in value]
    if isinstance(value, dict):
        return {encodable(key): encodable(item) for key, item in value.items()}
    return value


def stable_hash(*parts: str) -> str:
    """Hex sha1 of the parts joined by a NUL: the project's one way to make ids that survive reruns."""
    h = hashlib.sha1()
    for i, part in enumerate(parts):
        if i:
            h.update(b"\0")
        h.update(part.encode("utf-8", "surrogatepass"))
    return h.hexdigest()


@dataclass
class RawPage:
    """One record as read from an input file, before extraction.

    Exactly one of `html` (bytes of an HTML payload, still encoded) or `text` (already plain text:
    WET conversions, JSONL/Parquet corpora) is set.
    """

    key: str                      # position key, unique per input record: "<file>#<offset or line>"
    source: str                   # input file path/URL
    url: str = ""
    date: str = ""                # capture date (WARC-Date / ARC date), ISO 8601 when known
    html: bytes | None = None
    text: str | None = None
    title: str = ""
    http_charset: str | None = None   # charset from the HTTP Content-Type header, if any
    content_type: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        """The id a page has before extraction: the hash of its position key."""
        return stable_hash(self.key)


@dataclass
class Document:
    """One document as the per-record steps see it."""

    id: str                       # stable id: position key hash until extraction, content hash after
    text: str
    title: str = ""
    url: str = ""
    source: str = ""
    date: str = ""
    lang: str = ""
    lang_score: float = 0.0
    scores: dict[str, float] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    key: str = ""                 # the input record's position key (rejects/ rows)

    def content_id(self) -> str:
        """Stable id from the content (and title), as WuDao's `uniqueKey`."""
        return stable_hash(self.title, self.text)


DATA_TYPE = "web-text"


def data_type(doc: Document, default: str) -> str:
    """The record's WuDao `dataType`: the label the input carried (JSONL/Parquet `dataType`, never overwritten),
    else the label the `domain` step found (source type, else topic), else `default` (the pipeline's kind,
    `web-text`)."""
    for label in (doc.meta.get("dataType"), doc.meta.get("domain_label")):
        if isinstance(label, str) and label.strip():
            return label.strip()
    return default


def to_wudao_record(doc: Document) -> dict[str, Any]:
    """The WuDaoCorpora record for a kept document (field names as in the released WuDao 200G set)."""
    unique_key = stable_hash(doc.text)
    return {
        "id": doc.id,
        "uniqueKey": unique_key,
        "titleUkey": stable_hash(doc.title) if doc.title else "",
        "dataType": data_type(doc, DATA_TYPE),
        "title": doc.title,
        "content": doc.text,
        "url": doc.url,
        "lang": doc.lang,
        "source": doc.source,
        "date": doc.date,
        "source_id": str(doc.meta.get("id", "")),   # the input record's own id (JSONL/Parquet corpora)
        "scores": dict(sorted(doc.scores.items())),
        **({"domain": doc.meta["domain"]} if isinstance(doc.meta.get("domain"), dict) else {}),
    }
