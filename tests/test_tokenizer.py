"""Bilingual SentencePiece tokenizer, shared id space and the Beam sampling job (issue 5)."""
from __future__ import annotations

import gzip
import json
import os
import random
import shutil

import pytest
from hypothesis import given, settings, strategies as st

from pipelines.tokenizer_job import sample_rates, train_tokenizer, unit_hash
from tokenizer.text import MODEL_FILE, TextTokenizer, tokenizer_hash, train_sentencepiece
from tokenizer.vocab import SPECIAL_TOKENS, Vocab

HAN = ("的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而"
       "方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本去把性好"
       "应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第向"
       "道命此变条只没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总次品式活设及管特"
       "件长求老头基资边流路级少图山统接知较将组见计别她手角期根论运农指几九区强放决西被干做必战先回则任取据处理")
PUNCT = "，。！？、：；“”（）"
WORDS = ("the of and to in is was for on that with as by at from his it an were are which this be has or "
         "had not first one their its new after who they two her she been other when there all during into "
         "school time may years more most only over city some world would where later up such used many can "
         "state about national out known university united then made").split()


def _zh(rng: random.Random) -> str:
    lines = ["".join(rng.choice(HAN) for _ in range(rng.randint(8, 30))) + rng.choice(PUNCT) for _ in range(4)]
    return "\n".join(lines)


def _en(rng: random.Random) -> str:
    return "\n".join(" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 15))) + f" {rng.randint(0, 999)}."
                     for _ in range(3))


def _write_corpus(folder: str, seed: int = 7) -> dict[str, int]:
    """Two JSONL.gz parts: ~300 zh, ~600 en and 50 ja records; returns characters per language."""
    rng = random.Random(seed)
    chars = {"zh": 0, "en": 0, "ja": 0}
    os.makedirs(folder)
    for part in range(2):
        with gzip.open(os.path.join(folder, f"part-{part:05d}.jsonl.gz"), "wt", encoding="utf-8") as f:
            for k in range(475):
                lang = "ja" if k % 19 == 0 else ("zh" if k % 3 == 0 else "en")
                content = _zh(rng) if lang != "en" else _en(rng)
                chars[lang] += len(content)
                f.write(json.dumps({"id": f"{part}-{k}", "content": content, "title": "", "lang": lang,
                                    "source": "test"}, ensure_ascii=False) + "\n")
            f.write("not json\n")
    return chars


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    base = tmp_path_factory.mktemp("tok")
    chars = _write_corpus(str(base / "corpus"))
    info = train_tokenizer([str(base / "corpus" / "part-*.jsonl.gz")], str(base / "model"), vocab_size=1200,
                           sample_chars=40_000, seed=0, character_coverage=0.9995)
    return base, chars, info


@pytest.fixture(scope="module")
def tok(trained):
    return TextTokenizer.load(str(trained[0] / "model"))


# ---- sampling ----

def test_sample_rates_exact_cases():
    assert sample_rates({"zh": 1000, "en": 1000}, 1000, 0.5) == {"zh": 0.5, "en": 0.5}
    assert sample_rates({"zh": 1000, "en": 4000}, 1000, 0.5) == {"zh": 0.5, "en": 0.125}
    # English too small for its half: the Chinese side shrinks so the share holds
    assert sample_rates({"zh": 1000, "en": 100}, 1000, 0.5) == {"zh": 0.1, "en": 1.0}
    # a missing language leaves the whole budget to the other
    assert sample_rates({"zh": 4000}, 1000, 0.5) == {"zh": 0.25, "en": 0.0}
    assert sample_rates({}, 1000, 0.5) == {"zh": 0.0, "en": 0.0}
    assert sample_rates({"zh": 10, "en": 10}, 1000, 1.0) == {"zh": 1.0, "en": 0.0}
    with pytest.raises(ValueError):
        sample_rates({"zh": 1}, 1, 1.5)


def test_unit_hash_is_stable_and_seeded():
    assert unit_hash(0, "a") == unit_hash(0, "a")
    assert unit_hash(0, "a") != unit_hash(1, "a")
    values = [unit_hash(3, str(i)) for i in range(2000)]
    assert all(0.0 <= v < 1.0 for v in values)
    assert 0.45 < sum(v < 0.5 for v in values) / len(values) < 0.55


