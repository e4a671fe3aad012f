"""FineWeb's custom filters at their thresholds."""
from __future__ import annotations

import pytest

from cleaners.document import Document
from cleaners.filters.fineweb import FineWeb


def doc(text: str) -> Document:
    return Document(id="t", text=text, lang="en")


def long_line(i: int, end: str = ".") -> str:
    """A distinct line of 9 words, well over 30 characters."""
    return f"Line number {i} tells a story about the river valley" + end


def test_line_punctuation_ratio():
    lines = [long_line(i, "." if i < 3 else "") for i in range(25)]            # 3/25 = 0.12
    assert FineWeb().filter(doc("\n".join(lines))) == "fineweb-line-punct"
    lines = [long_line(i, "." if i < 4 else "") for i in range(25)]            # 4/25 = 0.16
    assert FineWeb().filter(doc("\n".join(lines))) is None


@pytest.mark.parametrize("end", ["!", "?", '"', "'", "\u201d"])
def test_line_end_marks(end):
    lines = [long_line(i, end if i < 4 else "") for i in range(25)]
    assert FineWeb().filter(doc("\n".join(lines))) is None


def test_short_line_ratio():
    def text(n_short: int) -> str:
        short = [f"Item {i} is short." for i in range(n_short)]               # under 30 characters
        return "\n".join(short + [long_line(i) for i in range(100 - n_short)])
    assert FineWeb().filter(doc(text(67))) == "fineweb-short-lines"
    assert FineWeb().filter(doc(text(66))) is None


def test_short_line_length_is_inclusive():
    step = FineWeb(max_short_line_ratio=0.5)
    assert step.filter(doc("a" * 29 + ".\n" + long_line(1))) == "fineweb-short-lines"   # 30 chars is short
    assert step.filter(doc("a" * 30 + ".\n" + long_line(1))) is None                    # 31 is not


def test_duplicated_line_characters():
    repeated = "This sentence is repeated on the page twice!"
    uniques = [f"Unique sentence {i:02d} is also forty-four chars." for i in range(9)]
    assert all(len(u) == len(repeated) for u in uniques)
    assert FineWeb().filter(doc("\n".join(uniques + [repeated, repeated]))) is None            # 44/484 < 0.1
    assert FineWeb().filter(doc("\n".join(uniques[:8] + [repeated, repeated]))) == "fineweb-dup-chars"  # 44/440


def test_list_ratio():
    def text(n_lines: int) -> str:
        return "\n".join(f"Extraordinarily comprehensive documentation{i}." for i in range(n_lines))
    assert FineWeb().filter(doc(text(10))) is None                  # 9 newlines / 30 words = 0.3
    assert FineWeb().filter(doc(text(11))) == "fineweb-list-ratio"  # 10 / 33


def test_empty_and_params():
    assert FineWeb().filter(doc(" \n\n ")) == "fineweb-empty"
    assert FineWeb(min_line_punct_ratio=None, max_short_line_ratio=None).filter(doc("menu of the site\nhome")) is None
    with pytest.raises(ValueError):
        FineWeb(max_short_line_ratio=2)
    with pytest.raises(ValueError):
        FineWeb(short_line_length=None)
