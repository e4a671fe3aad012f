"""CogView sample layout `[ROI1] text [BASE] [BOI1] image codes [EOI1]` in the shared id space."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from tokenizer.cogview import cogview_sample, split_cogview_sample
from tokenizer.vocab import Vocab

VOCAB = Vocab.build(10, image_codes=8)  # text 0..9, specials 10..25 ([ROI1]=19 .. [EOI1]=22), codes at 26..33


def test_exact_layout():
    assert [VOCAB.token_id(t) for t in ("[ROI1]", "[BASE]", "[BOI1]", "[EOI1]")] == [19, 20, 21, 22]
    assert cogview_sample([3, 4], [0, 7, 2], VOCAB) == [19, 3, 4, 20, 21, 26, 33, 28, 22]


def test_grid_arrays_are_flattened_row_major():
    grid = np.array([[1, 2], [3, 4]])
    assert cogview_sample([5], grid, VOCAB) == [19, 5, 20, 21, 27, 28, 29, 30, 22]
    assert cogview_sample(np.array([5]), [np.int64(0)], VOCAB, expected_codes=1) == [19, 5, 20, 21, 26, 22]
    torch = pytest.importorskip("torch")
    assert cogview_sample([5], torch.tensor([[1, 2], [3, 4]]), VOCAB) == [19, 5, 20, 21, 27, 28, 29, 30, 22]


@settings(derandomize=True, max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 9), min_size=1, max_size=20), st.lists(st.integers(0, 7), min_size=1, max_size=40))
def test_round_trip(text, codes):
    ids = cogview_sample(text, codes, VOCAB)
    assert len(ids) == len(text) + len(codes) + 4
    assert split_cogview_sample(ids, VOCAB) == (text, codes)


@pytest.mark.parametrize("text, codes, kwargs, message", [
    ([1], [8], {}, "image code 8 outside 0..7"),
    ([1], [-1], {}, "image code -1 outside 0..7"),
    ([1], [], {}, "no image codes"),
    ([], [1], {}, "empty text"),
    ([1, 19], [1], {}, "text id 19 is not a text piece"),
    ([1], [1.0], {}, "image codes must be integers, got float"),
    ([1], [True], {}, "image codes must be integers, got bool"),
    ([1], [1, 2, 3], {"expected_codes": 4}, "3 image codes, expected 4"),
])
def test_build_errors(text, codes, kwargs, message):
    with pytest.raises(ValueError, match=message):
        cogview_sample(text, codes, VOCAB, **kwargs)


@pytest.mark.parametrize("ids, message", [
    ([19, 3, 20, 21, 26], "too short"),
    ([18, 3, 20, 21, 26, 22], "does not start with \\[ROI1\\]"),
    ([19, 3, 20, 21, 26, 27], "does not end with \\[EOI1\\]"),
    ([19, 3, 4, 21, 26, 22], "no \\[BASE\\]"),
    ([19, 3, 20, 26, 27, 22], "\\[BASE\\] is not followed by \\[BOI1\\]"),
    ([19, 20, 21, 26, 27, 22], "empty text"),
    ([19, 3, 4, 20, 21, 22], "no image codes"),
    ([19, 3, 26, 20, 21, 26, 22], "id 26 in the text part is not a text piece"),
    ([19, 3, 20, 21, 26, 5, 22], "id 5 in the image part is not an image code"),
    ([19, 3, 20, 21, 26, 34, 22], "id 34 in the image part is not an image code"),
])
def test_split_errors(ids, message):
    with pytest.raises(ValueError, match=message):
        split_cogview_sample(ids, VOCAB)


def test_default_vocab_full_size_sample():
    vocab = Vocab.build(50000)
    codes = list(range(0, 8192, 8))  # 1024 codes: a 32x32 grid
    ids = cogview_sample([7, 8, 9], codes, vocab, expected_codes=1024)
    assert len(ids) == 3 + 1024 + 4 and ids[6] == vocab.image_code_offset and ids[-2] == vocab.total_size - 8
    assert split_cogview_sample(ids, vocab) == ([7, 8, 9], codes)