def test_sample_is_balanced_and_ignores_other_languages(trained):
    _, chars, info = trained
    assert info["corpus_chars"] == {"zh": chars["zh"], "en": chars["en"]}  # ja routed away
    assert set(info["sample"]) == {"zh", "en"}
    assert abs(info["sample_zh_share"] - 0.5) < 0.1
    total = sum(v["chars"] for v in info["sample"].values())
    assert 0.8 * 40_000 < total < 1.2 * 40_000


def test_training_is_deterministic(trained, tmp_path):
    base, _, info = trained
    again = train_tokenizer([str(base / "corpus" / "part-*.jsonl.gz")], str(tmp_path / "again"), vocab_size=1200,
                            sample_chars=40_000, seed=0)
    assert again == info
    for name in (MODEL_FILE, "vocab.json"):
        assert (tmp_path / "again" / name).read_bytes() == (base / "model" / name).read_bytes()
    assert tokenizer_hash(str(tmp_path / "again")) == tokenizer_hash(str(base / "model"))


def test_no_zh_or_en_text_is_an_error(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({"id": "1", "content": "こんにちは", "lang": "ja"}) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match="no zh/en"):
        train_tokenizer([str(path)], str(tmp_path / "m"), vocab_size=300)


# ---- the id space ----

def test_id_space_layout(trained, tok):
    data = json.loads((trained[0] / "model" / "vocab.json").read_text())
    v = data["text_vocab_size"]
    assert v == tok.sp.get_piece_size() == 1200
    assert data["special_tokens"] == {name: v + k for k, name in enumerate(SPECIAL_TOKENS)}
    assert list(SPECIAL_TOKENS[:9]) == ["[MASK]", "[sMASK]", "[gMASK]", "[sop]", "[eop]", "[CLS]", "[SEP]",
                                        "<|endoftext|>", "[PAD]"]
    assert data["image_code_offset"] == v + 16 and data["image_codes"] == 8192
    assert data["total_size"] == v + 16 + 8192 == len(tok)
    vocab = tok.vocab
    assert vocab.token_id("[gMASK]") == v + 2 and vocab.token_id("[EOI2]") == v + 15
    assert vocab.image_code_id(0) == v + 16 and vocab.image_code_id(8191) == v + 16 + 8191
    assert not vocab.is_image_code(v + 15) and vocab.is_image_code(v + 16)
    assert vocab.is_image_code(v + 16 + 8191) and not vocab.is_image_code(v + 16 + 8192)
    with pytest.raises(ValueError):
        vocab.image_code_id(8192)
    with pytest.raises(KeyError):
        vocab.token_id("[NOPE]")


def test_vocab_json_round_trip_and_bad_layouts(tmp_path):
    vocab = Vocab.build(100, "ab", image_codes=4)
    vocab.write(str(tmp_path))
    assert Vocab.load(str(tmp_path)) == vocab and vocab.total_size == 120
    bad = vocab.to_json() | {"total_size": 121}
    (tmp_path / "vocab.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError):
        Vocab.load(str(tmp_path))
    specials = dict(vocab.special_tokens, **{"[MASK]": 5})
    with pytest.raises(ValueError):
        Vocab(100, specials, 116, 4, 120)


def test_load_rejects_a_model_that_does_not_match(trained, tmp_path):
    shutil.copytree(trained[0] / "model", tmp_path / "m")
    data = json.loads((tmp_path / "m" / "vocab.json").read_text())
    (tmp_path / "m" / "vocab.json").write_text(json.dumps(data | {"model_sha256": "0" * 64}))
    with pytest.raises(ValueError, match="model_sha256"):
        TextTokenizer.load(str(tmp_path / "m"))
    assert tokenizer_hash(str(tmp_path / "m")) != tokenizer_hash(str(trained[0] / "model"))


# ---- encode / decode ----

EXAMPLES = ["", " ", "\n", "\n\n", "你好，世界！这是测试。", "hello world", "  two  spaces\tand tab ",
            "混合 mixed 文字 text 123", "😀🦜 emoji", "ЁЖ ελληνικά العربية हिन्दी", "\u2581literal marker\u2581",
            "<n> is not a newline", " leading\nand trailing \n", "\r\n windows", "\x00\x7f", "ｆｕｌｌ１２３",
            "a" * 5000]


@pytest.mark.parametrize("text", EXAMPLES)
def test_round_trip_examples(tok, text):
    assert tok.decode(tok.encode(text)) == text


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.text(max_size=80))
def test_round_trip_any_text(tok, text):
    ids = tok.encode(text)
    assert all(tok.vocab.is_text(i) for i in ids)
    assert tok.decode(ids) == text


