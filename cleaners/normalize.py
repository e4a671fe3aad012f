"""Text normalization: Unicode form, width, invisible characters, whitespace, punctuation runs, and
traditional -> simplified Chinese.

Rules and their sources:

- Unicode NFC, not NFKC: NFKC folds Chinese full-width punctuation (，！：？（）) into ASCII, which
  changes Chinese text; CCNet/datatrove normalize with NFC for the same reason.
- Full-width ASCII letters and digits (U+FF10-FF19, U+FF21-FF3A, U+FF41-FF5A) and the ideographic space
  U+3000 become half-width, the way Chinese web cleaners (WuDaoCorpora, Yuan 1.0) fold them; full-width
  punctuation stays.
- Control characters (Cc, except newline and tab), format characters (Cf: zero-width space/joiners,
  U+2060 word joiner, U+FEFF BOM, U+00AD soft hyphen, bidi marks, tags) and lone surrogates are removed;
  the Arabic "prepended concatenation marks" (U+0600-0605, U+06DD, U+070F, U+0890-0891, U+08E2, U+110BD,
  U+110CD) are Cf but visible, so they stay.
- Whitespace: every line-break form becomes ``\\n``; tabs and Unicode spaces become one ASCII space; runs
  collapse; lines are stripped; three or more newlines become one blank line (C4 and Gopher keep
  paragraph breaks, so single newlines survive).
- A run of one punctuation mark longer than ``max_punct_repeat`` (default 3, so ``...`` survives) is cut to
  that length; ``…`` and ``—`` are written in pairs in Chinese (``……``, ``——``, GB/T 15834-2011), so
  their runs are cut to whole pairs.

`normalize_text` and `to_simplified` work without a step; the steps `normalize` and `t2s` wrap them.
"""
from __future__ import annotations

import functools
import re
import sys
import unicodedata
from typing import Any

from cleaners.document import Document
from cleaners.han import HAN_RE
from cleaners.step import Step, register

EMPTY_REASON = "empty-after-normalize"

# Code points whose category is Cc, Cf or Cs live in planes 0, 1 and 14 only (planes 2-3 hold CJK
# ideographs, 15-16 private use), so scanning those planes builds the classes in ~25 ms at import.
_SCANNED_PLANES = (range(0x0, 0x20000), range(0xE0000, min(0xE1000, sys.maxunicode + 1)))
_VISIBLE_FORMAT = frozenset(
    [*range(0x600, 0x606), 0x6DD, 0x70F, 0x890, 0x891, 0x8E2, 0x110BD, 0x110CD]
)
# Line-break forms handled before invisible characters are removed (some are Cc).
_LINE_BREAKS = "\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"


def _class_of(code_points: list[int]) -> str:
    """A regex character class matching exactly `code_points` (sorted), written as ranges."""
    parts: list[str] = []
    start = prev = None
    for cp in code_points:
        if prev is not None and cp == prev + 1:
            prev = cp
            continue
        if start is not None:
            parts.append(_range(start, prev))
        start = prev = cp
    if start is not None:
        parts.append(_range(start, prev))
    return "[" + "".join(parts) + "]"


def _range(lo: int, hi: int) -> str:
    lo_s = re.escape(chr(lo)) if lo > 0x20 else f"\\x{lo:02x}"
    hi_s = re.escape(chr(hi)) if hi > 0x20 else f"\\x{hi:02x}"
    return lo_s if lo == hi else f"{lo_s}-{hi_s}"


def _invisible_class() -> str:
    invisible: list[int] = []
    for plane in _SCANNED_PLANES:
        for cp in plane:
            cat = unicodedata.category(chr(cp))
            if cat in ("Cc", "Cs") or (cat == "Cf" and cp not in _VISIBLE_FORMAT):
                if chr(cp) not in "\n\t" and chr(cp) not in _LINE_BREAKS:
                    invisible.append(cp)
    return _class_of(invisible)


_LINE_BREAK_RE = re.compile("\r\n|[" + _LINE_BREAKS + "]")
_INVISIBLE_RE = re.compile(_invisible_class() + "+")
_FULLWIDTH_ALNUM_RE = re.compile("[\uff10-\uff19\uff21-\uff3a\uff41-\uff5a]+")
_FULLWIDTH_TABLE = {cp: cp - 0xFEE0 for r in ((0xFF10, 0xFF19), (0xFF21, 0xFF3A), (0xFF41, 0xFF5A))
                    for cp in range(r[0], r[1] + 1)}
# Tab, no-break space, ogham space, en quad..hair space, narrow nbsp, math space, ideographic space.
_HSPACE_RE = re.compile("[ \t\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]{2,}"
                        "|[\t\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]")
_LINE_EDGE_SPACE_RE = re.compile(" \n ?|\n ")  # only where a space touches a line break
_BLANK_LINES_RE = re.compile("\n{3,}")
_PAIRED_MARKS = frozenset("\u2026\u2014")  # … and —: written in pairs in Chinese


# The tilde is a symbol (Sm) in Unicode but used as punctuation in Chinese web text (～～～).
_EXTRA_PUNCT = frozenset("~\uff5e")


