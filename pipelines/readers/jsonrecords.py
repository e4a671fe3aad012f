"""JSON records from a `ByteSource`: the one parser every reader uses for JSON lines and JSON documents.

- `parse_json(data)`: `json.loads` that never lets a bad value out. Too-deep nesting is a `ValueError` like any
  syntax error, and every lone surrogate (JSON's `"\\ud800"` escapes, or CESU-8 bytes, which `json.loads`
  accepts) is replaced by U+FFFD, so every string that enters a record can be encoded as UTF-8 when it is written.
- `iter_lines` / `iter_json_lines`: one item per non-blank line, at most `max_bytes` per line (the rest of a longer
  line is skipped without being held), keys `path#<line from 1>`.
- `iter_json_document`: a JSON document streamed element by element, never loaded whole: a top-level array, or an
  object whose members named in `array_fields` are arrays (`{"RECORDS": [...]}`, LCCC's `{"train": [...]}`); keys
  `path#<index>` and `path#<field>/<index>`. Anything else is one value of at most `max_bytes`.

Memory is one record (at most `max_bytes`) plus a read chunk, however large or well compressed the file is.
Bad data yields `Skip`s (`bad-json`, `too-large`, `damaged:*`) and reading goes on where it can.
"""
from __future__ import annotations

import codecs
import json
import re
from typing import Any, Collection, Iterator

from cleaners.document import encodable
from pipelines.readers.bytesource import ByteSource
from pipelines.readers.skip import Skip

BOM = b"\xef\xbb\xbf"
TEXT_READ = 1 << 20
_DECODER = json.JSONDecoder()
_SEPARATORS = re.compile(r"[\s,]*")
_SPACE = re.compile(r"\s*")
_FIRST_MEMBER = re.compile(r'\{\s*("(?:[^"\\]|\\.){0,200}")\s*:\s*\[')
_SNIFF_CHARS = 4096
_MAY_HOLD_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]")
_MAY_HOLD_SURROGATE_TEXT = re.compile(r"\\u[dD][89a-fA-F]|[\ud800-\udfff]")


# ---- values ----------------------------------------------------------------------------------------
def parse_json(data: bytes | str) -> Any:
    """`json.loads(data)` with lone surrogates replaced; ValueError on bad JSON, bad UTF-8 or too-deep nesting."""
    try:
        value = json.loads(data)
    except RecursionError as exc:
        raise ValueError("JSON nested too deeply") from exc
    surrogates = _MAY_HOLD_SURROGATE if isinstance(data, (bytes, bytearray)) else _MAY_HOLD_SURROGATE_TEXT
    return encodable(value) if surrogates.search(data) else value


# ---- lines -----------------------------------------------------------------------------------------
def iter_lines(src: ByteSource, path: str, max_bytes: int) -> Iterator[tuple[str, bytes | Skip]]:
    """(key, line) per non-blank line (BOM of the first line removed); (key, Skip) for a line over `max_bytes`
    (`too-large`, its rest skipped unread) and for a last line cut short by a damaged gzip stream; damage found
    after a whole line comes as one extra `damaged:*` item."""
    line_no = 0
    while not src.at_eof():
        line_no += 1
        key = f"{path}#{line_no}"
        line = src.readline(max_bytes + 1)
        if line_no == 1 and line.startswith(BOM):
            line = line[len(BOM):]
        if len(line) > max_bytes:
            while line and not line.endswith(b"\n"):
                line = src.readline(1 << 20)
            yield key, Skip(key, path, "too-large", detail=f"line longer than {max_bytes} bytes")
        elif src.damage and not line.endswith(b"\n") and src.at_eof():
            yield key, Skip(key, path, src.damage[0], detail=f"{src.damage[1]} (line cut short)")
            return
        elif line.strip():
            yield key, line
    if src.damage:
        key = f"{path}#{line_no + 1}"
        yield key, Skip(key, path, src.damage[0], detail=src.damage[1])


def iter_json_lines(src: ByteSource, path: str, max_bytes: int) -> Iterator[tuple[str, Any]]:
    """(key, parsed value) per non-blank line; a `Skip` as the value for a line that is not JSON (`bad-json`),
    too long, or cut short, and for damage (see `iter_lines`)."""
    for key, line in iter_lines(src, path, max_bytes):
        if isinstance(line, Skip):
            yield key, line
            continue
        try:
            yield key, parse_json(line)
        except ValueError as exc:          # JSONDecodeError and UnicodeDecodeError are ValueErrors
            yield key, Skip(key, path, "bad-json", detail=str(exc)[:200])


# ---- documents -------------------------------------------------------------------------------------
class _TooLarge(ValueError):
    pass


