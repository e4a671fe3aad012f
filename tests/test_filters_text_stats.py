"""Shared text statistics: word splitting, Han counts, duplicates and n-gram repetition."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cleaners.filters.text_stats import (
    TextStats,
    count_alnum,
    count_han,
    duplicate_ngram_char_fraction,
    duplicate_stats,
    ngrams,
    split_words,
    stats_for,
    top_ngram_char_fraction,
)


def test_split_words_keeps_inner_joiners_and_drops_punctuation():
    assert split_words("Don't e-mail me at 3.14, U.S. -- ok?! x_y") == [
        "Don't", "e-mail", "me", "at", "3.14", "U.S", "ok", "x", "y"]
    assert split_words("... --- !!!") == []


def test_count_han_and_alnum():
    text = "WuDao 语料库，2021年发布！𠀀"  # the last one is a CJK Extension B character
    assert count_han(text) == 7          # 语 料 库 年 发 布 𠀀
    assert count_alnum(text) == 5 + 7 + 4  # WuDao + Han + 2021


def test_duplicate_stats_counts_repeats_not_first_occurrences():
    assert duplicate_stats(["aa", "b", "aa", "aa", "cc"]) == (2, 4)
    assert duplicate_stats(["x", "y"]) == (0, 0)
    assert duplicate_stats([]) == (0, 0)


def test_ngrams():
    assert ngrams(["a", "b", "c"], 2) == [("a", "b"), ("b", "c")]
    assert ngrams(["a"], 2) == []


def test_top_ngram_fraction_exact():
    words = ["ab", "cd", "ab", "cd", "ef", "gh"]
    assert top_ngram_char_fraction(words, 2, 12) == pytest.approx(8 / 12)
    # an n-gram seen once is not repetition
    assert top_ngram_char_fraction(["ab", "cd", "ef"], 2, 6) == 0.0


def test_duplicate_ngram_fraction_counts_every_occurrence_once():
    words = list("abcdexabcdey")
    lengths = np.ones(len(words), dtype=np.int64)
    assert duplicate_ngram_char_fraction(words, lengths, 5, len(words)) == pytest.approx(10 / 12)
    assert duplicate_ngram_char_fraction(words, lengths, 6, len(words)) == 0.0
    # overlapping self-repeats never count a word twice
    words = ["a"] * 8
    assert duplicate_ngram_char_fraction(words, np.ones(8, dtype=np.int64), 5, 8) == 1.0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(["a", "bb", "ccc", "dd"]), max_size=40), st.integers(min_value=1, max_value=6))
def test_duplicate_ngram_fraction_is_a_fraction_and_falls_with_n(words, n):
    lengths = np.fromiter(map(len, words), dtype=np.int64, count=len(words))
    total = int(lengths.sum())
    frac_n = duplicate_ngram_char_fraction(words, lengths, n, total)
    frac_next = duplicate_ngram_char_fraction(words, lengths, n + 1, total)
    assert 0.0 <= frac_next <= frac_n <= 1.0


def test_text_stats_lines_paragraphs_tokens():
    stats = TextStats("  First line.\n\n  \nSecond line -- 42\nThird\n")
    assert stats.lines == ["First line.", "Second line -- 42", "Third"]
    assert stats.paragraphs == ["First line.", "Second line -- 42\nThird"]
    assert stats.n_tokens == 7
    assert stats.n_alpha_tokens == 5            # "--" and "42" have no letter
    assert stats.lower_words == ["first", "line", "second", "line", "42", "third"]
    assert stats.word_chars == 5 + 4 + 6 + 4 + 2 + 5


def test_stats_for_is_shared_for_the_same_string_only():
    text = "one two three"
    assert stats_for(text) is stats_for(text)
    other = "".join(["one two", " three"])      # equal but a different object
    assert stats_for(other) is not stats_for(text)
