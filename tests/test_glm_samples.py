"""GLM blank-infilling samples: a hand-checked layout, attention mask, span statistics, round trips, bad input."""
from __future__ import annotations

import math

import numpy as np
import pytest

from tokenizer.glm import (IGNORE, GLMMasking, attention_mask, collate, layout, poisson_lengths, restore_tokens,
                           sentence_end_ids)
from tokenizer.vocab import Vocab

VOCAB = Vocab.build(100, image_codes=16)  # [MASK]=100 [sMASK]=101 [gMASK]=102 [sop]=103 [eop]=104 ... [PAD]=108
MASK, SMASK, GMASK, SOP, EOP, PAD = 100, 101, 102, 103, 104, 108
DOT = 7  # the sentence-end id in these tests


def masking(**kw) -> GLMMasking:
    kw.setdefault("sentence_end_ids", frozenset({DOT}))
    return GLMMasking(VOCAB, **kw)


def check_structure(s: dict, max_len: int) -> None:
    """Invariants every sample holds: sizes, Part A positions, loss only on Part B, padding, one [sop] per mask."""
    sep, ids, tgt, lm, pos = s["sep"], s["input_ids"], s["targets"], s["loss_mask"], s["position_ids"]
    assert ids.shape == tgt.shape == lm.shape == (max_len,) and pos.shape == (2, max_len)
    np.testing.assert_array_equal(pos[0, :sep], np.arange(sep))
    assert not pos[1, :sep].any()
    np.testing.assert_array_equal(lm, (tgt != IGNORE).astype(np.float32))
    assert not lm[:sep].any()
    k = int(np.isin(ids[:sep], [MASK, SMASK, GMASK]).sum())
    assert k >= 1 and int((ids == SOP).sum()) == k and int((tgt == EOP).sum()) == k
    used = sep + int(lm.sum())
    assert used == s["n_tokens"] + 2 * k
    assert (ids[used:] == PAD).all() and not pos[:, used:].any()
    assert lm[sep:used].all()


def test_hand_checked_layout():
    x = np.array([11, 12, 13, 14, 15, 16])
    s = layout(x, [(1, 3), (4, 5)], MASK, [1, 0], vocab=VOCAB, max_len=12)
    assert s["sep"] == 5
    np.testing.assert_array_equal(s["input_ids"], [11, MASK, 14, MASK, 16, SOP, 15, SOP, 12, 13, PAD, PAD])
    np.testing.assert_array_equal(s["targets"], [-100] * 5 + [15, EOP, 12, 13, EOP] + [-100, -100])
    np.testing.assert_array_equal(s["loss_mask"], [0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 0, 0])
    np.testing.assert_array_equal(s["position_ids"][0], [0, 1, 2, 3, 4, 3, 3, 1, 1, 1, 0, 0])
    np.testing.assert_array_equal(s["position_ids"][1], [0, 0, 0, 0, 0, 1, 2, 1, 2, 3, 0, 0])
    np.testing.assert_array_equal(restore_tokens(s, VOCAB), x)


def test_layout_whole_sequence_span_and_exact_fit():
    s = layout([5, 6], [(0, 2)], GMASK, [0], vocab=VOCAB, max_len=4)
    np.testing.assert_array_equal(s["input_ids"], [GMASK, SOP, 5, 6])
    np.testing.assert_array_equal(s["targets"], [-100, 5, 6, EOP])
    np.testing.assert_array_equal(s["position_ids"], [[0, 0, 0, 0], [0, 1, 2, 3]])
    assert s["sep"] == 1


def test_layout_order_from_rng_is_a_permutation():
    x = np.arange(20, 40)
    spans = [(0, 2), (5, 6), (9, 12), (15, 16)]
    s = layout(x, spans, MASK, np.random.default_rng(3), vocab=VOCAB, max_len=30)
    np.testing.assert_array_equal(restore_tokens(s, VOCAB), x)
    starts = np.flatnonzero(s["input_ids"] == SOP)
    order = np.random.default_rng(3).permutation(4)  # the same draw layout made
    assert s["position_ids"][0, starts].tolist() == [[0, 4, 8, 12][j] for j in order]  # mask positions in Part A
    assert sorted(order.tolist()) != order.tolist()  # this seed does shuffle


def test_attention_mask_small_case():
    expected = np.array([[1, 1, 0, 0],
                         [1, 1, 0, 0],
                         [1, 1, 1, 0],
                         [1, 1, 1, 1]], dtype=bool)
    np.testing.assert_array_equal(attention_mask(2, 4), expected)
    np.testing.assert_array_equal(attention_mask(0, 3), np.tril(np.ones((3, 3), dtype=bool)))
    assert attention_mask(3, 3).all()
    with pytest.raises(ValueError, match="sep"):
        attention_mask(5, 4)


