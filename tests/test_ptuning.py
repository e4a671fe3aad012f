"""P-tuning v2: deep prompts on a frozen GLM, classification as blank filling, the full fine-tuning baseline."""
from __future__ import annotations

import json
import random

import pytest
import torch
import torch.nn.functional as F

from tokenizer.vocab import Vocab
from train.configs import Config, with_vocab
from train.glm_generate import BlankFiller, score_spans
from train.glm_model import GLMModel
from train.layers import KVCache
from train.ptuning import (ClozeTask, DeepPrompt, evaluate, label_scores, load_prompt, parse_verbalizer,
                           read_labeled, save_prompt, trainable_parameters, tune)

torch.set_num_threads(1)
VOCAB = Vocab.build(40, image_codes=8)
MASK = VOCAB.token_id("[MASK]")


class Letters:
    """A tokenizer of capital letters (ids 3..28) and '.' (id 30)."""

    vocab = VOCAB

    def encode(self, text):
        return [30 if c == "." else ord(c) - ord("A") + 3 for c in text]

    def decode(self, ids):
        return "".join("." if i == 30 else chr(i - 3 + ord("A")) for i in ids)


def model_and_filler(seed=0):
    torch.manual_seed(seed)
    model = GLMModel(with_vocab(Config(d_model=32, n_layers=2, n_heads=4, d_ff=64, seq_len=24), VOCAB))
    return model, BlankFiller(model, VOCAB)


def rows(n, seed):
    """Letter strings labelled 'yes' four times in five: a prior the prompt has to learn."""
    rng = random.Random(seed)
    return [("".join(rng.choice("ABCDEFGHIJ") for _ in range(6)), "yes" if rng.random() < 0.8 else "no")
            for _ in range(n)]


TASK = ClozeTask("{text}.[MASK]", {"yes": "Y", "no": "N"})


def mean_loss(model, filler, data, prompt):
    encoded = [TASK.encode(Letters(), filler, t, 24) for t, _ in data]
    with torch.no_grad():
        scores = label_scores(model, VOCAB, encoded, TASK.word_ids(Letters()), prompt)
    return float(F.cross_entropy(scores, torch.tensor([TASK.labels.index(label) for _, label in data])))


def test_a_prompt_is_a_cache_every_position_sees():
    model, filler = model_and_filler()
    prompt = DeepPrompt.for_model(model, 5, torch.Generator().manual_seed(0), text_ids=VOCAB.text_vocab_size)
    assert prompt.keys.shape == (2, 4, 5, 8) and prompt.cache(3).length == 5 and prompt.cache(3).batch == 3
    row = ([3, 4, MASK, 6], 2, [7, 8])
    # the prompt keys/values placed in a cache by hand give the same score
    cache = KVCache(2)
    for i, layer in enumerate(cache.layers):
        layer.k, layer.v = prompt.keys[i][None].detach(), prompt.values[i][None].detach()
    with torch.no_grad():
        by_hand = score_spans(model, VOCAB, [row], cache=cache)
        with_prompt = score_spans(model, VOCAB, [row], cache=prompt.cache(1))
        without = score_spans(model, VOCAB, [row])
    torch.testing.assert_close(by_hand, with_prompt)
    assert not torch.allclose(with_prompt, without)


def test_batched_scores_equal_one_row_at_a_time():
    model, filler = model_and_filler(1)
    data = [([3, MASK], 1, [5]), ([3, 4, 5, 6, MASK, 9], 4, [7, 8, 9]), ([MASK, 4], 0, [])]
    with torch.no_grad():
        batched = score_spans(model, VOCAB, data)
        single = torch.cat([score_spans(model, VOCAB, [r]) for r in data])
    torch.testing.assert_close(batched, single, rtol=0, atol=1e-5)
    assert filler.span_logprob([3, 4, 5, 6, MASK, 9], [7, 8, 9]) == pytest.approx(
        float(score_spans(model, VOCAB, data[1:2], allowed=filler._allowed).detach()[0]), abs=1e-5)


