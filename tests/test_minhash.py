"""cleaners.minhash: shingles, MinHash signatures, LSH banding parameters and bucket keys."""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import random
import subprocess
import sys
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from datasketch.lsh import _optimal_param as datasketch_optimal_param
from hypothesis import given, settings, strategies as st

from cleaners.minhash import (
    BATCH_SIZE,
    EMPTY_HASH,
    MinHasher,
    band_keys,
    collision_probability,
    estimate_jaccard,
    exact_jaccard,
    is_empty_signature,
    optimal_bands,
    shingles,
    similarity_at_probability,
    threshold_curve,
    uses_character_ngrams,
)

REPO = Path(__file__).resolve().parents[1]
ZH = "北京是中国的首都，也是一座历史文化名城。"
EN = "The quick brown fox jumps over the lazy dog, then naps under the old oak tree near the river."


def utf8(*parts: str) -> list[bytes]:
    return [part.encode() for part in parts]


# ---------------------------------------------------------------- shingles


def test_english_word_five_grams_after_normalization():
    assert shingles("Hello, World! This is a test of the shingles.", "en") == utf8(
        "hello world this is a", "world this is a test", "this is a test of", "is a test of the",
        "a test of the shingles")


def test_chinese_character_five_grams_without_punctuation():
    assert shingles(ZH, "zh") == utf8(
        "北京是中国", "京是中国的", "是中国的首", "中国的首都", "国的首都也", "的首都也是", "首都也是一",
        "都也是一座", "也是一座历", "是一座历史", "一座历史文", "座历史文化", "历史文化名", "史文化名城")


def test_chinese_whitespace_and_punctuation_removed_before_ngrams():
    assert shingles("北京 是\n中国，的首都！", "zh", ngram_zh=3) == utf8(
        "北京是", "京是中", "是中国", "中国的", "国的首", "的首都")


def test_nfkc_lowercase_and_punctuation_fold_variants_together():
    assert shingles("ＡＢＣ，ＤＥＦ！  Ghi--jkl\t\tMNO", "en") == shingles("abc def ghi jkl mno", "en") == [
        b"abc def ghi jkl mno"]
    assert shingles("foo\u200bbar baz", "en", ngram_en=2) == [b"foobar baz"]     # zero-width space deleted


def test_repeated_shingles_listed_once_in_first_occurrence_order():
    assert shingles("a b a b a b c", "en", ngram_en=2) == utf8("a b", "b a", "b c")


def test_short_texts_give_one_shingle_of_the_whole_text():
    assert shingles("你好，世界", "zh") == utf8("你好世界")
    assert shingles("Hello,   world!", "en") == [b"hello world"]


def test_punctuation_only_text_still_has_a_shingle_and_blank_text_has_none():
    assert shingles("！！！", "zh") == [b"!!!"]
    assert shingles("...", "en") == [b"..."]
    for blank in ("", "   \n\t", "\u3000", None):
        assert shingles(blank, "en") == [] and shingles(blank, "zh") == []


@pytest.mark.parametrize("lang, text, expected", [
    ("zh", "abc", True), ("zh-Hans", "abc", True), ("cmn_Hani", "abc", True), ("ja", "abc", True),
    ("th", "abc", True), ("en", "北京是中国的首都", False), ("ko", "서울은 한국의 수도", False),
    ("", "北京是中国的首都 ok", True), ("other", "北京是中国的首都", True), (None, "plain english words", False),
    ("und", "", False),
])
def test_character_ngrams_for_unspaced_languages_and_script_for_unknown(lang, text, expected):
    assert uses_character_ngrams(lang, text) is expected


def test_unknown_language_is_shingled_by_its_script():
    assert shingles(ZH, "") == shingles(ZH, "zh")
    assert shingles(EN, "other") == shingles(EN, "en")


