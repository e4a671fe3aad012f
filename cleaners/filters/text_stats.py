"""Text statistics the heuristic filters share: Chinese character counts, a regex word splitter,
lines, paragraphs, duplicates and n-gram repetition.

Everything is computed with regexes, `str` methods, `collections.Counter` and numpy, never a Python
loop over characters. `stats_for(text)` computes each statistic at most once per document, even across
steps (gopher_quality, gopher_repetition and fineweb all read the same `TextStats`).

No NLTK: its tokenizer data cannot be downloaded here, and a regex splitter is 10-50x faster. Words are
runs of letters/digits, joined across an inner apostrophe, hyphen or dot ("don't", "e-mail", "3.14"),
so punctuation is never a word (datatrove drops punctuation tokens from its Gopher word counts too).
"""
from __future__ import annotations

import re
from collections import Counter
from functools import cached_property

import numpy as np

# Chinese (Han) character counts come from the one Han definition, `cleaners.han`; filters import it from here.
from cleaners.han import count_han as count_han

# Letters and digits of any script (\w without the underscore): what is left of text without
# whitespace and punctuation/symbols.
ALNUM_RUN = re.compile(r"[^\W_]+")
# The lookahead lets the engine skip the joiner group cheaply after most words (3x faster than without).
WORD = re.compile(r"[^\W_]+(?:(?=['\u2019.\-][^\W_])['\u2019.\-][^\W_]+)*")
# A whitespace-delimited token with at least one letter (lazy scan from the token's start: linear time).
ALPHA_TOKEN = re.compile(r"(?<!\S)\S*?[^\W\d_]\S*")
PARAGRAPH_BREAK = re.compile(r"\n[ \t\r\f\v]*\n\s*")


def count_alnum(text: str) -> int:
    """Number of letters and digits (any script, Han included): non-space, non-punctuation characters."""
    return sum(map(len, ALNUM_RUN.findall(text)))


def split_words(text: str) -> list[str]:
    """Words as the English filters count them (see module docstring)."""
    return WORD.findall(text)


def duplicate_stats(items: list[str]) -> tuple[int, int]:
    """(number of items that repeat an earlier item, characters in those repeats).

    The first occurrence is not counted, as in Gopher's duplicate line/paragraph fractions
    (Rae et al. 2021, appendix A.1.1) and datatrove's `find_duplicates`.
    """
    counts = Counter(items)
    repeats = len(items) - len(counts)
    if not repeats:
        return 0, 0
    return repeats, sum(len(item) * (n - 1) for item, n in counts.items() if n > 1)


def ngrams(words: list[str], n: int) -> list[tuple[str, ...]]:
    """All overlapping word n-grams, in order."""
    if n < 1 or len(words) < n:
        return []
    return list(zip(*(words[i:] for i in range(n))))


def top_ngram_char_fraction(words: list[str], n: int, total_chars: int) -> float:
    """Characters covered by the most frequent n-gram (times its count) over `total_chars`.

    Gopher's "top n-gram character fraction" (Rae et al. 2021, Table A1). An n-gram seen only once is no
    repetition, so that case is 0. Overlapping self-repeats ("a a a") can push the value above 1.
    """
    grams = ngrams(words, n)
    if not grams or total_chars <= 0:
        return 0.0
    gram, count = Counter(grams).most_common(1)[0]
    if count < 2:
        return 0.0
    return sum(map(len, gram)) * count / total_chars


def duplicate_ngram_char_fraction(words: list[str], lengths: np.ndarray, n: int, total_chars: int) -> float:
    """Characters of the words covered by any n-gram that occurs more than once, over `total_chars`.

    Gopher's "duplicate n-gram character fraction" (Rae et al. 2021, Table A1): every occurrence of a
    repeated n-gram counts (RedPajama-V2's `rp_doc_frac_chars_dupe_ngrams` reading), and a word covered by
    several overlapping repeats counts once, so the value is at most 1.
    """
    grams = ngrams(words, n)
    if not grams or total_chars <= 0:
        return 0.0
    counts = Counter(grams)
    if len(counts) == len(grams):
        return 0.0
    repeated = np.fromiter((counts[g] > 1 for g in grams), dtype=np.int8, count=len(grams))
    covered = np.convolve(repeated, np.ones(n, dtype=np.int8)) > 0   # length == len(words)
    return float(lengths[covered].sum()) / total_chars


class TextStats:
    """Lazily computed statistics of one text; each is computed at most once."""

    def __init__(self, text: str) -> None:
        self.text = text

    @cached_property
    def lines(self) -> list[str]:
        """Non-empty lines, stripped."""
        return [line for line in (raw.strip() for raw in self.text.splitlines()) if line]

    @cached_property
    def paragraphs(self) -> list[str]:
        """Non-empty blocks separated by blank lines, stripped."""
        return [p for p in (raw.strip() for raw in PARAGRAPH_BREAK.split(self.text)) if p]

    @cached_property
    def words(self) -> list[str]:
        return split_words(self.text)

    @cached_property
    def lower_words(self) -> list[str]:
        # One C-level lower() over the joined words; words never contain a space.
        return " ".join(self.words).lower().split(" ") if self.words else []

    @cached_property
    def word_lengths(self) -> np.ndarray:
        return np.fromiter(map(len, self.lower_words), dtype=np.int64, count=len(self.lower_words))

    @cached_property
    def word_chars(self) -> int:
        return int(self.word_lengths.sum())

    @cached_property
    def n_tokens(self) -> int:
        """Whitespace-delimited tokens (punctuation-only tokens included)."""
        return len(self.text.split())

    @cached_property
    def n_alpha_tokens(self) -> int:
        """Whitespace-delimited tokens with at least one letter."""
        return len(ALPHA_TOKEN.findall(self.text))


_last: tuple[str, TextStats] | None = None


def stats_for(text: str) -> TextStats:
    """The `TextStats` of `text`, shared by consecutive steps that see the very same string object.

    A one-entry cache keyed by identity (the entry holds a reference, so the id cannot be reused);
    replacing the tuple is atomic, so concurrent threads at worst recompute.
    """
    global _last
    cached = _last
    if cached is not None and cached[0] is text:
        return cached[1]
    stats = TextStats(text)
    _last = (text, stats)
    return stats
