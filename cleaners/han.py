"""The one definition of a Han (CJK ideograph) character, for every step that finds or counts Chinese characters.

`HAN_BLOCKS` holds the (first, last) code points; `HAN_RANGES` is the same as text to put inside a regex character
class (`f"[{HAN_RANGES}]"`, or composed with extra ranges such as kana where a step means "CJK" rather than
"Han"). They cover these Unicode blocks:

- U+3400..U+4DBF    CJK Unified Ideographs Extension A
- U+4E00..U+9FFF    CJK Unified Ideographs
- U+F900..U+FAFF    CJK Compatibility Ideographs
- U+20000..U+323AF  the supplementary ideographic planes (SIP and TIP): Extension B (U+20000..U+2A6DF),
  C (U+2A700..U+2B73F), D (U+2B740..U+2B81F), E (U+2B820..U+2CEAF), F (U+2CEB0..U+2EBEF), I (U+2EBF0..U+2EE5F),
  CJK Compatibility Ideographs Supplement (U+2F800..U+2FA1F), G (U+30000..U+3134F) and H (U+31350..U+323AF).
  The unassigned code points between these blocks are taken too: a range is cheaper than nine, and nothing else
  is ever assigned in these two planes.

CJK punctuation, radicals (U+2E80..U+2FDF), strokes, kana, hangul and fullwidth forms are not Han; a step that
wants them adds them next to `HAN_RANGES`.
"""
from __future__ import annotations

import re

HAN_BLOCKS = ((0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0x20000, 0x323AF))
HAN_RANGES = "".join(f"{chr(first)}-{chr(last)}" for first, last in HAN_BLOCKS)
HAN_RE = re.compile(f"[{HAN_RANGES}]")
HAN_RUN_RE = re.compile(f"[{HAN_RANGES}]+")


def is_han(ch: str) -> bool:
    """True when `ch` (one character) is a Han ideograph."""
    return len(ch) == 1 and HAN_RE.match(ch) is not None


def count_han(text: str) -> int:
    """The number of Han ideographs in `text` (summed over runs: far fewer matches than one per character)."""
    return sum(map(len, HAN_RUN_RE.findall(text)))
