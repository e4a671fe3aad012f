"""GLM blank filling and generation: KV cache against full forwards, decoding rules, beam search, the CLI."""
from __future__ import annotations

import json
import math

import pytest
import torch

from tokenizer.vocab import Vocab
from train.configs import Config, with_vocab
from train.decoding import Decoding, beam_search, filter_logits, pick_next
from train.glm_generate import BlankFiller, split_blanks
from train.glm_model import GLMModel
from train.layers import KVCache

torch.set_num_threads(1)
VOCAB = Vocab.build(40, image_codes=24)
MASK, SMASK, GMASK = (VOCAB.token_id(t) for t in ("[MASK]", "[sMASK]", "[gMASK]"))
SOP, EOP = VOCAB.token_id("[sop]"), VOCAB.token_id("[eop]")


def glm(seed: int = 0, **kw) -> GLMModel:
    torch.manual_seed(seed)
    cfg = with_vocab(Config(**{**dict(d_model=32, n_layers=2, n_heads=4, d_ff=64, seq_len=32), **kw}), VOCAB)
    return GLMModel(cfg).double().eval()


@torch.no_grad()
def full_logits(model, part_a, spans, masks):
    """Uncached: one forward over Part A + every `[sop] span`, GLM's training layout."""
    ids, pos0, pos1 = list(part_a), list(range(len(part_a))), [0] * len(part_a)
    for p, span in zip(masks, spans):
        ids += [SOP] + span
        pos0 += [p] * (len(span) + 1)
        pos1 += list(range(1, len(span) + 2))
    out = model(torch.tensor([ids]), torch.tensor([[pos0, pos1]]), torch.tensor([len(part_a)]))
    return out["logits"][0]


@pytest.mark.parametrize("kw", [{}, {"sandwich_ln": True, "pb_relax": True}])
def test_cached_logits_equal_the_full_forward(kw):
    model = glm(**kw)
    part_a, masks, spans = [5, 6, MASK, 9, 10, SMASK, 12], [2, 5], [[7, 8, 3], [11, 30]]
    reference = full_logits(model, part_a, spans, masks)
    cache = KVCache(len(model.blocks))
    n = len(part_a)
    got = [model(torch.tensor([part_a]), torch.tensor([[list(range(n)), [0] * n]]), torch.tensor([n]),
                 cache=cache)["logits"][0]]
    for p, span in zip(masks, spans):
        for j, token in enumerate([SOP] + span):   # one token at a time, as decoding feeds them
            out = model(torch.tensor([[token]]), torch.tensor([[[p], [j + 1]]]), torch.tensor([0]), cache=cache)
            got.append(out["logits"][0])
    assert cache.length == len(reference)
    torch.testing.assert_close(torch.cat(got), reference, rtol=0, atol=1e-10)


def test_greedy_fill_equals_uncached_greedy_decoding():
    model = glm(seed=3)
    filler = BlankFiller(model, VOCAB)
    part_a = [5, 6, MASK, 9, 10, MASK, 12]
    spans = filler.fill(part_a, Decoding("greedy", max_new_tokens=4))
    expected = []
    for p in (2, 5):
        span: list[int] = []
        while len(span) < 4:   # re-run the whole sequence for every token
            logits = full_logits(model, part_a, expected + [span], [2, 5])[-1] + filler._allowed
            token = int(logits.argmax())
            if token == EOP:
                break
            span.append(token)
        expected.append(span)
    assert spans == expected
    assert all(0 <= t < VOCAB.text_vocab_size for s in spans for t in s)


def test_span_logprob_is_the_sum_of_the_uncached_token_logprobs():
    model = glm(seed=4)
    filler = BlankFiller(model, VOCAB)
    part_a, span = [5, GMASK], [7, 8]
    logp = torch.log_softmax(full_logits(model, part_a, [span], [1])[2:] + filler._allowed, -1)
    expected = float(logp[0, 7] + logp[1, 8] + logp[2, EOP])
    assert filler.span_logprob(part_a, span) == pytest.approx(expected, abs=1e-9)
    with pytest.raises(ValueError, match="blank 1 of 1"):
        filler.span_logprob(part_a, span, blank=1)