def test_bad_input_rejected():
    with pytest.raises(TypeError):
        shingles(b"bytes are not text", "en")
    with pytest.raises(ValueError):
        shingles("text", "en", ngram_en=0)
    with pytest.raises(ValueError):
        MinHasher(num_perm=0)
    with pytest.raises(ValueError):
        MinHasher(seed=-1)
    with pytest.raises(ValueError):
        MinHasher().signatures(["a", "b"], ["en"])


def test_lone_surrogates_do_not_break_shingling():
    assert shingles("a\ud800b c", "en") == [b"ab c"]
    assert MinHasher().signature("x\udfffy " * 10, "en").shape == (128,)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40), st.sampled_from(["en", "zh", ""]))
def test_shingles_empty_exactly_for_blank_text(text, lang):
    blank = not unicodedata.normalize("NFKC", text).lower().split()
    assert (shingles(text, lang) == []) is blank


# ---------------------------------------------------------------- signatures


def test_signature_equals_rensa_minhash_of_the_shingles():
    """Our batched signature is rensa's RMinHash over shingles(text), one object per text: same values, uint32."""
    import rensa
    hasher = MinHasher()
    for text, lang in ((EN, "en"), (ZH, "zh")):
        reference = rensa.RMinHash(128, 1)
        reference.update(shingles(text, lang))
        signature = hasher.signature(text, lang)
        assert signature.dtype == np.uint32 and signature.shape == (128,)
        assert np.array_equal(signature, np.array(reference.digest(), dtype=np.uint32))


def test_parameters_change_the_signature():
    base = MinHasher().signature(EN, "en")
    assert not np.array_equal(MinHasher(seed=2).signature(EN, "en"), base)
    assert MinHasher(num_perm=64).signature(EN, "en").shape == (64,)
    assert not np.array_equal(MinHasher(ngram_en=3).signature(EN, "en"), base)
    assert np.array_equal(MinHasher(ngram_zh=3).signature(EN, "en"), base)


def test_batch_equals_one_by_one_across_batch_boundaries():
    rng = random.Random(3)
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split()
    texts = [" ".join(rng.choices(words, k=rng.randint(0, 30))) for _ in range(BATCH_SIZE + 44)]
    texts[7], texts[BATCH_SIZE] = ZH, ""
    langs = ["zh" if i == 7 else "en" for i in range(len(texts))]
    hasher = MinHasher()
    batch = hasher.signatures(texts, langs)
    assert batch.shape == (len(texts), 128)
    assert all(np.array_equal(batch[i], hasher.signature(text, lang))
               for i, (text, lang) in enumerate(zip(texts, langs)))
    assert np.array_equal(hasher.signatures(texts[:50], "en")[8:], batch[8:50])   # one lang for all


def test_empty_inputs():
    hasher = MinHasher()
    assert hasher.signatures([], "en").shape == (0, 128)
    empty = hasher.signature("", "zh")
    assert np.all(empty == EMPTY_HASH) and is_empty_signature(empty)
    assert np.array_equal(hasher.signature(None, "en"), empty)
    assert not is_empty_signature(hasher.signature("!", "en"))
    assert band_keys(empty, 9, 13) == []


def test_pickled_hasher_holds_only_parameters_and_gives_the_same_signatures():
    hasher = MinHasher(num_perm=64, seed=7)
    before = hasher.signature(ZH, "zh")
    clone = pickle.loads(pickle.dumps(hasher))
    assert len(pickle.dumps(hasher)) < 400
    assert repr(clone) == "MinHasher(num_perm=64, seed=7, ngram_zh=5, ngram_en=5)"
    assert np.array_equal(clone.signature(ZH, "zh"), before)


CHILD = """
import json, sys
from cleaners.minhash import MinHasher, band_keys
texts = json.loads(sys.argv[1])
sigs = MinHasher().signatures(texts, ["en", "zh"])
print(json.dumps({"sigs": sigs.tolist(), "keys": [k.hex() for k in band_keys(sigs[1], 9, 13)]}))
"""


