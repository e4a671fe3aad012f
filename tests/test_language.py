"""Language ID: the bundled model on real sentences, held-out corpus text, the `language` step, user models."""
from __future__ import annotations

import functools
import importlib.util
import pickle
import random
import sys
from pathlib import Path

import pytest

from cleaners.document import Document
from cleaners.language import BUNDLED_MODEL, LanguageID, guess_zh_or_en, identify, lid_line, normalize_label

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("text, lang", [
    ("国务院今天召开常务会议，研究部署进一步稳定就业的政策措施。", "zh"),
    ("我昨天晚上和朋友一起去看了一场电影，感觉还不错。", "zh"),
    ("臺北市政府今日宣布，明年起將擴大補助青年租屋。", "zh"),       # traditional
    ("春眠不覺曉，處處聞啼鳥。夜來風雨聲，花落知多少。", "zh"),       # traditional, classical
    ("The committee will publish its final report on climate policy next spring.", "en"),
    ("She opened the window and listened to the rain falling on the roof.", "en"),
    ("明日の午後に会議室で打ち合わせをする予定になっています。", "ja"),
    ("駅前の本屋で新しい小説を買いました。", "ja"),
    ("Вчера вечером мы долго гуляли по набережной и разговаривали о жизни.", "ru"),
    ("Le musée sera fermé lundi prochain en raison de travaux de rénovation.", "fr"),
    ("Der Zug nach München hat heute leider zwanzig Minuten Verspätung.", "de"),
    ("El museo estará cerrado el próximo lunes por obras de renovación.", "es"),
    ("저는 주말마다 도서관에 가서 책을 읽습니다.", "ko"),
])
def test_identify_real_sentences(text, lang):
    got, score = identify(text)
    assert got == lang
    assert 0.5 < score <= 1.0


@pytest.mark.parametrize("text", ["北京", "上海天气", "中國", "今天"])
def test_identify_short_chinese(text):
    assert identify(text)[0] == "zh"


@pytest.mark.parametrize("text", ["", "   \n\t ", "!!! ??? ...", "2023-01-01 12:00:00", "，。！"])
def test_identify_nothing_to_judge_is_undetermined(text):
    assert identify(text) == ("other", 0.0)


def test_identify_mixed_text_goes_to_the_majority():
    zh_major = "我们团队最近在项目里用 PyTorch 训练了一个中文文本分类模型，效果比以前好很多，大家都很满意。"
    en_major = ("Our team spent the last month rewriting the data pipeline, and the new 数据 "
                "loader is much faster than the old one on every benchmark we tried.")
    assert identify(zh_major)[0] == "zh"
    assert identify(en_major)[0] == "en"


def test_identify_rejects_non_string():
    with pytest.raises(TypeError):
        identify(None)  # type: ignore[arg-type]


def test_lid_line_normalises_like_training():
    assert lid_line("Hello, World!\n你好，世界 2024") == "hello world 你 好 世 界"
    assert lid_line("12 + 34 = 46") == ""


@pytest.mark.parametrize("label, code", [
    ("__label__zh", "zh"), ("__label__cmn_Hani", "zh"), ("__label__zho_Hans", "zh"),
    ("__label__zho_Hant", "zh"), ("__label__eng_Latn", "en"), ("__label__jpn_Jpan", "ja"),
    ("__label__en", "en"), ("zh-CN", "zh"), ("__label__yue_Hant", "yue"), ("__label__other", "other"),
])
def test_normalize_label(label, code):
    assert normalize_label(label) == code


def test_bundled_model_is_small():
    assert Path(BUNDLED_MODEL).stat().st_size < 5_000_000


# ------------------------------------------------------------------------------ held-out corpus text


