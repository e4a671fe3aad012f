"""Decode fetched HTML bytes to text: BOM, HTTP charset, <meta> charset, strict UTF-8, detection.

The order and the label-to-superset mapping follow the WHATWG Encoding Standard
(https://encoding.spec.whatwg.org/, "Encodings" table and "decode" algorithm) and the HTML
"prescan a byte stream" rule: GB2312/GBK labels decode as GB18030, ISO-8859-1/ASCII labels as
windows-1252, Shift_JIS as windows-31j, EUC-KR as windows-949, a <meta> that claims UTF-16 means UTF-8.
Big5 labels decode as Big5-HKSCS, or CP950 when that decodes strictly and HKSCS does not (Microsoft's
extensions are what Windows-authored Taiwanese pages use).

Unlike a browser, a declared charset is only trusted when the bytes decode under it: Common Crawl
pages often declare UTF-8 while being GBK, or come with the Apache default `ISO-8859-1` header.
So a declaration that fails a strict decode falls through to the next source, and a Latin-1-family
label from the HTTP header (the server default, not the author's choice) yields to a <meta> tag and
to valid UTF-8. Errors only in the last 3 bytes are accepted as a record cut mid-character
(Common Crawl truncates payloads at 1 MiB).
"""
from __future__ import annotations

import codecs
import re

import charset_normalizer

#: how many leading bytes are searched for <meta charset>: WHATWG's prescan reads 1024 bytes;
#: real Chinese portals put long <script>/<link> blocks first, so 4 KB.
META_SCAN_BYTES = 4096
#: how many bytes charset-normalizer sees, starting at the first non-ASCII byte (detection cost is
#: linear in its input; 32 KB of non-ASCII text is plenty to tell GB18030 from Big5 or Shift_JIS).
DETECT_BYTES = 32768
#: a multi-byte character is at most 4 bytes (UTF-8, GB18030): an error starting in the last 3 bytes
#: is a truncated record, not a wrong encoding.
TRUNCATION_SLACK = 3

_SUPERSETS: dict[str, tuple[str, ...]] = {}


def _alias(target: tuple[str, ...], *labels: str) -> None:
    for label in labels:
        _SUPERSETS[label] = target


_alias(("gb18030",), "gb2312", "gbk", "x-gbk", "gb_2312-80", "gb_2312", "gb18030", "chinese",
       "csgb2312", "csiso58gb231280", "iso-ir-58", "cp936", "windows-936", "ms936", "euc-cn")
_alias(("big5hkscs", "cp950"), "big5", "big5-hkscs", "big5hkscs", "cn-big5", "csbig5", "x-x-big5")
_alias(("cp950", "big5hkscs"), "cp950", "windows-950", "ms950", "x-windows-950")
_alias(("cp1252",), "iso-8859-1", "iso8859-1", "iso_8859-1", "latin1", "latin-1", "l1", "ascii",
       "us-ascii", "ansi_x3.4-1968", "cp819", "ibm819", "iso-ir-100", "csisolatin1", "windows-1252",
       "cp1252", "x-cp1252")
_alias(("cp932",), "shift_jis", "shift-jis", "sjis", "x-sjis", "ms_kanji", "csshiftjis", "windows-31j", "cp932")
_alias(("cp949",), "euc-kr", "ks_c_5601-1987", "ks_c_5601-1989", "ksc5601", "ksc_5601", "windows-949",
       "cp949", "cseuckr", "korean")
_alias(("cp1254",), "iso-8859-9", "iso8859-9", "latin5", "l5", "windows-1254")
_alias(("cp874",), "tis-620", "iso-8859-11", "windows-874", "dos-874")
_alias(("utf-8",), "utf-8", "utf8", "unicode-1-1-utf-8", "x-unicode20utf8")

#: labels of the Latin-1 family: an HTTP header with one of them is usually a server default.
_WEAK_HEADER = frozenset(label for label, target in _SUPERSETS.items() if target == ("cp1252",))
#: Python codecs that are not page encodings (escapes, IDNA, UTF-7's XSS history).
_NOT_PAGE_ENCODINGS = frozenset({"utf-7", "idna", "punycode", "raw-unicode-escape", "unicode-escape",
                                 "undefined", "mbcs", "oem", "palmos"})

_BOMS = (  # UTF-32 before UTF-16: the UTF-32-LE BOM starts with the UTF-16-LE one
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)

