"""One Han-character class (cleaners/han.py), supplementary planes included, in every place that finds or counts
Chinese characters; kana and hangul stay out of it, and places that also want kana or hangul keep them."""
from __future__ import annotations

import re

import pytest

from cleaners import han, normalize
from cleaners.dialogue.rules import SessionCleaner, has_chinese, mostly_chinese, words_of
from cleaners.fasttext_text import fasttext_line
from cleaners.filters.text_stats import count_han as text_stats_count_han
from cleaners.filters.wudao_zh import WudaoZh
from cleaners.image.caption import CaptionChecks
from cleaners.language import guess_zh_or_en
from cleaners.lines import normalize_line
from cleaners.minhash import uses_character_ngrams

EXT_B = "\U00020bb7"      # 𠮷, CJK Unified Ideographs Extension B
EXT_B2 = "\U0002a6a5"     # 𪚥, Extension B
EXT_C = "\U0002a700"      # Extension C
EXT_G = "\U00030000"      # Extension G
EXT_H = "\U00031350"      # Extension H (Unicode 15)
COMPAT_SUP = "\U0002f800"  # CJK Compatibility Ideographs Supplement
SUPPLEMENTARY = [EXT_B, EXT_B2, EXT_C, EXT_G, EXT_H, COMPAT_SUP]
BMP_HAN = ["一", "中", "\u9fff", "\u3400", "\u4dbf", "\uf900"]
NOT_HAN = ["あ", "ア", "ｱ", "한", "ㄱ", "a", "Ж", "1", "，", "。", "\u3000", "\u2f00", "\u3007", " ", "🙂"]


# ---------------------------------------------------------------- the definition

@pytest.mark.parametrize("ch", BMP_HAN + SUPPLEMENTARY)
def test_is_han(ch):
    assert han.is_han(ch)
    assert han.HAN_RE.fullmatch(ch)


@pytest.mark.parametrize("ch", NOT_HAN)
def test_is_not_han(ch):
    assert not han.is_han(ch)


def test_ranges_and_blocks_agree():
    assert han.HAN_RANGES == "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U000323af"
    for first, last in han.HAN_BLOCKS:
        assert han.is_han(chr(first)) and han.is_han(chr(last))
        assert not han.is_han(chr(first - 1)) and not han.is_han(chr(last + 1))
    assert not han.is_han("中文")         # one character only
    assert han.count_han(f"中文{EXT_B}{EXT_B2} abc あ한 {EXT_H}") == 5
    assert han.count_han("") == 0


# ---------------------------------------------------------------- dialogue rules

def test_dialogue_is_chinese_counts_supplementary():
    assert has_chinese(EXT_B + EXT_B2)
    assert not has_chinese("あいうえお") and not has_chinese("한국어") and not has_chinese("hello")
    # two Han against two Latin letters: mostly Chinese (before, supplementary ideographs counted as Latin letters)
    assert mostly_chinese([EXT_B + EXT_B2, "ab"])
    assert not mostly_chinese(["あいう", "ab"])
    assert words_of(f"{EXT_B}{EXT_B2}ab 你好") == [EXT_B, EXT_B2, "ab", "你", "好"]
    cleaner = SessionCleaner()
    assert cleaner.judge(EXT_B + EXT_B2, chinese=True) is None
    assert cleaner.judge("あいうえお", chinese=True) == "no-chinese"
    assert cleaner.judge("한국어입니다", chinese=True) == "no-chinese"


def test_dialogue_ordinary_text_unchanged():
    assert words_of("你好 world 123") == ["你", "好", "world", "123"]
    assert mostly_chinese(["你好", "ok"]) and not mostly_chinese(["你", "hello"])


# ---------------------------------------------------------------- normalize (OpenCC only for text with Han)

class _Recorder:
    def __init__(self):
        self.seen = []

    def convert(self, text):
        self.seen.append(text)
        return text


def test_to_simplified_sends_supplementary_han_to_opencc(monkeypatch):
    recorder = _Recorder()
    monkeypatch.setattr(normalize, "_converter", lambda config: recorder)
    for text in (EXT_B, f"x{EXT_B2}y", "中文"):
        normalize.to_simplified(text)
    for text in ("あいうえお", "한국어", "hello", "Ж"):
        assert normalize.to_simplified(text) == text
    assert recorder.seen == [EXT_B, f"x{EXT_B2}y", "中文"]


