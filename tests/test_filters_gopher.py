"""Gopher quality and repetition rules: each one tripped exactly at its threshold's far side, and a near miss."""
from __future__ import annotations

import pickle

import pytest

from cleaners.document import Document
from cleaners.filters.gopher import GopherQuality, GopherRepetition


def doc(text: str) -> Document:
    return Document(id="t", text=text, lang="en")


def filler(i: int) -> str:
    """A distinct 5-letter word that is no stop word: 'qaaaa', 'qaaab', ..."""
    letters = []
    for _ in range(4):
        i, r = divmod(i, 26)
        letters.append(chr(97 + r))
    return "q" + "".join(reversed(letters))


def fillers(n_chars: int, start: int = 0) -> list[str]:
    """Distinct filler words whose lengths sum to exactly `n_chars` (>= 5)."""
    count, rest = divmod(n_chars, 5)
    words = [filler(start + i) for i in range(count)]
    words[-1] += "z" * rest
    return words


def words_text(n_words: int) -> str:
    """A text of exactly `n_words` words with two stop words: passes every quality rule from 50 words on."""
    return " ".join(["The", "and"] + [filler(i) for i in range(n_words - 2)]) + "."


# ---- gopher_quality ----------------------------------------------------------------------------------

def test_word_count_bounds():
    quality = GopherQuality()
    assert quality.filter(doc(words_text(49))) == "gopher-word-count"
    assert quality.filter(doc(words_text(50))) is None


def test_word_count_upper_bound():
    quality = GopherQuality()
    assert quality.filter(doc("the and " + "word " * 99_998)) != "gopher-word-count"
    assert quality.filter(doc("the and " + "word " * 99_999)) == "gopher-word-count"


def test_mean_word_length_bounds():
    quality = GopherQuality()
    assert quality.filter(doc(" ".join(["to"] * 25 + ["have"] * 25))) is None              # mean 3.0
    assert quality.filter(doc(" ".join(["to"] * 26 + ["have"] * 24))) == "gopher-mean-word-length"
    long_words = ["the", "and"] + [filler(i) + "x" * 5 for i in range(46)] + [filler(99) + "x" * 12] * 2
    assert quality.filter(doc(" ".join(long_words))) is None                                # mean 10.0
    long_words[-1] += "x"
    assert quality.filter(doc(" ".join(long_words))) == "gopher-mean-word-length"


def mark_words(marker: str, count: int, before: bool) -> str:
    """words_text(50) with `marker` glued to `count` of its words (the word count stays 50)."""
    words = words_text(50)[:-1].split()
    return " ".join(((marker + w) if before else (w + marker)) if 2 <= i < 2 + count else w
                    for i, w in enumerate(words))


def test_hash_to_word_ratio():
    quality = GopherQuality()
    assert quality.filter(doc(mark_words("#", 5, before=True))) is None                 # 5/50 = 0.1
    assert quality.filter(doc(mark_words("#", 6, before=True))) == "gopher-symbol-ratio"


@pytest.mark.parametrize("ellipsis", ["...", "…"])
def test_ellipsis_to_word_ratio(ellipsis):
    quality = GopherQuality()
    assert quality.filter(doc(mark_words(ellipsis, 5, before=False))) is None
    assert quality.filter(doc(mark_words(ellipsis, 6, before=False))) == "gopher-symbol-ratio"


def lines_text(n_lines: int, prefix_first: int = 0, prefix: str = "", suffix_first: int = 0, suffix: str = ".") -> str:
    lines = []
    for i in range(n_lines):
        body = "the and " + " ".join(filler(10 * i + j) for j in range(4))
        lines.append((prefix if i < prefix_first else "") + body + (suffix if i < suffix_first else "."))
    return "\n".join(lines)


def test_bullet_lines():
    quality = GopherQuality()
    assert quality.filter(doc(lines_text(10, prefix_first=9, prefix="• "))) is None        # 90%
    assert quality.filter(doc(lines_text(10, prefix_first=10, prefix="- "))) == "gopher-bullet-lines"


def test_ellipsis_lines():
    quality = GopherQuality()
    assert quality.filter(doc(lines_text(10, suffix_first=3, suffix="..."))) is None       # 30%
    assert quality.filter(doc(lines_text(10, suffix_first=4, suffix="…"))) == "gopher-ellipsis-lines"


def test_alpha_words():
    quality = GopherQuality()
    alpha = ["the", "and"] + [filler(i) for i in range(38)]
    assert quality.filter(doc(" ".join(alpha + ["2024"] * 10))) is None                     # 40/50
    assert quality.filter(doc(" ".join(alpha + ["2024"] * 10 + ["—"]))) == "gopher-alpha-words"  # 40/51


def test_stop_words():
    quality = GopherQuality()
    base = [filler(i) for i in range(50)]
    assert quality.filter(doc(" ".join(base + ["The"]))) == "gopher-stop-words"
    assert quality.filter(doc(" ".join(base + ["The", "with"]))) is None


