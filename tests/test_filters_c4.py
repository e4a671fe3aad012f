"""C4 line cleaning (exact output) and page drops."""
from __future__ import annotations

import pytest

from cleaners.document import Document
from cleaners.filters.c4 import C4, count_sentences


def doc(text: str) -> Document:
    return Document(id="t", text=text, lang="en", url="https://example.org/a")


GOOD = [
    "The council approved the new budget on Tuesday evening.",
    "Residents asked whether the library would stay open late.",
    "The mayor said the answer depends on next year's tax revenue!",
]


def test_line_cleaning_exact_output():
    text = "\n".join([
        "Home | About | Contact",                                      # no end punctuation
        GOOD[0],
        "Too short.",                                                   # under 5 words
        "Please enable JavaScript to view the comments.",              # javascript
        "We use cookies to improve your visit here.",                  # policy phrase
        "  The study was published in 2019 [1] and widely cited [citation needed].  ",
        "And so the story goes on and on...",                          # ellipsis
        "",
        GOOD[1],
        '"Quoted lines end in a quote mark too," she said to us."',
        "Read our Privacy Policy before you sign up today.",
        GOOD[2],
    ])
    result = C4().apply(doc(text))
    assert isinstance(result, Document)
    assert result.text == "\n".join([
        GOOD[0],
        "The study was published in 2019  and widely cited .",
        GOOD[1],
        '"Quoted lines end in a quote mark too," she said to us."',
        GOOD[2],
    ])
    assert result.url == "https://example.org/a"


def test_clean_page_is_returned_unchanged():
    page = doc("\n".join(GOOD))
    assert C4().apply(page) is page


def test_sentence_minimum():
    assert C4().apply(doc("\n".join(GOOD[:2]))) == "c4-too-few-sentences"
    assert isinstance(C4().apply(doc("\n".join(GOOD))), Document)
    one_line = "We met at noon today. Then we walked home slowly. It rained on the way!"
    assert isinstance(C4().apply(doc(one_line)), Document)
    assert C4().apply(doc("Nothing here ends a sentence\nnor here")) == "c4-too-few-sentences"
    assert C4().apply(doc("")) == "c4-too-few-sentences"


def test_sentence_counting_skips_abbreviations_and_decimals():
    assert count_sentences("Dr. Smith met Mr. Jones in St. Louis at 3.5 p.m. on Friday.") == 1
    assert count_sentences('He left. "Why?" she asked. Nobody knew!') == 4
    assert count_sentences("No end mark") == 1
    assert count_sentences("") == 0


def test_min_words_per_line_near_miss():
    four = "Four words line here."
    five = "Five words in this line."
    assert C4(min_sentences=1).apply(doc(four)) == "c4-too-few-sentences"
    assert C4(min_sentences=1).apply(doc(five)).text == five


def test_lorem_ipsum_and_curly_bracket_drop_the_page():
    assert C4().apply(doc("\n".join(GOOD + ["Lorem ipsum dolor sit amet, consectetur elit."]))) == "c4-lorem-ipsum"
    assert C4().apply(doc("\n".join(GOOD + ["Use the form {name} in your template strings."]))) == "c4-curly-bracket"
    # as in c4_utils, only lines that would be kept are checked: a code line without end punctuation just goes
    assert C4().apply(doc("\n".join(GOOD + ["function f() {"]))).text == "\n".join(GOOD)


def test_overlong_word_drops_the_line():
    long_line = "This line carries a " + "x" * 1001 + " word."
    ok_line = "This line carries a " + "x" * 1000 + " word."
    assert C4().apply(doc("\n".join(GOOD + [long_line]))).text == "\n".join(GOOD)
    assert C4().apply(doc("\n".join(GOOD + [ok_line]))).text == "\n".join(GOOD + [ok_line])


def test_switches_turn_rules_off():
    text = "\n".join(GOOD + ["A line without a final mark", "Lorem ipsum dolor sit amet, consectetur elit.",
                             "Enable JavaScript for the full site experience."])
    loose = C4(filter_no_terminal_punct=False, filter_lorem_ipsum=False, filter_javascript=False)
    assert loose.apply(doc(text)).text == text
    assert (C4(remove_citations=False).apply(doc("\n".join(GOOD + ["Cited here in the text [2]."])))
            .text.endswith("[2]."))


def test_bad_params_raise():
    with pytest.raises(ValueError):
        C4(min_sentences=-1)
    with pytest.raises(ValueError):
        C4(min_words_per_line=None)