@functools.lru_cache(maxsize=1)
def _training_script():
    spec = importlib.util.spec_from_file_location("train_langid", REPO / "scripts" / "train_langid.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module           # dataclasses look their module up while building
    spec.loader.exec_module(module)
    return module


@functools.lru_cache(maxsize=1)
def _examples(samples: Path):
    return _training_script().build_examples(samples)


SYNTHETIC_GROUPS = ("stoplist-", "ja-lexicon#", "handwritten#")


def test_held_out_corpus_accuracy(corpus_samples):
    examples = _examples(corpus_samples)
    held = [e for e in examples if e.held_out and not e.group.startswith(SYNTHETIC_GROUPS)]
    by_label: dict[str, list[bool]] = {}
    for e in held:
        by_label.setdefault(e.label, []).append(identify(e.text)[0] == e.label)
    assert len(by_label["zh"]) > 1000 and len(by_label["en"]) > 500
    for label in ("zh", "en"):
        accuracy = sum(by_label[label]) / len(by_label[label])
        assert accuracy >= 0.98, (label, accuracy)
    # traditional-character Tang poems are zh too
    tang = [e for e in held if e.group.startswith("quantangshi__poet.tang")]
    assert tang and all(identify(e.text)[0] == "zh" for e in tang)


def test_held_out_split_is_disjoint_from_training(corpus_samples):
    script = _training_script()
    examples = _examples(corpus_samples)
    train_groups = {e.group for e in script.training_set(examples)}
    held_groups = {e.group for e in examples if e.held_out}
    assert held_groups and not (train_groups & held_groups)


# --------------------------------------------------------------------------------------------- step


def _doc(text: str) -> Document:
    return Document(id="d1", text=text)


def test_step_keeps_chinese_and_sets_fields():
    step = LanguageID()
    step.setup()
    doc = _doc("这家公司去年的营业收入增长了百分之二十，利润也创下了历史新高。")
    out = step.apply(doc)
    assert out is doc
    assert doc.lang == "zh" and doc.lang_score > 0.9 and doc.scores["lang"] == doc.lang_score


def test_step_drop_reasons():
    step = LanguageID()
    assert step.apply(_doc("来週の月曜日に東京で新しい展示会が始まります。")) == "lang:ja"
    assert step.apply(_doc("Сегодня в городе открылась новая библиотека.")) == "lang:ru"
    assert step.apply(_doc("Dit is een korte zin in het Nederlands over het weer van vandaag.")) == "lang:other"
    assert step.apply(_doc("")) == "lang-low-score"
    assert step.apply(_doc("--- 404 ---")) == "lang-low-score"


def test_step_keep_all_and_custom_keep():
    step = LanguageID()
    step.keep = ()
    doc = _doc("来週の月曜日に東京で新しい展示会が始まります。")
    assert step.apply(doc) is doc and doc.lang == "ja"
    step.keep = ("ja",)
    assert step.apply(_doc("The library opens at nine.")) == "lang:en"


def test_step_min_score_applies_before_language():
    step = LanguageID(min_score=1.0)
    # a real, clear sentence still scores below a threshold no prediction can exceed
    result = step.apply(_doc("Der Zug nach München hat heute leider zwanzig Minuten Verspätung."))
    assert result == "lang-low-score"


@pytest.mark.parametrize("bad", [-0.1, 1.5])
def test_step_rejects_bad_min_score(bad):
    with pytest.raises(ValueError):
        LanguageID(min_score=bad)


def test_step_pickles_before_and_after_setup():
    step = LanguageID(min_score=0.6)
    clone = pickle.loads(pickle.dumps(step))
    assert clone.min_score == 0.6 and clone.keep == ("zh", "en")
    step.setup()
    clone = pickle.loads(pickle.dumps(step))          # the model is left behind and reloaded lazily
    assert clone._model is None
    assert clone.apply(_doc("我们明天早上八点在学校门口集合。")).lang == "zh"


def test_missing_model_path_is_a_clear_error(tmp_path):
    step = LanguageID(model_path=str(tmp_path / "nope.bin"))
    with pytest.raises(FileNotFoundError, match="nope.bin"):
        step.setup()


# ------------------------------------------------------------------------------------- a user model

_ZH_CHARS = "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可也你说年发"
_EN_WORDS = ("time year people way day man thing woman life child world school state family student group "
             "country problem hand part place case week company system program question work government "
             "number night point home water room mother area money story fact month lot right study book "
             "eye job word business issue side kind head house service friend father power hour game line").split()
_JA_WORDS = ("わたし あなた これ それ ここ そこ ありがとう すみません おはよう "
             "こんにちは たべる のむ みる いく くる").split()


def _train_glotlid_style(tmp_path: Path) -> str:
    rng = random.Random(7)
    lines = []
    for _ in range(300):
        zh = "".join(rng.choices(_ZH_CHARS, k=rng.randint(6, 20)))
        lines.append(f"__label__cmn_Hani {lid_line(zh)}")
        en = " ".join(rng.choices(_EN_WORDS, k=rng.randint(4, 12)))
        lines.append(f"__label__eng_Latn {lid_line(en)}")
        ja = "".join(rng.choices(_JA_WORDS, k=rng.randint(3, 8)))
        lines.append(f"__label__jpn_Jpan {lid_line(ja)}")
    rng.shuffle(lines)
    train = tmp_path / "train.txt"
    train.write_text("\n".join(lines) + "\n", encoding="utf-8")
    from cleaners.fasttext_text import train_supervised

    model = train_supervised(str(train), seed=1, epoch=10, dim=16, bucket=10_000, minn=1, maxn=2,
                                wordNgrams=1, thread=1, verbose=0)
    path = tmp_path / "glotlid_style.bin"
    model.save_model(str(path))
    return str(path)


def test_user_model_with_glotlid_labels(tmp_path):
    path = _train_glotlid_style(tmp_path)
    assert identify("我们的国家是一个大国", model_path=path)[0] == "zh"
    assert identify("the company work and the student study", model_path=path)[0] == "en"
    step = LanguageID(model_path=path)
    step.keep = ("zh", "en")
    doc = _doc("他们说这个时候来了")
    assert step.apply(doc) is doc and doc.lang == "zh"
    assert step.apply(_doc("ありがとう すみません これ")) == "lang:ja"
    clone = pickle.loads(pickle.dumps(step))
    assert clone.apply(_doc("family and friend at home")).lang == "en"


def test_unseen_modern_news_headlines_are_chinese(corpus_samples):
    """THUCNews headlines are never used in training (research-use terms), so they are a clean held-out set."""
    path = corpus_samples / "zh_text" / "thucnews_titles" / "test.txt"
    titles = [line.split("\t")[0] for line in path.read_text("utf-8").splitlines() if line.strip()]
    hits = sum(identify(title)[0] == "zh" for title in titles)
    assert len(titles) == 10_000 and hits / len(titles) >= 0.98


@pytest.mark.parametrize("text, lang", [("城市公园完成改造，市民可以散步。", "zh"), ("The park reopened today.", "en"),
                                        ("我用 Python 写了一个脚本", "zh"), ("", "en"), ("12345 !!!", "en"),
                                        ("Beijing 北京 is a big city in the north", "en")])
def test_guess_zh_or_en_by_script(text, lang):
    assert guess_zh_or_en(text) == lang