def test_signatures_and_band_keys_identical_in_other_processes():
    hasher = MinHasher()
    sigs = hasher.signatures([EN, ZH], ["en", "zh"])
    for hash_seed in ("0", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        done = subprocess.run([sys.executable, "-c", CHILD, json.dumps([EN, ZH])], cwd=REPO, env=env,
                              capture_output=True, text=True, check=True)
        child = json.loads(done.stdout)
        assert child["sigs"] == sigs.tolist()
        assert child["keys"] == [key.hex() for key in band_keys(sigs[1], 9, 13)]


# ---------------------------------------------------------------- Jaccard


def _edited_pair(rng: random.Random, vocabulary: list[str], length: int, edit_rate: float, joiner: str):
    base = rng.choices(vocabulary, k=length)
    edited = [rng.choice(vocabulary) if rng.random() < edit_rate else token for token in base]
    return joiner.join(base), joiner.join(edited)


@pytest.mark.parametrize("lang, joiner", [("en", " "), ("zh", "")])
def test_estimate_close_to_exact_jaccard_on_pairs_with_known_overlap(lang, joiner):
    rng = random.Random(11)
    if lang == "en":
        vocabulary = [f"w{i}" for i in range(3000)]
    else:
        vocabulary = [chr(cp) for cp in range(0x4E00, 0x4E00 + 3000)]
    hasher = MinHasher()
    errors, exacts = [], []
    for edit_rate in (0.0, 0.01, 0.02, 0.04, 0.08, 0.15, 0.3, 0.6):
        a, b = _edited_pair(rng, vocabulary, 600, edit_rate, joiner)
        exact = exact_jaccard(shingles(a, lang), shingles(b, lang))
        estimate = estimate_jaccard(hasher.signature(a, lang), hasher.signature(b, lang))
        errors.append(abs(estimate - exact))
        exacts.append(exact)
    assert exacts[0] == 1.0 and errors[0] == 0.0
    # the estimate's standard error with 128 permutations is at most sqrt(0.25 / 128) = 0.044: 0.15 is 3.4 of it
    assert max(errors) < 0.15 and sum(errors) / len(errors) < 0.05
    assert exacts == sorted(exacts, reverse=True) and exacts[-1] < 0.1     # the pairs span the range


def test_unrelated_texts_estimate_near_zero():
    assert estimate_jaccard(MinHasher().signature(EN, "en"), MinHasher().signature(ZH, "zh")) < 0.05


def test_exact_jaccard_small_sets():
    assert exact_jaccard([b"a", b"b", b"c"], [b"b", b"c", b"d"]) == 0.5
    assert exact_jaccard([b"a", b"a"], [b"a"]) == 1.0
    assert exact_jaccard([], []) == 1.0
    assert exact_jaccard([b"a"], []) == 0.0


def test_estimate_jaccard_counts_equal_slots_and_checks_shapes():
    assert estimate_jaccard(np.array([1, 2, 3, 4]), np.array([1, 9, 3, 9])) == 0.5
    with pytest.raises(ValueError):
        estimate_jaccard(np.arange(4), np.arange(5))
    with pytest.raises(ValueError):
        estimate_jaccard(np.array([]), np.array([]))


# ---------------------------------------------------------------- banding


def test_optimal_bands_for_0_8_and_128():
    bands, rows = optimal_bands(0.8, 128)
    assert (bands, rows) == (9, 13) and bands * rows <= 128
    assert abs(similarity_at_probability(0.5, bands, rows) - 0.8) < 0.03


@settings(max_examples=30, deadline=None, derandomize=True)
@given(threshold=st.floats(0.05, 0.95), num_perm=st.integers(1, 160), fp_weight=st.floats(0.05, 0.95))
def test_optimal_bands_match_datasketch(threshold, num_perm, fp_weight):
    """Same criterion as datasketch's MinHashLSH (its _optimal_param, scipy quadrature) -> same choice."""
    ours = optimal_bands(threshold, num_perm, fp_weight, 1.0 - fp_weight)
    assert ours[0] * ours[1] <= num_perm
    assert ours == datasketch_optimal_param(threshold, num_perm, fp_weight, 1.0 - fp_weight)


def test_weights_trade_false_positives_for_false_negatives():
    strict = optimal_bands(0.8, 128, false_positive_weight=0.9, false_negative_weight=0.1)
    loose = optimal_bands(0.8, 128, false_positive_weight=0.1, false_negative_weight=0.9)
    assert collision_probability(0.7, *strict) < collision_probability(0.7, *loose)
    assert collision_probability(0.85, *strict) < collision_probability(0.85, *loose)


@pytest.mark.parametrize("args", [(0.0, 128), (1.0, 128), (1.5, 128), (0.8, 0), (0.8, 128, 0.0, 0.0),
                                  (0.8, 128, -0.1, 1.1)])
def test_optimal_bands_rejects_bad_parameters(args):
    with pytest.raises(ValueError):
        optimal_bands(*args)


def test_collision_probability_values():
    assert collision_probability(0.5, 2, 1) == 0.75
    assert collision_probability(1.0, 9, 13) == 1.0 and collision_probability(0.0, 9, 13) == 0.0
    curve = collision_probability(np.linspace(0, 1, 101), 9, 13)
    assert curve.shape == (101,) and np.all(np.diff(curve) >= 0) and np.all(np.diff(curve[40:]) > 0)
    for p in (0.1, 0.5, 0.9):
        assert collision_probability(similarity_at_probability(p, 9, 13), 9, 13) == pytest.approx(p)


def test_threshold_curve_table():
    curve = threshold_curve(9, 13)
    assert [s for s, _ in curve] == [0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0]
    assert curve[-1] == (1.0, 1.0) and all(p == collision_probability(s, 9, 13) for s, p in curve)
    assert [p for _, p in curve] == sorted(p for _, p in curve)
    assert threshold_curve(2, 1, points=(0.5,)) == [(0.5, 0.75)]


# ---------------------------------------------------------------- band keys


def test_band_keys_layout_is_band_index_plus_blake2b_of_the_band():
    signature = np.arange(128, dtype=np.uint32)
    keys = band_keys(signature, 9, 13)
    assert len(keys) == 9 and all(len(key) == 18 for key in keys)
    assert [int.from_bytes(key[:2], "big") for key in keys] == list(range(9))
    expected = hashlib.blake2b(np.arange(13, 26, dtype="<u8").tobytes(), digest_size=16).digest()
    assert keys[1] == b"\x00\x01" + expected


def test_band_keys_equal_for_equal_signatures_whatever_the_dtype():
    signature = MinHasher().signature(EN, "en")
    assert band_keys(signature, 9, 13) == band_keys(signature.copy(), 9, 13)
    assert band_keys(signature, 9, 13) == band_keys(signature.astype(np.uint64), 9, 13)


def test_band_keys_of_different_bands_never_collide():
    keys = band_keys(np.full(128, 7, dtype=np.uint32), 16, 8)     # every band holds the same values
    assert len(set(keys)) == 16


def test_changing_one_value_changes_only_its_band_key():
    signature = MinHasher().signature(ZH, "zh")
    changed = signature.copy()
    changed[30] ^= 1                                              # band 2 of 13-row bands
    before, after = band_keys(signature, 9, 13), band_keys(changed, 9, 13)
    assert [i for i in range(9) if before[i] != after[i]] == [2]
    changed = signature.copy()
    changed[127] ^= 1                                             # past 9 x 13 = 117: not in any band
    assert band_keys(changed, 9, 13) == before


@pytest.mark.parametrize("signature, bands, rows", [
    (np.arange(128, dtype=np.uint32), 10, 13),                 # 130 values needed
    (np.arange(128, dtype=float), 9, 13),                      # not integers
    (np.arange(128).reshape(2, 64), 2, 8),                     # not 1-d
    (np.arange(-1, 127), 9, 13),                               # negative
    (np.arange(128, dtype=np.uint32), 0, 13),
])
def test_band_keys_reject_bad_input(signature, bands, rows):
    with pytest.raises(ValueError):
        band_keys(signature, bands, rows)
