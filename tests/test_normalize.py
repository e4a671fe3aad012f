"""Normalization rules (cleaners/normalize.py): exact outputs on small inputs, invariants, real text."""
from __future__ import annotations

import json
import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cleaners.document import Document
from cleaners.normalize import EMPTY_REASON, Normalize, TraditionalToSimplified, normalize_text, to_simplified
from cleaners.recipe import build_steps


# --- Unicode form and width -------------------------------------------------------------------------

def test_nfc_composes_but_keeps_chinese_fullwidth_punctuation():
    assert normalize_text("Cafe\u0301") == "Café"
    assert normalize_text("你好，世界！真的吗？（是的）：好。") == "你好，世界！真的吗？（是的）：好。"


def test_fullwidth_letters_digits_and_ideographic_space_become_halfwidth():
    assert normalize_text("ＡＢＣ　ｘｙｚ　０１２３４５６７８９") == "ABC xyz 0123456789"
    # full-width punctuation and symbols outside the letter/digit ranges stay
    assert normalize_text("价格：１００％，＃话题＃") == "价格：100％，＃话题＃"


def test_fullwidth_folding_can_be_turned_off():
    assert normalize_text("ＡＢＣ１２３", fullwidth_ascii=False) == "ＡＢＣ１２３"


# --- invisible characters ---------------------------------------------------------------------------

@pytest.mark.parametrize("invisible", ["\u200b", "\u200c", "\u200d", "\u200e", "\u200f", "\u2060", "\ufeff",
                                       "\u00ad", "\u202e", "\x00", "\x07", "\x1b", "\x7f", "\x9f", "\U000e0041"])
def test_invisible_and_control_characters_are_removed(invisible):
    assert normalize_text(f"数{invisible}据{invisible}") == "数据"


def test_lone_surrogates_are_removed_so_the_text_can_be_encoded():
    out = normalize_text("ab\ud800c\udfff")
    assert out == "abc"
    out.encode("utf-8")


def test_arabic_number_sign_is_format_but_visible_and_stays():
    assert normalize_text("\u0600123") == "\u0600123"


# --- whitespace -------------------------------------------------------------------------------------

def test_whitespace_rules_exact():
    raw = "  第一段\t\t有  空格  \r\n第二行\u00a0\u2003结束 \n\n\n\n\n 第二段 \r第三行\u2028末尾  "
    assert normalize_text(raw) == "第一段 有 空格\n第二行 结束\n\n第二段\n第三行\n末尾"


def test_single_newlines_and_one_blank_line_survive():
    assert normalize_text("a\nb\n\nc") == "a\nb\n\nc"


def test_title_mode_makes_one_line():
    assert normalize_text(" 标题\n 第二行\r\n", single_line=True) == "标题 第二行"


# --- repeated punctuation ---------------------------------------------------------------------------

@pytest.mark.parametrize("raw,expected", [
    ("真的吗？？？？？？", "真的吗？？？"),
    ("wow!!!!!!!!", "wow!!!"),
    ("等等......", "等等..."),
    ("等等...", "等等..."),
    ("然后……", "然后……"),
    ("然后…………………", "然后……"),
    ("破折——————号", "破折——号"),
    ("哈哈～～～～～", "哈哈～～～"),
    ("填空____", "填空___"),
    ("!!?!!", "!!?!!"),
    ("★★★★★好评", "★★★★★好评"),       # a symbol, not punctuation
    ("12345555", "12345555"),             # digits are not punctuation
])
def test_punctuation_runs_are_cut(raw, expected):
    assert normalize_text(raw) == expected


def test_max_punct_repeat_is_a_parameter():
    assert normalize_text("好!!!!!", max_punct_repeat=1) == "好!"
    assert normalize_text("好!!!!!", max_punct_repeat=0) == "好!!!!!"


# --- invariants -------------------------------------------------------------------------------------

_pieces = st.sampled_from(["汉字", "ＡＢ１", "\u3000", " ", "\t", "\n", "\r\n", "！", "!", "…", ".", "\u200b",
                           "e\u0301", "\x00", "abc", "，", "？", "\u00a0", "——", "~"])


@settings(max_examples=300, deadline=None)
@given(st.lists(_pieces, max_size=30).map("".join))
def test_normalize_is_idempotent_and_leaves_no_junk(text):
    once = normalize_text(text)
    assert normalize_text(once) == once
    assert once == once.strip()
    assert "\n\n\n" not in once and "  " not in once and "\t" not in once and "\r" not in once
    assert "\u200b" not in once and "\x00" not in once and "\u3000" not in once


