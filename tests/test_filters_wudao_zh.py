"""WuDao Chinese rules: paragraph removal, trailing-fragment cut (exact outputs) and document checks."""
from __future__ import annotations

import pickle

import pytest

from cleaners.document import Document
from cleaners.filters.text_stats import count_han
from cleaners.filters.wudao_zh import WudaoZh, cut_unfinished_sentence


def doc(text: str) -> Document:
    return Document(id="t", text=text, lang="zh", title="标题")


REPORT = "本报讯，今天上午，市政府召开新闻发布会，介绍了今年以来全市经济运行的总体情况。"
CLOSING = "全市上下要坚定信心，攻坚克难，为完成全年目标任务而努力奋斗！"


def test_paragraph_cleaning_exact_output():
    text = "\n".join([
        "首页 > 新闻中心",                                   # 6 Han characters, not a sentence
        "2021年4月8日 10:32",                                # a date line
        REPORT + "会议指出，下一步将继续加大",                # unfinished last sentence
        "",
        "他笑了。",                                           # short, but a complete sentence
        "分享到：",                                           # a link label
        "一、基本情况",                                       # a short heading
        "  " + CLOSING + "  ",
    ])
    result = WudaoZh().apply(doc(text))
    assert isinstance(result, Document)
    assert result.text == "\n".join([REPORT, "他笑了。", CLOSING])
    assert result.title == "标题" and result.id == "t"


def test_clean_document_is_returned_unchanged():
    page = doc("\n".join([REPORT, CLOSING]))
    assert WudaoZh().apply(page) is page


def test_cut_unfinished_sentence():
    assert cut_unfinished_sentence("第一句话。第二句话！第三句没有结束") == "第一句话。第二句话！"
    assert cut_unfinished_sentence("他说：“我们明天出发。”然后他就") == "他说：“我们明天出发。”"
    assert cut_unfinished_sentence("完整的句子。") == "完整的句子。"
    # no sentence end at all: a heading or caption stays for the length rule to judge
    assert cut_unfinished_sentence("第三章 城市的发展与变迁") == "第三章 城市的发展与变迁"
    # a decimal point is no sentence end; a colon-ended lead-in is not cut
    assert (cut_unfinished_sentence("价格为3.5元，比去年同期上涨了百分之十二")
            == "价格为3.5元，比去年同期上涨了百分之十二")
    assert cut_unfinished_sentence("原因如下。主要有以下几点：") == "原因如下。主要有以下几点："


def test_paragraph_length_near_miss():
    ten = "一二三四五六七八九十"
    nine = ten[:-1]
    step = WudaoZh(min_doc_chinese_chars=0, min_chinese_ratio=None)
    assert step.apply(doc(ten + "\n" + nine)).text == ten
    assert step.apply(doc(nine)) == "zh-empty-after-cleaning"
    assert WudaoZh(min_doc_chinese_chars=0, keep_short_sentences=False).apply(doc(ten + "\n他笑了。")).text == ten


def test_document_minimum_chinese_chars():
    fifty = "这是一段用于测试的中文内容，" * 4                  # 13 Han characters each
    assert count_han(fifty) == 52
    assert isinstance(WudaoZh().apply(doc(fifty[:-3] + "。")), Document)   # 50 Han characters
    assert WudaoZh().apply(doc(fifty[:-4] + "。")) == "zh-too-few-chinese-chars"  # 49


def test_chinese_ratio_near_miss():
    han = "中" * 70
    assert isinstance(WudaoZh().apply(doc(han + "a" * 30 + "。")), Document)         # 70 / 100
    assert WudaoZh().apply(doc(han[:-1] + "a" * 31 + "。")) == "zh-low-chinese-ratio"  # 69 / 100
    # whitespace and punctuation are neutral by default, counted when asked
    spaced = han + "，" * 10 + " a" * 30 + "。"
    assert isinstance(WudaoZh().apply(doc(spaced)), Document)
    assert WudaoZh(ratio_counts_punctuation=True).apply(doc(spaced)) == "zh-low-chinese-ratio"


def test_switches_and_empty_input():
    fragment = REPORT + "会议指出，下一步将继续加大"
    assert WudaoZh(cut_trailing_fragment=False, min_doc_chinese_chars=0).apply(doc(fragment)).text == fragment
    assert WudaoZh().apply(doc("")) == "zh-empty-after-cleaning"
    assert WudaoZh().apply(doc("首页\n登录\n注册")) == "zh-empty-after-cleaning"


def test_bad_params_raise_and_step_pickles():
    with pytest.raises(ValueError):
        WudaoZh(min_chinese_ratio=7)
    with pytest.raises(ValueError):
        WudaoZh(min_paragraph_chars=None)
    step = WudaoZh(min_paragraph_chars=5)
    assert pickle.loads(pickle.dumps(step)) == step
