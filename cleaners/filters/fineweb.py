"""FineWeb's custom quality filters for English (Penedo et al. 2024, "The FineWeb Datasets: Decanting the
Web for the Finest Text Data at Scale", section 3.6; datatrove `FineWebQualityFilter`)."""
from __future__ import annotations

from dataclasses import dataclass

from cleaners.document import Document
from cleaners.filters.params import check_fraction, check_non_negative
from cleaners.filters.text_stats import duplicate_stats, stats_for
from cleaners.step import Filter, register

# datatrove's original stop characters (. ' " ! ?) plus the typographic closing quotes.
LINE_END_PUNCTUATION = (".", "'", '"', "!", "?", "\u201d", "\u2019")


@register("fineweb")
@dataclass(kw_only=True)
class FineWeb(Filter):
    """FineWeb's three custom filters and datatrove's list filter, over the non-empty stripped lines:

    - `fineweb-empty`: no non-empty line.
    - `fineweb-line-punct`: lines ending in . ' " ! ? / lines <= `min_line_punct_ratio` (0.12; paper's "≤ 0.12").
    - `fineweb-short-lines`: lines of at most `short_line_length` (30) characters / lines >=
      `max_short_line_ratio` (0.67).
    - `fineweb-dup-chars`: characters in lines that repeat an earlier line / characters in lines >=
      `max_dup_line_char_ratio` (0.1, the paper; datatrove's default is 0.01).
    - `fineweb-list-ratio`: newlines / words > `max_newline_word_ratio` (0.3; datatrove only, not in the paper).

    Each threshold can be set to null to turn its rule off.
    """

    languages = ("en",)

    min_line_punct_ratio: float | None = 0.12
    short_line_length: int = 30
    max_short_line_ratio: float | None = 0.67
    max_dup_line_char_ratio: float | None = 0.1
    max_newline_word_ratio: float | None = 0.3

    def __post_init__(self) -> None:
        for name in ("min_line_punct_ratio", "max_short_line_ratio", "max_dup_line_char_ratio"):
            check_fraction("fineweb", name, getattr(self, name))
        check_non_negative("fineweb", "max_newline_word_ratio", self.max_newline_word_ratio)
        check_non_negative("fineweb", "short_line_length", self.short_line_length, allow_none=False)

    def filter(self, doc: Document) -> str | None:
        stats = stats_for(doc.text)
        lines = stats.lines
        if not lines:
            return "fineweb-empty"
        n_lines = len(lines)
        if self.min_line_punct_ratio is not None:
            ended = sum(1 for line in lines if line.endswith(LINE_END_PUNCTUATION))
            if ended / n_lines <= self.min_line_punct_ratio:
                return "fineweb-line-punct"
        if self.max_short_line_ratio is not None:
            short = sum(1 for line in lines if len(line) <= self.short_line_length)
            if short / n_lines >= self.max_short_line_ratio:
                return "fineweb-short-lines"
        if self.max_dup_line_char_ratio is not None:
            _, repeat_chars = duplicate_stats(lines)
            if repeat_chars / sum(map(len, lines)) >= self.max_dup_line_char_ratio:
                return "fineweb-dup-chars"
        if self.max_newline_word_ratio is not None:
            n_words = len(stats.words)
            if not n_words or doc.text.count("\n") / n_words > self.max_newline_word_ratio:
                return "fineweb-list-ratio"
        return None
