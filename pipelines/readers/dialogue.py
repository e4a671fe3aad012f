"""Dialogue inputs -> `Session` / `Post` / `Skip`: `iter_dialogue_file(stream, path)`.

Formats (plain or gzip), told apart by extension and content:
- LCCC text (`.txt` / `.tsv`): one dialogue per line, turns separated by TAB (Wang et al. 2020, "A Large-Scale
  Chinese Short-Text Conversation Dataset", NLPCC; thu-coai/CDial-GPT `toy_train.txt`). Streamed.
- JSON lines (`.jsonl`, `.ndjson`, or a file whose first line is one whole record): a list of turn strings;
  `{"turns": [...], "id"?, "lang"?}`; ShareGPT `{"id"?, "conversations": [{"from", "value"}]}`; KdConv-style
  `{"messages": [{"message"} | {"role", "content"}]}`; a thread post `{"id", "parent_id" | "reply_to",
  "text" | "content", "author"?}` (a `parent_id` / `reply_to` key, even null, makes a record a `Post`). Streamed.
- A whole JSON document (streamed record by record, never loaded whole): LCCC `{"train": [[utt, ...]], "valid": ...,
  "test": ...}` (every split, keys `path#split/index`), or a top-level list of any JSON-lines record above
  (KdConv `[{"messages", "name"}]`, LCCC lists of turn lists, posts), keys `path#index`.

LCCC stores utterances as characters separated by single spaces, Latin letters and digits included
("c a l l", "2 4 岁"). Bare turn lists (LCCC's shapes: text lines, split dicts, lists of turn lists) whose text
looks that way are joined back (`join_spaced_characters`); ShareGPT, KdConv, `turns` and posts never are.

Keys are `path#<line from 1>` (text, JSON lines) or `path#<index from 0>` (documents). Bad data never raises:
`bad-json` (not JSON), `bad-record` (JSON of no known shape, or not UTF-8), `no-turns` (no turn with text),
`too-large`, and `damaged:*` for a cut or corrupt gzip stream (one extra item at the end).
"""
from __future__ import annotations

import re
from typing import Any, BinaryIO, Iterable, Iterator

from cleaners.dialogue.records import Post, Session
from cleaners.han import HAN_RANGES
from pipelines.readers import jsonrecords
from pipelines.readers.bytesource import GZIP_MAGIC, ByteSource
from pipelines.readers.skip import Skip

MAX_LINE_BYTES = 20_000_000
SNIFF_LINE_BYTES = 1 << 20
SPACED_MIN_SINGLE_SHARE = 0.6     # share of one-character tokens for text to count as space-tokenized

_BOM = b"\xef\xbb\xbf"
_COMPRESSION_SUFFIX = re.compile(r"\.(?:gz|gzip)$", re.IGNORECASE)
_NEWLINE = re.compile(rb"\n")
_CJK = re.compile(f"[\u3040-\u30ff\uac00-\ud7af{HAN_RANGES}]")   # kana, hangul and Han
_SPACE_RUN = re.compile(" {2,}")
_LCCC_SPLITS = ("train", "valid", "test")


# ---- LCCC character joining --------------------------------------------------------------------
def looks_space_tokenized(turns: Iterable[str]) -> bool:
    """True when the turns read like LCCC's one-character tokens: at least 2 tokens, at least 60% of them
    one character long, and no longer token holding a CJK character (word-segmented Chinese is left alone)."""
    tokens = [token for turn in turns for token in turn.split(" ") if token]
    if len(tokens) < 2:
        return False
    single = 0
    for token in tokens:
        if len(token) == 1:
            single += 1
        elif _CJK.search(token):
            return False
    return single >= SPACED_MIN_SINGLE_SHARE * len(tokens)


def join_spaced_characters(text: str) -> str:
    """Undo LCCC's character spacing: "打 包 2 斤 , c a l l" -> "打包2斤,call".

    A single space goes unless it separates two Latin/digit tokens of which at least one is a whole word
    ("hello world", "A P P store" -> "APP store"); a run of 2+ spaces is an original space and stays as one.
    """
    return " ".join(_join_segment(segment) for segment in _SPACE_RUN.split(text.strip(" ")))


def _join_segment(segment: str) -> str:
    tokens = [token for token in segment.split(" ") if token]
    out: list[str] = []
    for left, right in zip([""] + tokens, tokens):
        if left and (len(left) > 1 or len(right) > 1) and _is_latin_or_digit(left[-1]) and _is_latin_or_digit(right[0]):
            out.append(" ")
        out.append(right)
    return "".join(out)


def _is_latin_or_digit(char: str) -> bool:
    return char.isascii() and char.isalnum()