# <meta charset=x> and <meta http-equiv=Content-Type content="text/html; charset=x">: both carry
# "charset=" inside a <meta ...> tag.
_META_CHARSET = re.compile(rb"<meta\b[^>]*?charset\s*=\s*[\"']?\s*([A-Za-z0-9._:\-]+)", re.IGNORECASE)
_NON_ASCII = re.compile(rb"[\x80-\xff]")


def candidate_codecs(label: str | None, from_meta: bool = False) -> tuple[str, ...]:
    """Python codecs to try for a declared charset label, best first; () for unknown labels."""
    if not label:
        return ()
    label = label.strip().strip("\"'").lower()
    if label in _SUPERSETS:
        return _SUPERSETS[label]
    if from_meta and label.startswith(("utf-16", "utf-32", "ucs-2", "unicode")):
        return ("utf-8",)  # WHATWG: a UTF-16 page could not have an ASCII-readable <meta>
    try:
        info = codecs.lookup(label)
    except (LookupError, ValueError):
        return ()
    name = info.name.replace("_", "-")
    if not getattr(info, "_is_text_encoding", True) or name in _NOT_PAGE_ENCODINGS:
        return ()
    return (info.name,)


def _try_decode(data: bytes, encoding: str) -> str | None:
    """`data` decoded strictly, tolerating a character cut off at the very end; None if it fails."""
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        if exc.start >= len(data) - TRUNCATION_SLACK:
            return data[: exc.start].decode(encoding) + "\ufffd"
        return None
    except LookupError:
        return None


def _first_fit(data: bytes, encodings: tuple[str, ...]) -> tuple[str, str] | None:
    for encoding in encodings:
        text = _try_decode(data, encoding)
        if text is not None:
            return text, encoding
    return None


def meta_charset(data: bytes) -> str | None:
    """The charset label of the first <meta> in the first META_SCAN_BYTES bytes that declares one."""
    match = _META_CHARSET.search(data, 0, META_SCAN_BYTES)
    return match.group(1).decode("ascii") if match else None


def detect_encoding(data: bytes) -> str | None:
    """charset-normalizer's guess on a bounded window starting at the first non-ASCII byte."""
    first = _NON_ASCII.search(data)
    if first is None:
        return None
    window = data[first.start(): first.start() + DETECT_BYTES]
    best = charset_normalizer.from_bytes(window).best()
    if best is None:
        return None
    if best.encoding.startswith(("utf_16", "utf_32")) and b"\x00" not in window:
        return None  # UTF-16/32 HTML has NUL bytes in every ASCII tag; without them the guess is noise
    return best.encoding


def decode_html(data: bytes, http_charset: str | None = None) -> tuple[str, str]:
    """Decode an HTML payload; returns (text, Python codec name used).

    Never raises for bytes input: the last resort is UTF-8 (or the detected codec, whichever has fewer
    errors) with U+FFFD replacement, reported as "<codec>/replace".
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"decode_html needs bytes, got {type(data).__name__}")
    data = bytes(data)
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            text = _try_decode(data[len(bom):], encoding)
            if text is not None:
                return text, encoding

    header = (http_charset or "").strip().strip("\"'").lower()
    header_codecs = candidate_codecs(header)
    weak_header = header in _WEAK_HEADER
    if header_codecs and not weak_header:
        found = _first_fit(data, header_codecs)
        if found:
            return found

    utf8_text = _try_decode(data, "utf-8")
    meta_codecs = candidate_codecs(meta_charset(data), from_meta=True)
    # a Latin-1 <meta> on bytes that are valid non-ASCII UTF-8 is a stale template, not the truth
    if meta_codecs and not (meta_codecs == ("cp1252",) and utf8_text is not None and not utf8_text.isascii()):
        found = _first_fit(data, meta_codecs)
        if found:
            return found

    if utf8_text is not None:
        return utf8_text, "utf-8"

    if weak_header:
        found = _first_fit(data, header_codecs)
        if found:
            return found

    detected = candidate_codecs(detect_encoding(data))
    if detected:
        found = _first_fit(data, detected)
        if found:
            return found

    # last resort: the reading with fewer replacement characters
    best_text, best_codec = data.decode("utf-8", "replace"), "utf-8"
    for encoding in detected:
        text = data.decode(encoding, "replace")
        if text.count("\ufffd") < best_text.count("\ufffd"):
            best_text, best_codec = text, encoding
    return best_text, best_codec + "/replace"