class _Text:
    """The decoded text of a ByteSource, read a chunk at a time; `buf[pos:]` is what is left to parse."""

    def __init__(self, src: ByteSource) -> None:
        self.src = src
        self.decoder = codecs.getincrementaldecoder("utf-8-sig")("replace")
        self.buf, self.pos, self.eof = "", 0, False

    def more(self) -> bool:
        """Append the next chunk (dropping what was parsed); False at the end of the stream."""
        if self.eof:
            return False
        data = self.src.take(TEXT_READ)
        self.eof = self.src.at_eof()
        self.buf = self.buf[self.pos:] + self.decoder.decode(data, final=self.eof)
        self.pos = 0
        return True

    def next_char(self, separators: re.Pattern[str] = _SPACE) -> str:
        """Skip `separators`; the next character, or '' at the end."""
        while True:
            self.pos = separators.match(self.buf, self.pos).end()
            if self.pos < len(self.buf) or not self.more():
                return self.buf[self.pos:self.pos + 1]

    def value(self, max_chars: int) -> Any:
        """The JSON value starting here. ValueError when it is bad or the text ends inside it; `_TooLarge` when it
        runs past `max_chars`."""
        while True:
            try:
                value, end = _DECODER.raw_decode(self.buf, self.pos)
            except (ValueError, RecursionError) as exc:
                if len(self.buf) - self.pos > max_chars:
                    raise _TooLarge(f"a value longer than {max_chars} characters") from None
                if self.more():
                    continue
                raise ValueError("nested too deeply" if isinstance(exc, RecursionError) else str(exc)) from None
            if end == len(self.buf) and self.more():   # a number may go on in the next chunk
                continue
            if end - self.pos > max_chars:
                raise _TooLarge(f"a value longer than {max_chars} characters")
            start, self.pos = self.pos, end
            return encodable(value) if _MAY_HOLD_SURROGATE_TEXT.search(self.buf, start, end) else value


def iter_json_document(src: ByteSource, path: str, max_bytes: int,
                       array_fields: Collection[str] = ()) -> Iterator[tuple[str, str | None, Any]]:
    """(key, field, value) for every element of a JSON document (see the module docstring); `field` is the
    member an element came from (None for a top-level array or a whole-document value). A value that is bad JSON
    or over `max_bytes` comes as a `Skip`; a break in the document ends it with one `damaged:*` Skip."""
    text = _Text(src)
    first = text.next_char()
    if first == "[":
        text.pos += 1
        yield from _array_elements(text, path, None, max_bytes)
    elif first == "{" and _first_member_is_array(text, array_fields):
        text.pos += 1
        yield from _object_members(text, path, max_bytes, array_fields)
    elif first:
        yield f"{path}#0", None, _whole_value(text, path, max_bytes)
    elif src.damage:
        yield f"{path}#0", None, Skip(f"{path}#0", path, src.damage[0], detail=src.damage[1])


def _first_member_is_array(text: _Text, array_fields: Collection[str]) -> bool:
    """True when the object starting here opens with a member named in `array_fields` holding an array."""
    while len(text.buf) - text.pos < _SNIFF_CHARS and text.more():
        pass
    match = _FIRST_MEMBER.match(text.buf, text.pos)
    try:
        return bool(match) and json.loads(match.group(1)) in array_fields
    except ValueError:
        return False


def _whole_value(text: _Text, path: str, max_bytes: int) -> Any:
    key = f"{path}#0"
    try:
        value = text.value(max_bytes)
    except _TooLarge as exc:
        return Skip(key, path, "too-large", detail=str(exc))
    except ValueError as exc:
        if text.src.damage:
            return Skip(key, path, text.src.damage[0], detail=text.src.damage[1])
        return Skip(key, path, "bad-json", detail=str(exc)[:200])
    if text.next_char():
        return Skip(key, path, "bad-json", detail="text after the JSON value")
    return value


def _object_members(text: _Text, path: str, max_bytes: int,
                    array_fields: Collection[str]) -> Iterator[tuple[str, str | None, Any]]:
    """Members of the top-level object after its `{`: arrays named in `array_fields` element by element, any
    other member as one (field, value) item keyed `path#field`."""
    key = f"{path}#0"
    while True:
        char = text.next_char(_SEPARATORS)
        if char == "}":
            return
        try:
            if char != '"':
                raise ValueError(f"expected a member name, found {char!r}" if char else "document ends early")
            name = text.value(max_bytes)
            if text.next_char() != ":":
                raise ValueError(f"no ':' after member {name!r}")
            text.pos += 1
            key = f"{path}#{name}"
            if name in array_fields and text.next_char() == "[":
                text.pos += 1
                yield from _array_elements(text, path, name, max_bytes)
                if text.next_char() != "]":
                    return                                  # the array ended on damage, already reported
                text.pos += 1
                continue
            yield key, name, text.value(max_bytes)
        except ValueError as exc:
            yield key, None, _document_break(text, path, key, exc)
            return


def _array_elements(text: _Text, path: str, field: str | None,
                    max_bytes: int) -> Iterator[tuple[str, str | None, Any]]:
    """Elements of an array whose `[` was just consumed; stops before its `]` (or after a break)."""
    index = 0
    while True:
        char = text.next_char(_SEPARATORS)
        if char == "]":
            return
        key = f"{path}#{index}" if field is None else f"{path}#{field}/{index}"
        try:
            if not char:
                raise ValueError("array ends early")
            value = text.value(max_bytes)
        except _TooLarge as exc:      # its end is unknown, and so is everything after it
            yield key, field, Skip(key, path, "too-large", detail=str(exc))
            yield key, field, Skip(key, path, "damaged:bad-json", detail="the rest of the array follows a value "
                                                                         "too large to parse")
            return
        except ValueError as exc:
            yield key, field, _document_break(text, path, key, exc)
            return
        yield key, field, value
        index += 1


def _document_break(text: _Text, path: str, key: str, exc: Exception) -> Skip:
    if text.src.damage:
        return Skip(key, path, text.src.damage[0], detail=text.src.damage[1])
    return Skip(key, path, "damaged:bad-json", detail=str(exc)[:200])