# ---- records -----------------------------------------------------------------------------------
def record_to_item(value: Any, key: str, path: str) -> Session | Post | Skip:
    """One parsed JSON record -> a `Session`, a `Post`, or the reason it is neither."""
    if isinstance(value, list):
        return _lccc_session(value, key, path)
    if not isinstance(value, dict):
        return Skip(key, path, "bad-record", detail=f"a JSON {type(value).__name__}")
    if "parent_id" in value or "reply_to" in value:
        return _post(value, key, path)
    for field_name, reader in (("conversations", _sharegpt_turns), ("messages", _message_turns),
                               ("turns", _plain_turns)):
        if field_name in value:
            parsed = reader(value[field_name])
            if parsed is None:
                return Skip(key, path, "bad-record", detail=f"`{field_name}` is not a list of turns")
            turns, speakers, meta = parsed
            if isinstance(value.get("name"), str):
                meta["name"] = value["name"]
            return _session(turns, key, path, speakers=speakers, meta=meta,
                            given_id=value.get("id"), lang=value.get("lang"))
    return Skip(key, path, "bad-record", detail="no turns, conversations, messages or parent_id field")


def _lccc_session(turns: list[Any], key: str, path: str, meta: dict[str, Any] | None = None) -> Session | Skip:
    if not all(isinstance(turn, str) for turn in turns):
        return Skip(key, path, "bad-record", detail="a list holding something other than turn strings")
    meta = dict(meta or {})
    if looks_space_tokenized(turns):
        turns = [join_spaced_characters(turn) for turn in turns]
        meta["joined_characters"] = True
    return _session(turns, key, path, meta=meta)


def _session(turns: list[str], key: str, path: str, *, speakers: list[str] | None = None,
             meta: dict[str, Any] | None = None, given_id: Any = None, lang: Any = None) -> Session | Skip:
    if not any(turn.strip() for turn in turns):
        return Skip(key, path, "no-turns", detail=f"{len(turns)} turns, none with text")
    meta = dict(meta or {})
    given = _id_string(given_id)
    if given:  # input ids are not unique across files; the session id is always the hash of its turns
        meta["source_id"] = given
    return Session(turns=turns, source=path, key=key, lang=lang if isinstance(lang, str) else "",
                   speakers=speakers, meta=meta)


def _plain_turns(turns: Any) -> tuple[list[str], None, dict[str, Any]] | None:
    if not isinstance(turns, list) or not all(isinstance(turn, str) for turn in turns):
        return None
    return turns, None, {}


def _sharegpt_turns(messages: Any) -> tuple[list[str], list[str], dict[str, Any]] | None:
    """ShareGPT turns with speakers from `from`; a `system` message goes to meta, not to the turns."""
    if not isinstance(messages, list):
        return None
    turns, speakers, meta = [], [], {}
    for message in messages:
        if not isinstance(message, dict) or not isinstance(message.get("value"), str):
            return None
        speaker = message.get("from") if isinstance(message.get("from"), str) else ""
        if speaker == "system":
            meta["system"] = message["value"]
            continue
        turns.append(message["value"])
        speakers.append(speaker)
    return turns, speakers, meta


def _message_turns(messages: Any) -> tuple[list[str], list[str] | None, dict[str, Any]] | None:
    """KdConv `{"message"}` (knowledge `attrs` left out), or chat-style `{"role", "content"}` messages."""
    if not isinstance(messages, list):
        return None
    turns, speakers = [], []
    for message in messages:
        if not isinstance(message, dict):
            return None
        text = message.get("message", message.get("content"))
        if not isinstance(text, str):
            return None
        turns.append(text)
        speaker = message.get("role", message.get("from", ""))
        speakers.append(speaker if isinstance(speaker, str) else "")
    return turns, speakers if any(speakers) else None, {}


def _post(record: dict[str, Any], key: str, path: str) -> Post | Skip:
    post_id = _id_string(record.get("id"))
    text = record.get("text", record.get("content"))
    parent_field = record["parent_id"] if "parent_id" in record else record["reply_to"]
    parent = None if parent_field in (None, "") else _id_string(parent_field)
    if not post_id or not isinstance(text, str) or (parent_field not in (None, "") and parent is None):
        return Skip(key, path, "bad-record", detail="a post needs a string/int id and parent, and a text")
    author = record.get("author")
    return Post(id=post_id, text=text, parent_id=parent, author=author if isinstance(author, str) else "",
                source=path, key=key)


def _id_string(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int) or isinstance(value, str) and value:
        return str(value)
    return None


# ---- file formats ------------------------------------------------------------------------------
def iter_lccc_text(src: ByteSource, path: str, max_line_bytes: int = MAX_LINE_BYTES) -> Iterator[Session | Skip]:
    """LCCC text: one session per non-blank line, TAB-separated turns, characters joined back when spaced."""
    for key, line in jsonrecords.iter_lines(src, path, max_line_bytes):
        if isinstance(line, Skip):
            yield line
            continue
        try:
            text = line.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError as exc:
            yield Skip(key, path, "bad-record", detail=f"not UTF-8: {exc}"[:200])
            continue
        yield _lccc_session(text.split("\t"), key, path)


def iter_dialogue_lines(src: ByteSource, path: str,
                        max_line_bytes: int = MAX_LINE_BYTES) -> Iterator[Session | Post | Skip]:
    """JSON lines: one record per non-blank line."""
    for key, value in jsonrecords.iter_json_lines(src, path, max_line_bytes):
        yield value if isinstance(value, Skip) else record_to_item(value, key, path)


