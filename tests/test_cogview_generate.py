"""CogView sampling with a KV cache, the image-to-text layout mixed into training, and self-reranking."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tokenizer.cogview import CaptionMix, caption_sample, cogview_sample, split_cogview_sample
from tokenizer.vocab import Vocab
from train.cogview_model import CogViewModel, caption_scores, generate_image_codes
from train.configs import Config, with_vocab
from train.layers import KVCache

torch.set_num_threads(1)
VOCAB = Vocab.build(40, image_codes=24)
PAD = VOCAB.token_id("[PAD]")


def cogview(seed=0, **kw) -> CogViewModel:
    torch.manual_seed(seed)
    return CogViewModel(with_vocab(Config(**{**dict(d_model=32, n_layers=2, n_heads=4, d_ff=64, seq_len=40),
                                            **kw}), VOCAB))


def test_cached_step_logits_equal_the_full_forward():
    model = cogview().double().eval()
    ids = torch.tensor([cogview_sample([5, 6, 7], list(range(9)), VOCAB)])
    with torch.no_grad():
        reference = model.logits(ids)[0][0]
        cache = KVCache(len(model.blocks))
        got = [model.logits(ids[:, :6], cache)[0][0]] + [model.logits(ids[:, i:i + 1], cache)[0][0]
                                                         for i in range(6, ids.size(1))]
    torch.testing.assert_close(torch.cat(got), reference, rtol=0, atol=1e-10)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_cached_sampling_draws_the_same_codes_for_the_same_seed(dtype):
    model = cogview(seed=1).to(dtype)
    draws = [generate_image_codes(model, [5, 6], VOCAB, grid=4, top_k=10, top_p=0.95, num_samples=3,
                                  generator=torch.Generator().manual_seed(7), use_cache=cached)
             for cached in (True, False)]
    assert draws[0].shape == (3, 16) and torch.equal(draws[0], draws[1])
    assert not torch.equal(draws[0][0], draws[0][1])         # the samples of one call differ


def test_caption_layout_round_trip_and_mix():
    text, codes = [5, 6, 7], [0, 3, 23, 1]
    forward = cogview_sample(text, codes, VOCAB)
    backward = caption_sample(text, codes, VOCAB)
    names = [VOCAB.token_name(i) for i in (backward[0], backward[5], backward[6], backward[-1])]
    assert names == ["[BOI2]", "[EOI2]", "[ROI2]", "<|endoftext|>"] and len(backward) == len(forward)
    assert backward[1:5] == [VOCAB.image_code_offset + k for k in codes] and backward[7:10] == text
    rows = [np.array(forward + [PAD] * 3, dtype=np.int32) for _ in range(200)]
    mixed = CaptionMix(VOCAB, 0.25).build_batch(rows, np.random.default_rng(0))
    again = CaptionMix(VOCAB, 0.25).build_batch(rows, np.random.default_rng(0))
    assert mixed.dtype == np.int32 and np.array_equal(mixed, again)
    flipped = [r for r in mixed.tolist() if r[0] == backward[0]]
    assert 30 <= len(flipped) <= 70 and all(r == backward + [PAD] * 3 for r in flipped)
    assert all(r == forward + [PAD] * 3 for r in mixed.tolist() if r[0] != backward[0])
    assert np.array_equal(CaptionMix(VOCAB, 0.0).build_batch(rows, np.random.default_rng(0)), np.stack(rows))
    with pytest.raises(ValueError):
        CaptionMix(VOCAB, 1.5)
    with pytest.raises(ValueError):
        caption_sample([VOCAB.token_id("[BASE]")], codes, VOCAB)


def test_caption_score_is_the_mean_logprob_of_the_caption_given_the_image():
    model = cogview(seed=2).double().eval()
    text, codes = [5, 6, 7], torch.tensor([[0, 1, 2, 3], [4, 4, 4, 4]])
    got = caption_scores(model, text, codes, VOCAB)
    for row, score in zip(codes.tolist(), got.tolist()):
        ids = torch.tensor([caption_sample(text, row, VOCAB)])
        with torch.no_grad():
            logp = torch.log_softmax(model.logits(ids)[0][0], -1)
        n = len(ids[0])
        want = np.mean([float(logp[i - 1, ids[0, i]]) for i in range(n - 4, n)])
        assert score == pytest.approx(want, abs=1e-9)


def test_self_reranking_picks_the_image_that_matches_the_caption():
    """A model trained both ways on two pairs (caption_share 0.5) scores each caption highest on its own image."""
    pairs = [([5, 6, 7], [1] * 9), ([8, 9, 10], [2, 3] * 4 + [2])]
    batch = np.stack([np.array(cogview_sample(t, c, VOCAB)) for t, c in pairs] * 4)
    model = cogview(seed=3, seq_len=16)
    mix = CaptionMix(VOCAB, 0.5)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    rng = np.random.default_rng(0)
    for _ in range(150):
        loss = model(torch.from_numpy(mix.build_batch(list(batch), rng)))["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    images = torch.tensor([c for _, c in pairs])
    for i, (text, _) in enumerate(pairs):
        assert int(caption_scores(model, text, images, VOCAB).argmax()) == i
    assert split_cogview_sample(batch[0].tolist(), VOCAB)[0] == pairs[0][0]