def test_encode_batch_matches_encode(tok):
    assert tok.encode_batch(EXAMPLES) == [tok.encode(t) for t in EXAMPLES]
    assert tok.encode_batch(EXAMPLES, num_threads=1) == tok.encode_batch(EXAMPLES, num_threads=2)
    assert tok.encode_batch([]) == []


def test_newlines_survive_as_the_n_piece(tok):
    ids = tok.encode("第一行\n\nsecond line\n")
    assert ids.count(tok.newline_id) == 3 and ids[-1] == tok.newline_id
    assert tok.sp.id_to_piece(tok.newline_id) == "<0x0A>"
    assert tok.decode([tok.sp.piece_to_id("<n>")]) == "\n"  # the control piece decodes as a newline too
    assert tok.newline_id not in tok.encode("literal <n>")
    assert tok.encode("中文 line\nnext") == tok.encode("中文 line") + [tok.newline_id] + tok.encode("next")
    mark = [tok.sp.piece_to_id(p) for p in ("<0xE2>", "<0x96>", "<0x81>")]
    assert tok.encode("a\u2581b") == tok.encode("a") + mark + tok.encode("b")


def test_byte_fallback_for_unseen_characters(tok):
    ids = tok.encode("🦜")
    assert [tok.sp.id_to_piece(i) for i in ids] == ["<0xF0>", "<0x9F>", "<0xA6>", "<0x9C>"]
    assert tok.sp.unk_id() not in tok.encode("🦜 龘 ☃ \u0301")


def test_digits_split_and_chinese_punctuation_kept(tok):
    assert [tok.sp.id_to_piece(i) for i in tok.encode("2024")] == ["2", "0", "2", "4"]
    for mark in "，。！？":
        (only,) = tok.encode(mark)
        assert tok.sp.id_to_piece(only) == mark  # not NFKC-folded to ASCII


def test_decode_of_ids_past_the_text_range(tok):
    vocab = tok.vocab
    ids = tok.encode("ab") + [vocab.token_id("[gMASK]"), vocab.image_code_id(17)] + tok.encode("c")
    with pytest.raises(ValueError, match="not a text piece"):
        tok.decode(ids)
    assert tok.decode(ids, specials="name") == "ab[gMASK]<image:17>c"
    assert tok.decode(ids, specials="skip") == "abc"
    for bad in (-1, vocab.total_size):
        with pytest.raises(ValueError):
            tok.decode([bad], specials="name")


def test_bad_input(tok):
    with pytest.raises(TypeError):
        tok.encode(b"bytes")
    with pytest.raises(ValueError):
        tok.encode("lone \ud800 surrogate")


def test_bpe_model_round_trips(trained, tmp_path):
    lines = tmp_path / "lines.txt"
    rng = random.Random(1)
    lines.write_text("\n".join(_zh(rng) + " " + _en(rng) for _ in range(200)), encoding="utf-8")
    train_sentencepiece([str(lines)], str(tmp_path / "bpe"), vocab_size=700, model_type="bpe")
    bpe = TextTokenizer.load(str(tmp_path / "bpe"))
    assert bpe.vocab.text_vocab_size == 700
    for text in EXAMPLES:
        assert bpe.decode(bpe.encode(text)) == text
    with pytest.raises(ValueError):
        train_sentencepiece([str(lines)], str(tmp_path / "x"), vocab_size=700, model_type="word")