def test_rules_can_be_turned_off_and_bad_params_raise():
    assert GopherQuality(min_words=None).filter(doc(words_text(10))) is None
    with pytest.raises(ValueError):
        GopherQuality(min_words=100, max_words=10)
    with pytest.raises(ValueError):
        GopherQuality(max_bullet_lines_ratio=1.5)
    with pytest.raises(ValueError):
        GopherQuality(stop_words="the")


def test_empty_and_whitespace_documents_are_dropped_not_crashed():
    assert GopherQuality().filter(doc("")) == "gopher-word-count"
    assert GopherQuality(min_words=None).filter(doc("  \n ... ")) == "gopher-word-count"


# ---- gopher_repetition -------------------------------------------------------------------------------

def unique_line(i: int) -> str:
    return " ".join(filler(100 * i + j) for j in range(8)) + "."


def lines_only() -> GopherRepetition:
    """Line/paragraph rules alone: repeated short lines also repeat n-grams across line breaks."""
    return GopherRepetition(top_ngram_char_frac=None, dup_ngram_char_frac=None)


def test_duplicate_line_fraction():
    rep = lines_only()
    near = [unique_line(i) for i in range(6)] + ["Share this."] * 4     # 3 repeats of 10 lines
    over = [unique_line(i) for i in range(5)] + ["Share this."] * 5     # 4 repeats of 10 lines
    assert rep.filter(doc("\n".join(near))) is None
    assert rep.filter(doc("\n".join(over))) == "gopher-dup-line-frac"


def test_duplicate_line_char_fraction():
    rep = lines_only()
    line = "x" * 49 + "."                                        # every line is 50 characters
    uniques = ["u" * 40 + f"{i:09d}." for i in range(7)]
    assert all(len(u) == 50 for u in uniques)
    assert rep.filter(doc("\n".join(uniques + [line] * 3))) is None                 # 100/500 = 0.2
    assert rep.filter(doc("\n".join(uniques[:6] + [line] * 3))) == "gopher-dup-line-char-frac"  # 100/450


def test_duplicate_paragraph_rules():
    rep = lines_only()
    near = [unique_line(i) for i in range(6)] + ["Read more here."] * 4
    over = [unique_line(i) for i in range(5)] + ["Read more here."] * 5
    assert rep.filter(doc("\n\n".join(near))) is None
    assert rep.filter(doc("\n\n".join(over))) == "gopher-dup-para-frac"
    # one long paragraph repeated once: 1 of 4 paragraphs, but over 20% of the characters
    big = "\n".join(unique_line(50 + i) for i in range(3))
    paragraphs = [unique_line(1), unique_line(2), big, big]
    assert rep.filter(doc("\n\n".join(paragraphs))) == "gopher-dup-para-char-frac"


def interleave(gram: list[str], times: int, filler_chars: int) -> str:
    """`gram` repeated `times`, each occurrence followed by distinct filler words (total filler characters exact)."""
    pool = fillers(filler_chars)
    per, extra = divmod(len(pool), times)
    words, k = [], 0
    for t in range(times):
        take = per + (1 if t < extra else 0)
        words += gram + pool[k:k + take]
        k += take
    return " ".join(words)


def test_top_2gram_fraction():
    rep = GopherRepetition()
    assert rep.filter(doc(interleave(["xx", "yy"], 5, 80))) is None                   # 20/100
    assert rep.filter(doc(interleave(["xx", "yy"], 6, 80))) == "gopher-top-2gram"     # 24/104


def test_top_3gram_fraction():
    rep = GopherRepetition()
    assert rep.filter(doc(interleave(["aa", "bb", "cc"], 3, 82))) is None              # 18/100
    assert rep.filter(doc(interleave(["aa", "bb", "cc"], 3, 80))) == "gopher-top-3gram"  # 18/98


def test_duplicate_5gram_fraction():
    rep = GopherRepetition()
    gram = ["aaa", "bbb", "ccc", "ddd", "eee"]                  # 15 characters, twice = 30
    assert rep.filter(doc(interleave(gram, 2, 170))) is None                          # 30/200
    assert rep.filter(doc(interleave(gram, 2, 169))) == "gopher-dup-5gram"            # 30/199


def test_duplicate_10gram_fraction_is_reached_past_the_early_exit():
    rep = GopherRepetition()
    gram = [c * 3 for c in "abcdefghij"]                        # 30 characters, twice = 60
    assert rep.filter(doc(interleave(gram, 2, 540))) is None                          # 60/600 = 0.10
    assert rep.filter(doc(interleave(gram, 2, 511))) == "gopher-dup-10gram"           # 60/571 = 0.105


def test_repetition_params_from_yaml_and_pickling():
    rep = GopherRepetition(top_ngram_char_frac={"2": 0.5}, dup_ngram_char_frac=None)
    assert rep.top_ngram_char_frac == {2: 0.5} and rep.dup_ngram_char_frac == {}
    assert pickle.loads(pickle.dumps(rep)) == rep
    with pytest.raises(ValueError):
        GopherRepetition(top_ngram_char_frac={"two": 0.2})
    with pytest.raises(ValueError):
        GopherRepetition(max_dup_line_frac=-0.1)
    assert GopherRepetition().filter(doc("")) is None