def test_t2s_step_sends_supplementary_han_to_opencc():
    step = normalize.TraditionalToSimplified()
    step._opencc = _Recorder()
    step._convert(EXT_B2)
    step._convert("カタカナ")
    assert step._opencc.seen == [EXT_B2]


# ---------------------------------------------------------------- line normalization (spaces next to CJK)

def test_line_spacing_next_to_supplementary_han():
    assert normalize_line(f"{EXT_B} {EXT_B2}") == EXT_B + EXT_B2
    assert normalize_line("中 文") == "中文"
    assert normalize_line("あ い") == "あい"          # kana is part of that class on purpose
    assert normalize_line("한 국") == "한 국"         # hangul is written with spaces
    assert normalize_line("a b") == "a b"


# ---------------------------------------------------------------- fastText lines

def test_fasttext_line_splits_supplementary_han():
    assert fasttext_line(f"{EXT_B}{EXT_B2}") == f"{EXT_B} {EXT_B2}"
    assert fasttext_line("中文") == "中 文"
    assert fasttext_line("あい") == "あ い"           # kana split too, on purpose
    assert fasttext_line("한국어") == "한국어"
    assert fasttext_line("Hello, world") == "hello , world"


# ---------------------------------------------------------------- language, text stats, wudao_zh, minhash

def test_guess_zh_or_en_counts_supplementary():
    assert guess_zh_or_en(f"{EXT_B}{EXT_B2}{EXT_B} ab") == "zh"
    assert guess_zh_or_en("あいうえお") == "en"
    assert guess_zh_or_en("中文 text") == "zh" and guess_zh_or_en("mostly english 中") == "en"


def test_text_stats_count_han():
    assert text_stats_count_han is han.count_han
    assert text_stats_count_han(f"语料库 {EXT_B}{EXT_B2} かな 한글 abc") == 5


def test_wudao_zh_counts_supplementary():
    step = WudaoZh(min_paragraph_chars=10)
    paragraph = (EXT_B + EXT_B2) * 6
    assert step.clean_paragraphs(paragraph) == ([paragraph], 12)
    assert step.clean_paragraphs("あいうえおかきくけこさしすせそ") == ([], 0)


def test_minhash_character_ngrams_for_supplementary():
    assert uses_character_ngrams(None, (EXT_B + EXT_B2) * 3)
    assert uses_character_ngrams(None, "あいうえお")      # kana is unspaced too
    assert not uses_character_ngrams(None, "한국어 문장")


# ---------------------------------------------------------------- image captions

@pytest.fixture(scope="module")
def caption_checks() -> CaptionChecks:
    checks = CaptionChecks()
    checks.setup()
    return checks


def test_caption_language_and_length_with_supplementary(caption_checks):
    assert caption_checks.language(EXT_B + EXT_B2) == "zh"
    assert caption_checks.check(EXT_B + EXT_B2) == "too-short"
    text = EXT_B + EXT_B2 + "汉字字"
    assert caption_checks.check(text) == (text, "zh")
    assert caption_checks.language("あいうえお") == "ja"
    assert caption_checks.language("한국어 문장") == "ko"


# ---------------------------------------------------------------- pipelines that compose the class

def test_dialogue_reader_cjk_class():
    from pipelines.readers.dialogue import _CJK, looks_space_tokenized

    for ch in SUPPLEMENTARY + BMP_HAN + ["あ", "ア", "한"]:      # this one means kana, hangul and Han
        assert _CJK.search(ch), ch
    assert not looks_space_tokenized([f"你 好 {EXT_B}{EXT_B2}"])
    assert not looks_space_tokenized(["你 好 한국"])
    assert looks_space_tokenized(["你 好 吗 , c a l l"])


def test_generic_reply_tokens():
    pytest.importorskip("apache_beam")
    from cleaners.dialogue.sessions import tokens

    assert tokens(f"{EXT_B}{EXT_B2}ab") == [EXT_B, EXT_B2, "ab"]
    assert tokens("你好 World!") == ["你", "好", "world", "!"]
    assert tokens("あいう") == ["あいう"]


def test_no_hand_written_han_range_left():
    """The Han range is written once, in cleaners/han.py."""
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    pattern = re.compile(r"\\u4e00|\u4e00-|0x4E00", re.IGNORECASE)
    offenders = [str(path.relative_to(root)) for folder in ("cleaners", "pipelines", "tokenizer", "train", "shards")
                 for path in sorted((root / folder).rglob("*.py"))
                 if path.name != "han.py" and pattern.search(path.read_text(encoding="utf-8"))]
    assert offenders == []