def test_beam_candidates_are_scored_by_their_own_logprob():
    model = glm(seed=5)
    filler = BlankFiller(model, VOCAB)
    hyps = filler.candidates([3, 4, MASK, 9], Decoding("beam", num_beams=3, max_new_tokens=3, length_penalty=0.0))
    assert 1 <= len(hyps) <= 3 and hyps == sorted(hyps, key=lambda h: (not h.finished, -h.score))
    for h in hyps:
        if h.finished:
            assert h.logprob == pytest.approx(filler.span_logprob([3, 4, MASK, 9], list(h.tokens)), abs=1e-9)


def test_input_errors():
    filler = BlankFiller(glm(), VOCAB)
    with pytest.raises(ValueError, match="no \\[MASK\\]"):
        filler.fill([3, 4, 5])
    with pytest.raises(ValueError, match="no room"):
        filler.fill([3] * 31 + [MASK])
    assert split_blanks("北京是[MASK]的首都，[gMASK]") == (["北京是", "的首都，", ""], ["[MASK]", "[gMASK]"])


def test_generation_stops_at_seq_len():
    filler = BlankFiller(glm(seed=6), VOCAB)
    filler._allowed[EOP] = float("-inf")   # never ends by itself
    spans = filler.fill([3] * 20 + [GMASK], Decoding("greedy", max_new_tokens=100))
    assert len(spans[0]) == 32 - 21 - 1       # [sop] + span fill the remaining positions
    beam = filler.fill([3] * 20 + [GMASK], Decoding("beam", num_beams=2, max_new_tokens=100))
    assert len(beam[0]) == 32 - 21 - 1


# --- decoding rules
def test_top_k_and_top_p_keep_exactly_the_expected_tokens():
    logits = torch.log(torch.tensor([[0.5, 0.2, 0.15, 0.1, 0.05]]))
    kept = lambda out: torch.isfinite(out[0]).nonzero().flatten().tolist()  # noqa: E731
    assert kept(filter_logits(logits, top_k=2)) == [0, 1]
    assert kept(filter_logits(logits, top_p=0.5)) == [0]            # the top token alone reaches 0.5
    assert kept(filter_logits(logits, top_p=0.7)) == [0, 1]         # 0.5 + 0.2 reaches 0.7
    assert kept(filter_logits(logits, top_p=0.71)) == [0, 1, 2]
    assert kept(filter_logits(logits, top_k=4, top_p=0.9)) == [0, 1, 2, 3]
    assert kept(filter_logits(logits[:, [3, 0, 4, 1, 2]], top_p=0.7)) == [1, 3]   # order of the vocabulary is free