@functools.lru_cache(maxsize=16)
def _repeat_run_re(max_repeat: int) -> re.Pattern[str]:
    # Runs of any non-word character (or "_"); the callback keeps only punctuation. A pattern that starts
    # with a plain character class lets the regex engine skip ahead in C (6x faster than a class of all
    # punctuation code points).
    return re.compile(f"([\\W_])\\1{{{max_repeat},}}")


def _is_punct(char: str) -> bool:
    return unicodedata.category(char)[0] == "P" or char in _EXTRA_PUNCT


def _cut_punct_runs(text: str, max_repeat: int) -> str:
    paired_max = max(2, max_repeat - max_repeat % 2)

    def cut(m: re.Match[str]) -> str:
        mark = m.group(1)
        if not _is_punct(mark):
            return m.group()
        if mark in _PAIRED_MARKS:
            return mark * paired_max
        return mark * max_repeat

    return _repeat_run_re(max_repeat).sub(cut, text)


def normalize_text(text: str, *, fullwidth_ascii: bool = True, max_punct_repeat: int = 3,
                   single_line: bool = False) -> str:
    """Normalize `text` by the rules in the module docstring. `single_line` (titles) turns line breaks
    into spaces. `max_punct_repeat` < 1 turns the punctuation rule off."""
    if not isinstance(text, str):
        raise TypeError(f"normalize_text expects str, got {type(text).__name__}")
    if not text:
        return ""
    if not text.isascii():
        if not unicodedata.is_normalized("NFC", text):
            # Lone surrogates make NFC raise; they are invisible junk, so drop them first.
            text = _INVISIBLE_RE.sub("", text)
            text = unicodedata.normalize("NFC", text)
        if fullwidth_ascii:
            text = _FULLWIDTH_ALNUM_RE.sub(lambda m: m.group().translate(_FULLWIDTH_TABLE), text)
    text = _LINE_BREAK_RE.sub("\n", text)
    text = _INVISIBLE_RE.sub("", text)
    if single_line:
        text = text.replace("\n", " ")
    text = _HSPACE_RE.sub(" ", text)
    text = _LINE_EDGE_SPACE_RE.sub("\n", text)
    text = _BLANK_LINES_RE.sub("\n\n", text)
    text = text.strip(" \n")
    if max_punct_repeat >= 1:
        text = _cut_punct_runs(text, max_punct_repeat)
    return text


_CJK_RE = HAN_RE   # a Han ideograph: only text holding one goes to OpenCC


@functools.lru_cache(maxsize=8)
def _converter(config: str) -> Any:
    import opencc  # imported here so that modules not converting never pay for it

    try:
        return opencc.OpenCC(config)
    except RuntimeError as exc:  # OpenCC raises RuntimeError for an unknown config name
        raise ValueError(f"unknown OpenCC config {config!r}: {exc}") from exc


def to_simplified(text: str, config: str = "t2s") -> str:
    """Traditional -> simplified Chinese with OpenCC (`config` names an OpenCC config, default `t2s`).
    Text without a CJK ideograph is returned as is, without calling OpenCC."""
    if not isinstance(text, str):
        raise TypeError(f"to_simplified expects str, got {type(text).__name__}")
    if not text or text.isascii() or not _CJK_RE.search(text):
        return text
    return _converter(config).convert(text)


def _check_repeat(max_punct_repeat: Any) -> int:
    if isinstance(max_punct_repeat, bool) or not isinstance(max_punct_repeat, int):
        raise ValueError(f"max_punct_repeat must be an integer, got {max_punct_repeat!r}")
    return max_punct_repeat


@register("normalize")
class Normalize(Step):
    """Normalize `text` and `title` in place; drops only a document left empty (`empty-after-normalize`)."""

    def __init__(self, *, fullwidth_ascii: bool = True, max_punct_repeat: int = 3) -> None:
        self.fullwidth_ascii = bool(fullwidth_ascii)
        self.max_punct_repeat = _check_repeat(max_punct_repeat)

    def apply(self, doc: Document) -> Document | str:
        options = {"fullwidth_ascii": self.fullwidth_ascii, "max_punct_repeat": self.max_punct_repeat}
        doc.text = normalize_text(doc.text or "", **options)
        if not doc.text:
            return EMPTY_REASON
        doc.title = normalize_text(doc.title or "", single_line=True, **options)
        return doc


@register("t2s")
class TraditionalToSimplified(Step):
    """Convert `text` and `title` from traditional to simplified Chinese (OpenCC, config `config`).
    The default recipe runs it on `zh` documents only, after language ID."""

    def __init__(self, *, config: str = "t2s") -> None:
        if not isinstance(config, str) or not config:
            raise ValueError(f"config must be an OpenCC config name, got {config!r}")
        self.config = config
        self._opencc: Any = None

    def setup(self) -> None:
        self._opencc = _converter(self.config)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_opencc"] = None  # the OpenCC object does not pickle; setup() rebuilds it
        return state

    def _convert(self, text: str) -> str:
        if not text or text.isascii() or not _CJK_RE.search(text):
            return text
        if self._opencc is None:
            self.setup()
        return self._opencc.convert(text)

    def apply(self, doc: Document) -> Document | str:
        doc.text = self._convert(doc.text)
        doc.title = self._convert(doc.title)
        return doc