def test_attention_mask_matches_the_rule():
    L, sep = 9, 4
    m = attention_mask(sep, L)
    for i in range(L):
        for j in range(L):
            part_a_key = j < sep
            causal_b = i >= sep and j <= i
            assert m[i, j] == (part_a_key or causal_b), (i, j)


def test_poisson_lengths():
    lengths, pmf = poisson_lengths(3.0)
    assert lengths[0] == 1 and lengths[-1] == 39
    assert math.isclose(pmf.sum(), 1.0)
    assert math.isclose(pmf[1] / pmf[0], 3.0 / 2)  # P(2)/P(1) = lambda/2
    assert math.isclose(pmf[0], 3 * math.exp(-3) / (1 - math.exp(-3)), rel_tol=1e-9)


def test_mask_ratio_and_span_lengths_over_many_samples():
    g, rng, n = masking(), np.random.default_rng(0), 200
    fractions, lengths = [], []
    for _ in range(2000):
        spans = g.mask_spans(n, rng)
        covered = sum(e - s for s, e in spans)
        assert covered >= 30  # at least 15%
        for (s0, e0), (s1, e1) in zip(spans, spans[1:]):
            assert e0 < s1  # disjoint, at least one token apart
        assert spans[0][0] >= 0 and spans[-1][1] <= n
        fractions.append(covered / n)
        lengths += [e - s for s, e in spans]
    assert abs(np.mean(fractions) - 0.15) < 0.02
    truncated_mean = 3 / (1 - math.exp(-3))  # Poisson(3) without zero: 3.157
    assert abs(np.mean(lengths) - truncated_mean) < 0.06
    assert abs(np.mean(np.array(lengths) == 1) - poisson_lengths(3.0)[1][0]) < 0.02


def test_mask_spans_on_short_sequences_fit():
    g, rng = masking(), np.random.default_rng(1)
    assert g.mask_spans(1, rng) == [(0, 1)]
    for n in range(1, 30):
        for _ in range(20):
            spans = g.mask_spans(n, rng)
            assert spans and all(0 <= s < e <= n for s, e in spans)
            assert all(e0 < s1 for (_, e0), (s1, _) in zip(spans, spans[1:]))


def test_gmask_fraction_uniform_between_half_and_all():
    g, rng, n = masking(), np.random.default_rng(2), 200
    fractions = []
    for _ in range(2000):
        [(s, e)] = g.gmask_spans(n, rng)
        assert e == n
        fractions.append((e - s) / n)
    f = np.array(fractions)
    assert f.min() >= 0.5 and f.max() <= 1.0
    assert f.min() == 0.5 and f.max() == 1.0  # both ends reachable
    assert abs(f.mean() - 0.75) < 0.015
    hist, _ = np.histogram(f, bins=5, range=(0.5, 1.0))
    assert np.all(np.abs(hist / len(f) - 0.2) < 0.04)


def random_text(rng, n, p_end=0.1):
    x = rng.integers(10, 100, size=n)
    x[rng.random(n) < p_end] = DOT
    return x


def test_sentence_spans_are_whole_sentences():
    g, rng = masking(), np.random.default_rng(4)
    for _ in range(300):
        x = random_text(rng, int(rng.integers(1, 120)))
        ends = set((np.flatnonzero(x == DOT) + 1).tolist())
        spans = g.sentence_spans(x, rng)
        lengths = [e - s for s, e in spans]
        for s, e in spans:
            assert s == 0 or s in ends  # starts a sentence
            assert e == len(x) or e in ends  # ends one
            assert not np.isin(x[s:e - 1], [DOT]).any()  # exactly one sentence
        covered = sum(lengths)
        assert covered >= 0.15 * len(x)
        assert covered - max(lengths) < 0.15 * len(x)  # stops once 15% is covered


def test_sentence_spans_hand_case():
    # sentences [0,3) [3,5) [5,8) [8,9): 9 tokens, 15% = 1.35 so one sentence of >= 2 tokens or two
    x = np.array([20, 21, DOT, 22, DOT, 23, 24, DOT, 25])
    g = masking()
    seen = set()
    for seed in range(60):
        spans = g.sentence_spans(x, np.random.default_rng(seed))
        seen.add(tuple(spans))
        assert set(spans) <= {(0, 3), (3, 5), (5, 8), (8, 9)}
    assert {((0, 3),), ((3, 5),), ((5, 8),)} <= seen and ((8, 9),) not in seen


