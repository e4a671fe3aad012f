"""Gopher's quality and repetition filters for English (Rae et al. 2021, "Scaling Language Models:
Methods, Analysis & Insights from Training Gopher", appendix A.1.1 and Table A1).

Thresholds are the paper's. Where the paper leaves a detail open, the choice is named in the step's
docstring; datatrove's `GopherQualityFilter` / `GopherRepetitionFilter` were read as a second reference.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from cleaners.document import Document
from cleaners.filters.params import check_fraction, check_ngram_thresholds, check_non_negative, check_range
from cleaners.filters.text_stats import (duplicate_ngram_char_fraction, duplicate_stats, stats_for,
                                         top_ngram_char_fraction)
from cleaners.step import Filter, register

GOPHER_STOP_WORDS = ("the", "be", "to", "of", "and", "that", "have", "with")
# Line-start markers counted as bullet points (Gopher says "bullet point"; markdown's - and * included).
BULLETS = frozenset("•●○◦▪▫‣⁃∙·*-–—►▶➢➤✓✔")
ELLIPSES = ("...", "…")


@register("gopher_quality")
@dataclass(kw_only=True)
class GopherQuality(Filter):
    """Gopher quality filter (Rae et al. 2021, appendix A.1.1). Every threshold can be set to null to turn
    its rule off. Reasons, checked in this order:

    - `gopher-word-count`: fewer than `min_words` (50) or more than `max_words` (100,000) words.
    - `gopher-mean-word-length`: mean word length outside `min_mean_word_length`..`max_mean_word_length` (3..10).
    - `gopher-symbol-ratio`: '#' per word, or ellipses ("..." and "…") per word, above `max_symbol_word_ratio` (0.1).
    - `gopher-bullet-lines`: more than `max_bullet_lines_ratio` (90%) of lines start with a bullet.
    - `gopher-ellipsis-lines`: more than `max_ellipsis_lines_ratio` (30%) of lines end with an ellipsis.
    - `gopher-alpha-words`: fewer than `min_alpha_words_ratio` (80%) of whitespace tokens contain a letter.
    - `gopher-stop-words`: fewer than `min_stop_words` (2) occurrences of the, be, to, of, and, that, have,
      with (counted as occurrences, case-insensitive, as datatrove counts them).

    Lines are the non-empty lines (datatrove also counts blank ones, which dilutes both line ratios).
    """

    languages = ("en",)

    min_words: int | None = 50
    max_words: int | None = 100_000
    min_mean_word_length: float | None = 3
    max_mean_word_length: float | None = 10
    max_symbol_word_ratio: float | None = 0.1
    max_bullet_lines_ratio: float | None = 0.9
    max_ellipsis_lines_ratio: float | None = 0.3
    min_alpha_words_ratio: float | None = 0.8
    min_stop_words: int | None = 2
    stop_words: tuple[str, ...] = GOPHER_STOP_WORDS

    def __post_init__(self) -> None:
        step = "gopher_quality"
        for name in ("min_words", "max_words", "min_mean_word_length", "max_mean_word_length",
                     "max_symbol_word_ratio", "min_stop_words"):
            check_non_negative(step, name, getattr(self, name))
        for name in ("max_bullet_lines_ratio", "max_ellipsis_lines_ratio", "min_alpha_words_ratio"):
            check_fraction(step, name, getattr(self, name))
        check_range(step, "min_words", self.min_words, "max_words", self.max_words)
        check_range(step, "min_mean_word_length", self.min_mean_word_length,
                    "max_mean_word_length", self.max_mean_word_length)
        if isinstance(self.stop_words, str) or not all(isinstance(w, str) for w in self.stop_words):
            raise ValueError(f"{step}: stop_words must be a list of words, got {self.stop_words!r}")
        self._stop_set = frozenset(w.lower() for w in self.stop_words)

    def filter(self, doc: Document) -> str | None:
        stats = stats_for(doc.text)
        n_words = len(stats.words)
        if (self.min_words is not None and n_words < self.min_words) or (
            self.max_words is not None and n_words > self.max_words
        ):
            return "gopher-word-count"
        if n_words == 0:       # every rule below divides by the word count
            return "gopher-word-count"

        mean_length = stats.word_chars / n_words
        if (self.min_mean_word_length is not None and mean_length < self.min_mean_word_length) or (
            self.max_mean_word_length is not None and mean_length > self.max_mean_word_length
        ):
            return "gopher-mean-word-length"

        if self.max_symbol_word_ratio is not None:
            text = doc.text
            hashes = text.count("#")
            ellipses = text.count("...") + text.count("…")
            if max(hashes, ellipses) / n_words > self.max_symbol_word_ratio:
                return "gopher-symbol-ratio"

        lines = stats.lines
        if lines and self.max_bullet_lines_ratio is not None:
            bullets = sum(1 for line in lines if line[0] in BULLETS)
            if bullets / len(lines) > self.max_bullet_lines_ratio:
                return "gopher-bullet-lines"
        if lines and self.max_ellipsis_lines_ratio is not None:
            trailing = sum(1 for line in lines if line.endswith(ELLIPSES))
            if trailing / len(lines) > self.max_ellipsis_lines_ratio:
                return "gopher-ellipsis-lines"

        if self.min_alpha_words_ratio is not None and stats.n_tokens:
            if stats.n_alpha_tokens / stats.n_tokens < self.min_alpha_words_ratio:
                return "gopher-alpha-words"

        if self.min_stop_words is not None:
            stop = self._stop_set
            if sum(1 for w in stats.lower_words if w in stop) < self.min_stop_words:
                return "gopher-stop-words"
        return None


def _default_top_ngrams() -> dict[int, float]:
    return {2: 0.20, 3: 0.18, 4: 0.16}


def _default_dup_ngrams() -> dict[int, float]:
    return {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10}


@register("gopher_repetition")
@dataclass(kw_only=True)
class GopherRepetition(Filter):
    """Gopher repetition filter (Rae et al. 2021, appendix A.1.1, Table A1 thresholds). Reasons:

    - `gopher-dup-line-frac`: lines repeating an earlier line / lines > `max_dup_line_frac` (0.30).
    - `gopher-dup-para-frac`: same for paragraphs (blocks split on blank lines) > `max_dup_para_frac` (0.30).
    - `gopher-dup-line-char-frac`: characters in repeated lines / characters in lines > `max_dup_line_char_frac` (0.20).
    - `gopher-dup-para-char-frac`: same for paragraphs > `max_dup_para_char_frac` (0.20).
    - `gopher-top-{n}gram`: characters in the most frequent n-gram > `top_ngram_char_frac[n]`
      ({2: 0.20, 3: 0.18, 4: 0.16}).
    - `gopher-dup-{n}gram`: characters in repeated n-grams > `dup_ngram_char_frac[n]`
      ({5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10}).

    N-grams are over lowercased words (punctuation dropped) and character fractions are over the
    characters of those words, as RedPajama-V2's quality signals compute them; the first occurrence of a
    repeated line/paragraph is not counted, every occurrence of a repeated n-gram is (see text_stats).
    """

    languages = ("en",)

    max_dup_line_frac: float | None = 0.30
    max_dup_para_frac: float | None = 0.30
    max_dup_line_char_frac: float | None = 0.20
    max_dup_para_char_frac: float | None = 0.20
    top_ngram_char_frac: dict[int, float] | None = field(default_factory=_default_top_ngrams)
    dup_ngram_char_frac: dict[int, float] | None = field(default_factory=_default_dup_ngrams)

    def __post_init__(self) -> None:
        step = "gopher_repetition"
        for name in ("max_dup_line_frac", "max_dup_para_frac", "max_dup_line_char_frac", "max_dup_para_char_frac"):
            check_fraction(step, name, getattr(self, name))
        self.top_ngram_char_frac = check_ngram_thresholds(step, "top_ngram_char_frac", self.top_ngram_char_frac)
        self.dup_ngram_char_frac = check_ngram_thresholds(step, "dup_ngram_char_frac", self.dup_ngram_char_frac)

    def filter(self, doc: Document) -> str | None:
        stats = stats_for(doc.text)
        reason = self._block_repetition(stats.paragraphs, "para", self.max_dup_para_frac, self.max_dup_para_char_frac)
        if reason:
            return reason
        reason = self._block_repetition(stats.lines, "line", self.max_dup_line_frac, self.max_dup_line_char_frac)
        if reason:
            return reason

        words, total = stats.lower_words, stats.word_chars
        if not total:
            return None
        for n, limit in self.top_ngram_char_frac.items():
            if top_ngram_char_fraction(words, n, total) > limit:
                return f"gopher-top-{n}gram"

        # A word covered by a repeated (n+1)-gram is covered by a repeated n-gram, so the fraction can only
        # fall as n grows: once it is at or under every remaining limit, no larger n can trip.
        dup_items = list(self.dup_ngram_char_frac.items())
        for i, (n, limit) in enumerate(dup_items):
            frac = duplicate_ngram_char_fraction(words, stats.word_lengths, n, total)
            if frac > limit:
                return f"gopher-dup-{n}gram"
            if frac <= min(lim for _, lim in dup_items[i:]):
                break
        return None

    @staticmethod
    def _block_repetition(blocks: list[str], kind: str, max_frac: float | None,
                          max_char_frac: float | None) -> str | None:
        if not blocks or (max_frac is None and max_char_frac is None):
            return None
        repeats, repeat_chars = duplicate_stats(blocks)
        if max_frac is not None and repeats / len(blocks) > max_frac:
            return f"gopher-dup-{kind}-frac"
        if max_char_frac is not None and repeat_chars / sum(map(len, blocks)) > max_char_frac:
            return f"gopher-dup-{kind}-char-frac"
        return None