def test_sampling_is_seeded_and_stays_inside_the_cut():
    logits = torch.log(torch.tensor([[0.4, 0.3, 0.2, 0.1]])).expand(2000, 4)
    rule = Decoding("sample", top_k=2)
    a = pick_next(logits, rule, torch.Generator().manual_seed(1))
    b = pick_next(logits, rule, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and set(a.tolist()) == {0, 1}
    assert abs(float((a == 0).float().mean()) - 4 / 7) < 0.05        # renormalised 0.4 / 0.7
    assert pick_next(logits[:1], Decoding("greedy")).tolist() == [0]
    with pytest.raises(ValueError):
        Decoding("sample", top_p=0.0)


def test_beam_search_finds_what_greedy_misses():
    """Hand-built chain over tokens {0: end, 1, 2, 3}: greedy takes 1 (p 0.6) and ends at best with p 0.21; 2
    (p 0.4) leads to a sure end, which a beam of 2 keeps."""
    log = math.log
    table = {(): [0.0, 0.6, 0.4, 0.0], (1,): [0.3, 0.35, 0.35, 0.0], (2,): [1.0, 0.0, 0.0, 0.0],
             (1, 1): [1.0, 0, 0, 0], (1, 2): [1.0, 0, 0, 0]}
    state = {"rows": [()]}

    def dist(prefix):
        return torch.tensor([log(p) if p > 0 else float("-inf") for p in table[prefix]], dtype=torch.float64)

    def step(tokens, parents):
        state["rows"] = [state["rows"][r] + (t,) for r, t in zip(parents.tolist(), tokens.tolist())]
        return torch.stack([dist(p) for p in state["rows"]])

    hyps = beam_search(step, dist(()), 0, Decoding("beam", num_beams=2, max_new_tokens=5, length_penalty=0.0))
    assert hyps[0].tokens == (2,) and hyps[0].logprob == pytest.approx(log(0.4))
    assert hyps[1].tokens in ((1, 1), (1, 2)) and hyps[1].logprob == pytest.approx(log(0.6 * 0.35))
    assert all(h.finished for h in hyps)
    state["rows"] = [()]
    greedy = beam_search(step, dist(()), 0, Decoding("beam", num_beams=1, max_new_tokens=5, length_penalty=0.0))
    assert greedy[0].tokens in ((1, 1), (1, 2)) and greedy[0].logprob == pytest.approx(log(0.21))


# --- the command
def _tokenizer_and_checkpoint(tmp_path):
    from tokenizer.text import TextTokenizer, train_sentencepiece

    lines = tmp_path / "lines.txt"
    lines.write_text("\n".join(f"北京是中国的首都。第{i}行 the capital city {i}" for i in range(300)), encoding="utf-8")
    train_sentencepiece([str(lines)], str(tmp_path / "tok"), vocab_size=400)
    vocab = TextTokenizer.load(str(tmp_path / "tok")).vocab
    torch.manual_seed(0)
    cfg = with_vocab(Config(d_model=32, n_layers=2, n_heads=4, d_ff=64, seq_len=48), vocab)
    model = GLMModel(cfg)
    torch.save({"model": model.state_dict(), "config": cfg.to_dict(), "kind": "glm"}, tmp_path / "ckpt.pt")
    return str(tmp_path / "tok"), str(tmp_path / "ckpt.pt")


def test_generate_command_fills_the_blanks_in_place(tmp_path, capsys):
    from pipelines.cli import main

    tok, ckpt = _tokenizer_and_checkpoint(tmp_path)
    args = ["generate", "--checkpoint", ckpt, "--tokenizer", tok, "--max-new-tokens", "3"]
    assert main(args + ["--text", "北京是[MASK]的首都，[sMASK]"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["spans"]) == 2
    assert out["text"] == "北京是" + out["spans"][0] + "的首都，" + out["spans"][1]
    assert main(args + ["--text", "the capital", "--strategy", "beam", "--num-beams", "2"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["text"] == "the capital" + out["spans"][0]       # no blank: [gMASK] appended, text continues
    for seed in ("1", "1", "2"):
        assert main(args + ["--text", "第[MASK]行", "--strategy", "sample", "--top-p", "0.9", "--seed", seed]) == 0
    first, again, _ = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert first == again


def test_generate_command_refuses_unfit_checkpoints(tmp_path, capsys):
    from pipelines.cli import main

    from train.cogview_model import CogViewModel

    tok, ckpt = _tokenizer_and_checkpoint(tmp_path)
    state = torch.load(ckpt, weights_only=True)
    cogview = CogViewModel(Config(**{**state["config"], "betas": tuple(state["config"]["betas"])}))
    torch.save({**state, "model": cogview.state_dict(), "kind": "cogview"}, tmp_path / "cv.pt")
    assert main(["generate", "--checkpoint", str(tmp_path / "cv.pt"), "--tokenizer", tok, "--text", "a"]) == 1
    assert "is a cogview checkpoint; generate needs a glm one" in capsys.readouterr().err
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    assert main(["generate", "--checkpoint", str(tmp_path / "junk.pt"), "--tokenizer", tok, "--text", "a"]) == 1
    assert "wudao generate:" in capsys.readouterr().err


# --- inverse prompting
def test_rerank_lets_the_inverse_score_decide_by_its_weight():
    """A hand-built inverse scorer that knows candidate (7,) answers the prompt: it must win once the inverse score
    weighs enough, though beam search liked (5, 6) better."""
    from train.inverse_prompting import rerank

    candidates = [((5, 6), -0.5), ((7,), -1.0), ((8, 9, 9), -0.9)]
    knows = {(5, 6): -4.0, (7,): -0.2, (8, 9, 9): -3.0}.__getitem__
    assert [r.tokens for r in rerank(candidates, knows, weight=0.0)] == [(5, 6), (8, 9, 9), (7,)]
    best = rerank(candidates, knows, weight=1.0)
    assert [r.tokens for r in best] == [(7,), (8, 9, 9), (5, 6)] and best[0].score == pytest.approx(-0.2)
    mixed = rerank(candidates, knows, weight=0.5)[0]
    assert mixed.tokens == (7,) and mixed.score == pytest.approx(0.5 * -1.0 + 0.5 * -0.2)
    with pytest.raises(ValueError):
        rerank(candidates, knows, weight=1.5)


def test_inverse_prompting_scores_each_candidate_by_its_inverse_text():
    from train.inverse_prompting import inverse_prompting

    class Digits:   # a tokenizer of digit strings, one id per digit (ids 3..12)
        def encode(self, text):
            return [int(c) + 3 for c in text]

        def decode(self, ids):
            return "".join(str(i - 3) for i in ids)

    filler = BlankFiller(glm(seed=7), VOCAB)
    decoding = Decoding("beam", num_beams=3, max_new_tokens=3)
    ranked = inverse_prompting(filler, Digits(), "42", "1{prompt}[gMASK]", "{generation}9[MASK]", decoding, 1.0)
    hyps = filler.candidates([4, 7, 5, GMASK], decoding)
    assert sorted(r.tokens for r in ranked) == sorted(h.tokens for h in hyps)
    digits = Digits()
    for r in ranked:   # the generation goes into the inverse text as text, tokenized again
        inverse_ids = digits.encode(digits.decode(r.tokens) + "9") + [MASK]
        assert r.inverse == pytest.approx(filler.span_logprob(inverse_ids, [7, 5]) / 3, abs=1e-9)
    assert [r.score for r in ranked] == sorted((r.inverse for r in ranked), reverse=True)
    with pytest.raises(ValueError, match="strategy beam"):
        inverse_prompting(filler, Digits(), "42", "1{prompt}[gMASK]", "{generation}[MASK]", Decoding(), 1.0)


def test_generate_command_with_inverse_prompting(tmp_path, capsys):
    from pipelines.cli import main

    tok, ckpt = _tokenizer_and_checkpoint(tmp_path)
    assert main(["generate", "--checkpoint", ckpt, "--tokenizer", tok, "--text", "问：{prompt} 答：[gMASK]",
                 "--prompt", "北京", "--inverse", "{generation} 问：[MASK]", "--strategy", "beam",
                 "--num-beams", "3", "--max-new-tokens", "3"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["text"] == out["candidates"][0]["text"] and len(out["candidates"]) <= 3
    scores = [c["score"] for c in out["candidates"]]
    assert scores == sorted(scores, reverse=True)
    assert main(["generate", "--checkpoint", ckpt, "--tokenizer", tok, "--text", "{prompt}[gMASK]",
                 "--inverse", "{generation}[MASK]"]) == 1
    assert "--inverse needs --prompt" in capsys.readouterr().err