def test_bad_input_is_a_clear_error():
    with pytest.raises(TypeError, match="expects str"):
        normalize_text(b"bytes")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="expects str"):
        to_simplified(None)  # type: ignore[arg-type]


# --- the normalize step -----------------------------------------------------------------------------

def test_normalize_step_changes_text_and_title():
    doc = Document(id="1", text="  正文！！！！！\u200b ＡＢＣ ", title=" 标题\n第二行？？？？ ")
    out = Normalize().apply(doc)
    assert isinstance(out, Document)
    assert (out.text, out.title) == ("正文！！！ ABC", "标题 第二行？？？")


def test_normalize_step_drops_only_documents_left_empty():
    assert Normalize().apply(Document(id="1", text=" \u200b\u3000\n\t\ufeff ")) == EMPTY_REASON
    assert EMPTY_REASON == "empty-after-normalize"
    kept = Normalize().apply(Document(id="2", text="x", title=""))
    assert isinstance(kept, Document) and kept.text == "x"


def test_normalize_step_params_come_from_the_recipe():
    step, = build_steps({"steps": [{"normalize": {"fullwidth_ascii": False, "max_punct_repeat": 2}}]})
    assert isinstance(step, Normalize)
    assert step.apply(Document(id="1", text="ＡＢ!!!!")).text == "ＡＢ!!"
    with pytest.raises(ValueError, match="max_punct_repeat"):
        Normalize(max_punct_repeat="3")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="bad parameters"):
        build_steps({"steps": [{"normalize": {"nfkc": True}}]})


# --- traditional -> simplified ----------------------------------------------------------------------

@pytest.mark.parametrize("traditional,simplified", [
    ("漢字", "汉字"), ("臺灣", "台湾"), ("後來的頭髮", "后来的头发"), ("English only", "English only"), ("", ""),
])
def test_to_simplified_exact(traditional, simplified):
    assert to_simplified(traditional) == simplified


def test_t2s_step_converts_text_and_title_and_pickles():
    step = TraditionalToSimplified()
    restored = pickle.loads(pickle.dumps(step))          # before setup: nothing heavy inside
    doc = restored.apply(Document(id="1", text="這是繁體中文。", title="臺灣新聞"))  # builds lazily
    assert (doc.text, doc.title) == ("这是繁体中文。", "台湾新闻")
    restored.setup()
    again = pickle.loads(pickle.dumps(restored))       # after setup the converter is left behind
    assert again.apply(Document(id="2", text="漢字")).text == "汉字"


def test_t2s_step_unknown_config_is_a_clear_error():
    step = TraditionalToSimplified(config="no-such-config")
    with pytest.raises(ValueError, match="unknown OpenCC config"):
        step.setup()


def test_t2s_default_recipe_runs_it_on_chinese_only():
    step, = build_steps({"steps": [{"t2s": {"languages": ["zh"]}}]})
    assert step.applies_to(Document(id="1", text="x", lang="zh"))
    assert not step.applies_to(Document(id="1", text="x", lang="en"))


def test_t2s_on_real_tang_poems(corpus_samples):
    """Quantangshi poems are in traditional characters: converted text keeps its length and punctuation,
    loses the common traditional-only characters, and a second conversion changes nothing."""
    poems = json.loads((corpus_samples / "zh_text/chinese-poetry/quantangshi__poet.tang.0.json")
                       .read_text(encoding="utf-8"))
    text = "\n".join(line for poem in poems for line in poem["paragraphs"])
    out = to_simplified(text)
    assert len(out) == len(text)
    assert [c for c in text if c in "，。\n"] == [c for c in out if c in "，。\n"]
    assert not set("風雲離連飛觀隱層闕煙") & set(out)
    assert to_simplified(out) == out


def test_t2s_leaves_simplified_headlines_alone(corpus_samples):
    lines = (corpus_samples / "zh_text/thucnews_titles/test.txt").read_text(encoding="utf-8").splitlines()
    titles = [line.split("\t")[0] for line in lines]
    changed = sum(to_simplified(t) != t for t in titles)
    assert changed <= len(titles) // 1000        # OpenCC's phrase table touches a handful of words