def iter_dialogue_document(src: ByteSource, path: str,
                           max_record_bytes: int = MAX_LINE_BYTES) -> Iterator[Session | Post | Skip]:
    """A whole JSON document, streamed record by record (each at most `max_record_bytes`): an LCCC split object,
    a list of records, or one record; a top-level list of turn strings is one session."""
    head = src.peek(SNIFF_LINE_BYTES).lstrip(_BOM + b" \t\r\n")
    if head.startswith(b"[") and head[1:].lstrip(b" \t\r\n").startswith(b'"'):
        yield from _one_turn_list(src, path, max_record_bytes)
        return
    for key, field, value in jsonrecords.iter_json_document(src, path, max_record_bytes, array_fields=_LCCC_SPLITS):
        if isinstance(value, Skip):
            yield value
        elif field is None:
            yield record_to_item(value, key, path)
        elif field not in _LCCC_SPLITS:
            yield Skip(key, path, "bad-record", detail=f"member {field!r} of an LCCC split object")
        elif key == f"{path}#{field}":
            if value is not None:
                yield Skip(key, path, "bad-record", detail=f"split {field!r} is not a list")
        elif isinstance(value, list):
            yield _lccc_session(value, key, path, meta={"split": field})
        else:
            yield Skip(key, path, "bad-record", detail=f"a JSON {type(value).__name__}, not a turn list")


def _one_turn_list(src: ByteSource, path: str, max_record_bytes: int) -> Iterator[Session | Skip]:
    """A document that is one list of turns (its elements streamed, at most `max_record_bytes` in all)."""
    key, turns, size = f"{path}#0", [], 0
    for _, _, value in jsonrecords.iter_json_document(src, path, max_record_bytes):
        if isinstance(value, Skip):
            yield value
            return
        if not isinstance(value, str):
            yield Skip(key, path, "bad-record", detail="a list holding something other than turn strings")
            return
        turns.append(value)
        size += len(value)
        if size > max_record_bytes:
            yield Skip(key, path, "too-large", detail=f"a turn list longer than {max_record_bytes} characters")
            return
    yield record_to_item(turns, key, path)


def _is_lccc_splits(value: Any) -> bool:
    return isinstance(value, dict) and bool(value) and any(split in value for split in _LCCC_SPLITS) \
        and all(isinstance(sessions, list) for sessions in value.values() if sessions is not None)


def detect_dialogue_format(src: ByteSource, path: str) -> str | None:
    """'lccc-text', 'jsonl', 'json' or None (empty): extension first, then the first line's content."""
    name = _COMPRESSION_SUFFIX.sub("", path.lower())
    if name.endswith((".txt", ".tsv")):
        return "lccc-text"
    if name.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    newline = src.search(_NEWLINE, SNIFF_LINE_BYTES)
    first = src.peek(newline if newline >= 0 else SNIFF_LINE_BYTES).removeprefix(_BOM).strip()
    if not first:
        return None if src.at_eof() else "json"
    if first[:1] not in (b"{", b"["):
        return "lccc-text"
    if first[:1] == b"[" and newline < 0:
        return "json"
    try:
        value = jsonrecords.parse_json(first)
    except ValueError:
        return "json" if name.endswith(".json") or first[:1] == b"[" or first == b"{" else "jsonl"
    is_record = isinstance(value, dict) and not _is_lccc_splits(value) or \
        isinstance(value, list) and all(isinstance(item, str) for item in value)
    return "jsonl" if is_record and (newline >= 0 or not name.endswith(".json")) else "json"


def iter_dialogue_file(stream: BinaryIO, path: str, *,
                       max_line_bytes: int = MAX_LINE_BYTES) -> Iterator[Session | Post | Skip]:
    """Every session / post of one dialogue input file, one item per record (+ a `damaged:*` Skip on damage).

    Streams every format (memory: one record of at most `max_line_bytes`, else a `too-large` Skip), JSON
    documents included. Bad data never raises; I/O errors of `stream` do.
    """
    head = stream.read(len(GZIP_MAGIC)) or b""
    while 0 < len(head) < len(GZIP_MAGIC):
        more = stream.read(len(GZIP_MAGIC) - len(head))
        if not more:
            break
        head += more
    src = ByteSource(stream, gzipped=head.startswith(GZIP_MAGIC), prefix=head)
    try:
        fmt = detect_dialogue_format(src, path)
        if fmt == "lccc-text":
            yield from iter_lccc_text(src, path, max_line_bytes)
        elif fmt == "jsonl":
            yield from iter_dialogue_lines(src, path, max_line_bytes)
        elif fmt == "json":
            yield from iter_dialogue_document(src, path, max_line_bytes)
        elif src.damage:
            yield Skip(f"{path}#0", path, src.damage[0], detail=src.damage[1])
    except (OSError, MemoryError):
        raise
    except Exception as exc:  # noqa: BLE001 - a reader bug on strange bytes must not stop the run
        yield Skip(f"{path}#{src.position_key()}", path, "damaged:reader-error", detail=f"{type(exc).__name__}: {exc}")
