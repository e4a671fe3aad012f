"""Term lists: Chinese and English matching, thresholds, custom files and pickling."""
from __future__ import annotations

import pickle

import pytest

from cleaners.document import Document
from cleaners.filters.wordlist import WordList, bundled_lists, read_terms


def doc(text: str, lang: str = "zh") -> Document:
    return Document(id="t", text=text, lang=lang)


NEWS_ZH = "本市今年继续推进老旧小区改造工作，计划完成改造项目一百二十个，惠及居民三万余户。" * 13  # 520 characters
NEWS_EN = ("The city council met on Tuesday to discuss the new transport plan for the northern districts. " * 6)


def test_required_terms_are_bundled():
    terms = {name: set(read_terms(res.read_text("utf-8"))) for name, res in bundled_lists().items()}
    everything = set().union(*terms.values())
    for term in ["代开发票", "网络赌博", "澳门赌场", "六合彩", "加微信领取", "刷单返利", "裸聊",
                 "online casino bonus", "viagra", "payday loan"]:
        assert term in everything, term
    assert all(t == t.lower() and not t.startswith("#") for ts in terms.values() for t in ts)


def test_chinese_hits_per_list():
    step = WordList()
    text = "网络赌博和澳门赌场的广告，还有裸聊网站。代开发票请联系。"
    assert step.count_hits(text) == {"zh_gambling": 2, "zh_porn": 1, "zh_ads": 1}


def test_spam_page_is_dropped_with_the_worst_list():
    step = WordList()
    spam = "六合彩开奖结果，香港六合彩资料大全，六合彩 一码中特，加微信领取彩金。"
    assert step.filter(doc(spam)) == "wordlist:zh_gambling"


def test_one_stray_mention_survives_in_a_long_article_but_not_in_a_short_one():
    step = WordList()
    long_article = NEWS_ZH + "警方提醒市民远离网络赌博。"
    assert len(long_article) >= 500
    assert step.filter(doc(long_article)) is None
    assert step.filter(doc("警方提醒市民远离网络赌博。")) == "wordlist:zh_gambling"
    english = NEWS_EN + "Police warned residents about payday loan scams."
    assert step.filter(doc(english, "en")) is None


def test_max_hits_near_miss():
    step = WordList(max_hit_ratio=None)
    two = NEWS_ZH + "网络赌博。" + NEWS_ZH + "网络赌博。"
    assert step.filter(doc(two)) is None
    assert step.filter(doc(two + "网络赌博。")) == "wordlist:zh_gambling"


def test_english_is_case_insensitive_longest_match_and_whole_words():
    step = WordList()
    assert step.count_hits("Get your ONLINE CASINO BONUS now") == {"en_gambling": 1}
    assert step.count_hits("Buy Viagra, viagra and VIAGRA.") == {"en_spam": 3}
    assert step.count_hits("A specialist in porcelain and escort carriers.") == {}
    assert step.count_hits("便宜的viagra在这里") == {"en_spam": 1}


def test_custom_list_file_and_selection(tmp_path):
    path = tmp_path / "my_terms.txt"
    path.write_text("# my list\nFoo Bar\n\n蓝色\n", encoding="utf-8")
    step = WordList(lists=[str(path), "zh_porn"], max_hits=0, max_hit_ratio=None)
    assert step.list_names == ["my_terms", "zh_porn"]
    assert step.filter(doc("this has foo bar in it")) == "wordlist:my_terms"
    assert step.filter(doc("蓝色的天空")) == "wordlist:my_terms"
    assert step.filter(doc("六合彩")) is None                        # zh_gambling was not selected


def test_bad_params_raise():
    with pytest.raises(ValueError, match="neither a bundled list"):
        WordList(lists=["no_such_list"])
    with pytest.raises(ValueError):
        WordList(lists="zh_ads")
    with pytest.raises(ValueError):
        WordList(max_hits=-1)


def test_pickles_without_the_automaton_and_builds_lazily():
    step = WordList()
    step.setup()
    clone = pickle.loads(pickle.dumps(step))
    assert clone._automaton is None
    assert clone.count_hits("六合彩") == {"zh_gambling": 1}
    assert WordList().applies_to(doc("x", "en")) and WordList().applies_to(doc("x", "de"))