@pytest.mark.parametrize("objective,mask_id", [("mask", MASK), ("sentence", SMASK), ("gmask", GMASK)])
def test_build_round_trip_and_structure(objective, mask_id):
    g, rng = masking(), np.random.default_rng(5)
    for _ in range(150):
        x = random_text(rng, int(rng.integers(1, 80)))
        s = g.build(x, rng, objective, max_len=128)
        assert s["objective"] == objective and s["n_tokens"] == len(x)
        check_structure(s, 128)
        assert set(s["input_ids"][:s["sep"]].tolist()) & {MASK, SMASK, GMASK} == {mask_id}
        np.testing.assert_array_equal(restore_tokens(s, VOCAB), x)


@pytest.mark.parametrize("objective", ["mask", "sentence", "gmask"])
def test_build_truncates_to_fit(objective):
    g, rng = masking(), np.random.default_rng(6)
    for max_len in (3, 4, 7, 60):
        for _ in range(50):
            x = random_text(rng, 100)
            s = g.build(x, rng, objective, max_len=max_len)
            check_structure(s, max_len)
            assert 1 <= s["n_tokens"] <= max_len - 2
            np.testing.assert_array_equal(restore_tokens(s, VOCAB), x[:s["n_tokens"]])
    s = g.build(random_text(rng, 100), rng, "gmask", max_len=60)
    assert s["n_tokens"] == 58  # one span: x cut to max_len - 2


def test_build_is_deterministic_with_the_rng():
    g = masking()
    x = random_text(np.random.default_rng(7), 90)
    a = g.build(x, np.random.default_rng(8), max_len=128)
    b = g.build(x, np.random.default_rng(8), max_len=128)
    for key in ("input_ids", "targets", "loss_mask", "position_ids"):
        np.testing.assert_array_equal(a[key], b[key])
    assert a["sep"] == b["sep"] and a["objective"] == b["objective"]


def test_objective_mix_follows_ratios():
    g, rng = masking(), np.random.default_rng(9)
    draws = [g.choose_objective(rng) for _ in range(5000)]
    for name, p in {"mask": 0.5, "sentence": 0.3, "gmask": 0.2}.items():
        assert abs(draws.count(name) / 5000 - p) < 0.03
    only = masking(ratios={"gmask": 1.0}, sentence_end_ids=frozenset())
    assert {only.choose_objective(rng) for _ in range(50)} == {"gmask"}


def test_collate_and_build_batch():
    g, rng = masking(), np.random.default_rng(10)
    windows = [random_text(rng, 40) for _ in range(4)]
    batch = g.build_batch(windows, rng, max_len=64)
    assert batch["input_ids"].shape == batch["targets"].shape == batch["loss_mask"].shape == (4, 64)
    assert batch["position_ids"].shape == (4, 2, 64) and batch["sep"].shape == (4,)
    kinds = {int(t) for row, sep in zip(batch["input_ids"], batch["sep"]) for t in row[:sep]
             if t in (MASK, SMASK, GMASK)}
    assert len(kinds) == 1  # one objective per batch
    samples = [g.build(w, rng, "mask", max_len=64) for w in windows]
    c = collate(samples)
    np.testing.assert_array_equal(c["sep"], [s["sep"] for s in samples])
    np.testing.assert_array_equal(c["position_ids"][2], samples[2]["position_ids"])
    with pytest.raises(ValueError, match="different lengths"):
        collate([samples[0], g.build(windows[0], rng, "mask", max_len=50)])
    with pytest.raises(ValueError, match="at least one"):
        collate([])


def test_bad_input():
    g, rng = masking(), np.random.default_rng(11)
    with pytest.raises(ValueError, match="empty tokens"):
        g.build(np.array([], dtype=np.int64), rng, max_len=16)
    with pytest.raises(ValueError, match="too small"):
        g.build([1, 2, 3], rng, max_len=2)
    with pytest.raises(ValueError, match="1-D"):
        g.build(np.ones((2, 3), dtype=np.int64), rng, max_len=16)
    with pytest.raises(ValueError, match="integers"):
        g.build(np.ones(3), rng, max_len=16)
    with pytest.raises(ValueError, match="cannot be in a GLM input"):
        g.build([1, MASK, 2], rng, max_len=16)
    with pytest.raises(ValueError, match="cannot be in a GLM input"):
        g.build([1, VOCAB.total_size], rng, max_len=16)
    with pytest.raises(ValueError, match="unknown objective"):
        g.build([1, 2], rng, "bert", max_len=16)
    with pytest.raises(ValueError, match="sentence_end_ids"):
        GLMMasking(VOCAB)
    with pytest.raises(ValueError, match="ratios"):
        masking(ratios={"mlm": 1.0})
    with pytest.raises(ValueError, match="gmask_min"):
        masking(gmask_min=0.8, gmask_max=0.6)


