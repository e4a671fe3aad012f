"""Whole-filter behaviour: good articles pass every filter of their language, other languages are left
alone, the steps register and build from YAML-like params, and real clean samples mostly pass."""
from __future__ import annotations

import json

import pytest

import cleaners.filters  # noqa: F401  (registers the steps)
from cleaners.document import Document
from cleaners.step import STEPS

ENGLISH_STEPS = ["gopher_quality", "gopher_repetition", "c4", "fineweb", "wordlist"]
CHINESE_STEPS = ["wudao_zh", "wordlist"]

ENGLISH_ARTICLE = """\
When the old textile mill on the east bank of the river closed in 1987, most people in town expected the building to \
be torn down within a year.
Instead, it stood empty for more than three decades, its brick walls slowly covered by ivy and its windows broken one \
by one.
Last spring, a group of local teachers, engineers and retired factory workers formed a cooperative with a simple \
goal: to turn the mill into a place where people could learn practical skills again.
They raised money through small donations, applied for a regional heritage grant and spent every weekend clearing \
debris from the ground floor.
The first workshop opened in September. It offers evening classes in carpentry, basic electronics and bicycle repair, \
taught by volunteers who once worked in the trades themselves.
"We wanted a room where a teenager and a seventy-year-old could stand at the same bench and fix something together," \
said Maria Lopez, who taught physics at the high school for twenty years.
Attendance has grown faster than anyone predicted. More than two hundred people signed up for the autumn term, and \
the waiting list for the welding course is already full until next summer.
The cooperative now plans to restore the upper floors, which still hold rows of cast-iron looms. Some of the machines \
will be repaired and shown to school groups, while the rest of the space will become studios that artists can rent at \
low cost.
Not everyone is convinced the project can last. Heating the building through the winter is expensive, and the roof \
needs repairs that the grant does not cover.
Still, the volunteers remain optimistic. On a recent Saturday, the main hall was full of the sound of saws and \
soldering irons, and for the first time in decades the lights of the old mill stayed on late into the evening.
"""

CHINESE_ARTICLE = """\
近日，记者走进位于城郊的一所乡村小学，看到操场上新铺的塑胶跑道在阳光下格外醒目。校长介绍说，这条跑道是去年秋天在社会各界的帮助下修建的，孩子们从此告别了下雨天满脚泥泞的日子。
学校现有学生三百二十多名，其中不少孩子的父母常年在外务工。为了让留守儿童得到更多关爱，学校组织教师开展结对帮扶，每位老师负责联系五到六名学生，定期家访，了解他们的学习和生活情况。
“以前孩子们放学后没有地方去，现在学校开设了阅读室和兴趣小组，大家都愿意多留一会儿。”一位四年级的班主任告诉记者。阅读室里摆放着两千多册图书，大部分来自城市学校和爱心企业的捐赠。
除了改善硬件条件，学校还注重提升教学质量。近两年来，先后有十多名青年教师通过县里的培训项目到城区学校跟岗学习，把新的教学方法带回课堂。学生们在全县统一测试中的成绩明显提高，家长们对学校的满意度也越来越高。
每到周五下午，学校还会请来附近的农技员和退休工人，给孩子们讲种植、木工和修理的知识。不少学生说，这是他们一周里最盼望的课。
谈到下一步的打算，校长表示，学校计划在明年建成一间科学实验室，让孩子们能够亲手做实验，培养探索精神。他说，乡村孩子同样应该拥有看见更大世界的机会。
"""


def run_steps(names: list[str], document: Document) -> Document | str:
    for name in names:
        step = STEPS[name]()
        step.setup()
        assert step.applies_to(document), name
        result = step.apply(document)
        if isinstance(result, str):
            return f"{name}: {result}"
        document = result
    return document


def test_all_steps_register():
    assert {"wudao_zh", "wordlist", "gopher_quality", "gopher_repetition", "c4", "fineweb"} <= set(STEPS)


def test_good_english_article_passes_every_english_filter_untouched():
    words = len(ENGLISH_ARTICLE.split())
    assert 280 <= words <= 420
    result = run_steps(ENGLISH_STEPS, Document(id="en", text=ENGLISH_ARTICLE.strip(), lang="en"))
    assert isinstance(result, Document), result
    assert result.text == ENGLISH_ARTICLE.strip()


def test_good_chinese_article_passes_every_chinese_filter_untouched():
    assert 450 <= len(CHINESE_ARTICLE) <= 700
    result = run_steps(CHINESE_STEPS, Document(id="zh", text=CHINESE_ARTICLE.strip(), lang="zh"))
    assert isinstance(result, Document), result
    assert result.text == CHINESE_ARTICLE.strip()


def test_filters_do_not_apply_to_other_languages():
    zh = Document(id="zh", text=CHINESE_ARTICLE, lang="zh")
    en = Document(id="en", text=ENGLISH_ARTICLE, lang="en")
    for name in ["gopher_quality", "gopher_repetition", "c4", "fineweb"]:
        assert not STEPS[name]().applies_to(zh)
        assert STEPS[name]().applies_to(en)
    assert not STEPS["wudao_zh"]().applies_to(en)
    assert STEPS["wordlist"]().applies_to(zh) and STEPS["wordlist"]().applies_to(en)
    # the recipe may widen a step's languages on the instance
    step = STEPS["gopher_quality"]()
    step.languages = ("en", "de")
    assert step.applies_to(Document(id="de", text="", lang="de"))
    assert STEPS["gopher_quality"]().languages == ("en",)


def test_unknown_params_are_a_type_error_for_the_recipe_builder():
    with pytest.raises(TypeError):
        STEPS["fineweb"](no_such_param=1)
    with pytest.raises(TypeError):
        STEPS["c4"](True)      # keyword-only


def test_clean_c4_sample_mostly_passes_the_english_filters(corpus_samples):
    path = corpus_samples / "en_text" / "data-juicer_redpajama-c4-refined.jsonl"
    texts = [json.loads(line)["text"] for line in path.read_text("utf-8").splitlines() if line.strip()]
    outcomes = [run_steps(ENGLISH_STEPS, Document(id=str(i), text=t, lang="en")) for i, t in enumerate(texts)]
    passed = sum(isinstance(o, Document) for o in outcomes)
    fraction = passed / len(texts)
    print(f"C4 refined sample: {passed}/{len(texts)} = {fraction:.0%} pass "
          f"({[o for o in outcomes if isinstance(o, str)]})")
    assert len(texts) >= 10
    assert fraction >= 0.8


def test_real_chinese_articles_mostly_pass_wudao(corpus_samples):
    path = corpus_samples / "web" / "html_groundtruth" / "magic-html-zh" / "article" / "base.zh-subset.json"
    articles = [entry["content"] for entry in json.loads(path.read_text("utf-8")).values()]
    outcomes = [run_steps(CHINESE_STEPS, Document(id=str(i), text=t, lang="zh")) for i, t in enumerate(articles)]
    passed = sum(isinstance(o, Document) for o in outcomes)
    print(f"magic-html-zh articles: {passed}/{len(articles)} pass")
    assert passed / len(articles) >= 0.9
    # cleaning only ever removes text
    for original, outcome in zip(articles, outcomes):
        if isinstance(outcome, Document):
            assert len(outcome.text) <= len(original)