def test_ptuning_trains_the_prompt_only_and_the_base_stays_bit_identical():
    model, filler = model_and_filler(2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train, test = rows(200, 0), rows(200, 1)
    prompt = tune(model, Letters(), filler, TASK, train, prompt_length=4, steps=60, batch_size=16, lr=3e-2, seed=0)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    trainable, base = trainable_parameters(model, prompt)
    assert trainable == 2 * 2 * 4 * 4 * 8 and trainable / base < 0.03   # keys and values, layers, heads, length, dim
    untuned = DeepPrompt.for_model(model, 4, torch.Generator().manual_seed(0), VOCAB.text_vocab_size)
    assert mean_loss(model, filler, train, prompt) < 0.85 * mean_loss(model, filler, train, untuned)
    majority = sum(label == "yes" for _, label in test) / len(test)
    assert evaluate(model, Letters(), filler, TASK, test, prompt)["accuracy"] >= majority - 0.02


def test_full_fine_tuning_learns_what_the_text_says():
    model, filler = model_and_filler(3)
    rng = random.Random(5)
    data = ["".join(rng.choice("ABCDEFGHIJ") for _ in range(6)) for _ in range(500)]
    labelled = [(t, "yes" if "A" in t else "no") for t in data]
    assert tune(model, Letters(), filler, TASK, labelled[:400], full=True, steps=400, lr=3e-3) is None
    assert evaluate(model, Letters(), filler, TASK, labelled[400:])["accuracy"] >= 0.9


def test_saved_prompt_reloads_and_refuses_another_base(tmp_path):
    from tokenizer.vq import CheckpointError

    model, filler = model_and_filler(4)
    prompt = DeepPrompt.for_model(model, 3, torch.Generator().manual_seed(1), VOCAB.text_vocab_size)
    save_prompt(prompt, TASK, str(tmp_path / "p"), "abc")
    loaded, task = load_prompt(str(tmp_path / "p"), model, "abc")
    assert task == TASK and torch.equal(loaded.keys, prompt.keys) and torch.equal(loaded.values, prompt.values)
    with pytest.raises(CheckpointError, match="another base"):
        load_prompt(str(tmp_path / "p"), model, "def")
    torch.save({"keys": torch.zeros(2, 3, 3, 8), "values": torch.zeros(2, 3, 3, 8)}, tmp_path / "p" / "prompt.pt")
    with pytest.raises(CheckpointError, match="shaped"):
        load_prompt(str(tmp_path / "p"), model, "abc")


def test_task_and_input_checks(tmp_path):
    with pytest.raises(ValueError):
        ClozeTask("{text}", {"a": "A", "b": "B"})
    with pytest.raises(ValueError):
        ClozeTask("{text}[MASK]", {"a": "A"})
    model, filler = model_and_filler()
    ids, pos = TASK.encode(Letters(), filler, "ABCDEFGHIJABCDEFGHIJABCDEFGHIJ", 24)
    assert len(ids) + 1 + 1 <= 24 and ids[pos] == MASK and ids[-2:] == [30, MASK]   # the text cut, not the shell
    with pytest.raises(ValueError, match="not in the verbalizer"):
        tune(model, Letters(), filler, TASK, [("AB", "maybe")], steps=1)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a", "label": "x"}\n{"text": 3}\n', encoding="utf-8")
    with pytest.raises(ValueError, match="bad.jsonl:2"):
        read_labeled(str(bad))
    assert parse_verbalizer("工学, 农学") == {"工学": "工学", "农学": "农学"}
    assert parse_verbalizer(json.dumps({"eng": "工学", "agr": "农学"})) == {"eng": "工学", "agr": "农学"}


def test_ptune_command_tunes_saves_and_evaluates(tmp_path, capsys):
    from pipelines.cli import main
    from tests.test_glm_generate import _tokenizer_and_checkpoint

    tok, ckpt = _tokenizer_and_checkpoint(tmp_path)
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps({"text": f"第{i}行", "label": "北京" if i % 2 else "首都"},
                                       ensure_ascii=False) + "\n" for i in range(40)), encoding="utf-8")
    args = ["ptune", "--checkpoint", ckpt, "--tokenizer", tok, "--verbalizer", "北京,首都", "--template",
            "{text}：[MASK]", "--steps", "5", "--batch-size", "4", "--prompt-length", "2"]
    assert main(args + ["--train", str(data), "--eval", str(data), "--out", str(tmp_path / "p")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["examples"] == 40 and 0 < out["trainable_share_percent"] < 5
    assert main(["ptune", "--checkpoint", ckpt, "--tokenizer", tok, "--prompt", str(tmp_path / "p"),
                 "--eval", str(data)]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["accuracy"] == out["accuracy"]
    assert main(args + ["--train", str(data), "--full", "--out", str(tmp_path / "full")]) == 0
    full = json.loads(capsys.readouterr().out)
    assert full["trainable_share_percent"] == 100.0 and full["saved"].endswith("ckpt.pt")
    assert main(["generate", "--checkpoint", full["saved"], "--tokenizer", tok, "--text", "第1行：[MASK]"]) == 0
    capsys.readouterr()
    assert main(["ptune", "--checkpoint", ckpt, "--tokenizer", tok, "--eval", str(data)]) == 1
    assert "--verbalizer and --template" in capsys.readouterr().err


def test_a_prompt_steers_a_frozen_model_that_has_the_feature():
    """A model fine-tuned to answer Y when a string holds an A is frozen; a prompt of 8 positions, trained on the
    swapped verbalizer (Y means no), turns its answers round: accuracy from 0 to at least 0.95."""
    model, filler = model_and_filler(3)
    rng = random.Random(5)
    data = ["".join(rng.choice("ABCDEFGHIJ") for _ in range(6)) for _ in range(600)]
    labelled = [(t, "yes" if "A" in t else "no") for t in data]
    tune(model, Letters(), filler, TASK, labelled[:400], full=True, steps=400, lr=3e-3)
    swapped = ClozeTask("{text}.[MASK]", {"yes": "N", "no": "Y"})
    assert evaluate(model, Letters(), filler, swapped, labelled[400:])["accuracy"] <= 0.05
    prompt = tune(model, Letters(), filler, swapped, labelled[:400], steps=300, prompt_length=8, lr=3e-2)
    assert evaluate(model, Letters(), filler, swapped, labelled[400:], prompt)["accuracy"] >= 0.95