def test_layout_bad_input():
    x = np.arange(10, 16)
    with pytest.raises(ValueError, match="no spans"):
        layout(x, [], MASK, [], vocab=VOCAB, max_len=16)
    for spans in ([(2, 4), (3, 5)], [(3, 5), (0, 1)], [(2, 2)], [(4, 7)]):
        with pytest.raises(ValueError, match="sorted, disjoint"):
            layout(x, spans, MASK, list(range(len(spans))), vocab=VOCAB, max_len=16)
    with pytest.raises(ValueError, match="permutation"):
        layout(x, [(0, 1), (2, 3)], MASK, [0, 0], vocab=VOCAB, max_len=16)
    with pytest.raises(ValueError, match="need 10 positions"):
        layout(x, [(0, 1), (2, 3)], MASK, [0, 1], vocab=VOCAB, max_len=9)


class _FakeSP:
    pieces = ["<unk>", "<n>", "\u2581the", "。", "end.", "\u2581?", "a.b", "!\u2581"]

    def get_piece_size(self):
        return len(self.pieces)

    def id_to_piece(self, i):
        return self.pieces[i]

    def is_control(self, i):
        return i == 1


class _FakeTokenizer:
    sp, newline_id = _FakeSP(), 42


def test_sentence_end_ids_from_pieces():
    assert sentence_end_ids(_FakeTokenizer()) == frozenset({3, 4, 5, 7, 42})


EOT = 9  # the document separator in these tests


def packed_windows(n: int, rng: np.random.Generator, length: int = 120) -> list[np.ndarray]:
    """Windows cut from a stream of documents (each followed by EOT), the way the reader packs them."""
    stream = []
    while len(stream) < n * length:
        doc = rng.integers(10, 90, int(rng.integers(1, 60)))
        doc[rng.random(len(doc)) < 0.1] = DOT
        stream += doc.tolist() + [EOT]
    return [np.array(stream[i * length:(i + 1) * length]) for i in range(n)]


def _spans_of(sample: dict, objective: str) -> list[np.ndarray]:
    """Each Part B span's tokens (targets up to its [eop])."""
    tgt, lm = sample["targets"], sample["loss_mask"]
    spans, current = [], []
    for t, on in zip(tgt.tolist(), lm.tolist()):
        if not on:
            continue
        if t == EOP:
            spans.append(np.array(current))
            current = []
        else:
            current.append(t)
    return spans


@pytest.mark.parametrize("objective", ["mask", "sentence", "gmask"])
def test_spans_stay_inside_documents_of_a_packed_window(objective):
    """Issue 20: spans crossed <|endoftext|> and made it a target; THUDM's GLM samples spans per document."""
    rng = np.random.default_rng(3)
    m = masking(boundary_ids=frozenset({EOT}))
    plain = masking()
    crossed_before = 0
    for window in packed_windows(300, rng):
        sample = m.build(window, rng, objective, max_len=160)
        check_structure(sample, 160)
        np.testing.assert_array_equal(restore_tokens(sample, VOCAB), window[:sample["n_tokens"]])
        assert not any((span == EOT).any() for span in _spans_of(sample, objective))   # never masked, never a target
        x = window[:sample["n_tokens"]]
        for s, e in m.spans(x, objective, np.random.default_rng(0)):
            assert not (x[s:e] == EOT).any()
        if objective == "gmask":
            last = m.documents(x)[-1]
            (s, e), = m.spans(x, objective, np.random.default_rng(1))
            assert last[0] <= s and e == last[1] and e - s >= math.ceil(0.5 * (last[1] - last[0]))
        before = plain.build(window, np.random.default_rng(5), objective, max_len=160)
        crossed_before += any((span == EOT).any() for span in _spans_of(before, objective))
    assert crossed_before > 30   # without separators, many windows put <|endoftext|> into a span


def test_documents_and_separator_rules():
    m = masking(boundary_ids=frozenset({EOT}))
    assert m.documents(np.array([EOT, 11, 12, EOT, EOT, 13])) == [(1, 3), (5, 6)]
    assert m.documents(np.array([11, 12])) == [(0, 2)]
    with pytest.raises(ValueError, match="separators only"):
        m.build(np.array([EOT, EOT]), np.random.default_rng(0), "mask", max_len=8)
    with pytest.raises(ValueError, match="cannot also end sentences"):
        masking(sentence_end_ids=frozenset({DOT, EOT}), boundary_ids=frozenset({EOT}))
    # one [MASK] span set per document: 15% of each, so a 2-document window gets spans in both
    x = np.array([11] * 20 + [EOT] + [12] * 20)
    spans = m.spans(x, "mask", np.random.default_rng(0))
    assert any(e <= 20 for _, e in spans) and any(s >= 21 for s, _ in spans)
