"""Source type from URL and text (cleaners/domain.py), on the real pages of ../shared/corpus-samples."""
from __future__ import annotations

import json
from collections import Counter

import pytest

from cleaners.domain import OTHER, SOURCE_TYPES, host_rules, source_type

# Ground truth for the 39 Chinese pages of magic-html-zh, labelled by what each site is (its URL names it).
ZH_PAGES = {
    "kepu.gov.cn": "政务", "mp.weixin.qq.com": "博客", "tqxz.com": "其他", "finance.sina.cn": "新闻",
    "finance.sina.com.cn": "新闻", "piyao.kepuchina.cn": "其他", "news.cn": "新闻", "he.news.cn": "新闻",
    "finance.people.com.cn": "新闻", "health.people.com.cn": "新闻", "toutiao.com": "新闻",
    "news.sina.com.cn": "新闻", "cnblogs.com": "博客", "new.qq.com": "新闻", "360kuai.com": "新闻",
    "news.youth.cn": "新闻", "news.china.com.cn": "新闻", "travel.china.com.cn": "新闻", "news.ifeng.com": "新闻",
    "pl.ifeng.com": "新闻", "economy.caijing.com.cn": "新闻", "1905.com": "新闻", "food.39.net": "其他",
    "j.021east.com": "新闻", "news.southcn.com": "新闻", "zgshige.com": "文学", "baike.baidu.com": "百科",
    "pinshiwen.com": "文学", "qidian.com": "文学", "zhidao.baidu.com": "问答", "tieba.baidu.com": "论坛",
    "zhihu.com": "问答", "weibo.com": "社交", "ruby-china.org": "论坛",
}


def _host(url: str) -> str:
    from urllib.parse import urlsplit

    return (urlsplit(url).hostname or "").removeprefix("www.")


def test_chinese_pages_get_their_sites_kind(corpus_samples):
    root = corpus_samples / "web" / "html_groundtruth" / "magic-html-zh"
    pages = {**json.loads((root / "article" / "base.zh-subset.json").read_text("utf-8")),
             **json.loads((root / "forum" / "base.zh-subset.json").read_text("utf-8"))}
    assert len(pages) == 39
    wrong = {page["url"]: source_type(page["url"], page["content"]) for page in pages.values()
             if source_type(page["url"], page["content"]) != ZH_PAGES[_host(page["url"])]}
    assert wrong == {}


def test_english_news_and_blog_pages_are_never_another_kind(corpus_samples):
    """The 120 pages of the Article Extraction Benchmark are news and blog articles: none may come out as a forum,
    Q&A, shop, encyclopedia ...; most hosts are not in the table, so URL sections, dates and bylines decide."""
    truth = json.loads((corpus_samples / "web" / "html_groundtruth" / "article-extraction-benchmark"
                        / "ground-truth.json").read_text("utf-8"))
    labels = Counter(source_type(page["url"], page["articleBody"]) for page in truth.values())
    assert set(labels) <= {"新闻", "博客", OTHER}, labels
    assert labels["新闻"] + labels["博客"] >= 0.7 * len(truth), labels


@pytest.mark.parametrize("url, text, label", [
    ("https://zh.wikipedia.org/wiki/长城", "", "百科"),
    ("https://en.m.wikipedia.org/wiki/Great_Wall", "", "百科"),
    ("https://bbs.example.cn/viewthread.php?tid=1", "", "论坛"),      # a host prefix rule
    ("https://forum.example.com/showthread.php?t=9", "", "论坛"),     # a path rule
    ("https://www.zhihu.com/people/someone", "", OTHER),              # zhihu is Q&A only under /question/
    ("https://zhuanlan.zhihu.com/p/123", "", "博客"),
    ("https://box.com/files/1", "", OTHER),                           # `x.com` matches at a dot boundary only
    ("https://x.com/user/status/1", "", "社交"),
    ("http://www.beijing.gov.cn/zhengce/1.html", "", "政务"),
    ("https://item.jd.com/100012043978.html", "", "商品"),
    ("https://example.org/2019/11/some-story", "", "新闻"),
    ("https://unknown.example/x/1.html", "楼主：求助\n2楼：沙发\n3楼：同问", "论坛"),
    ("https://unknown.example/x/2.html", "问：怎么办？\n最佳答案：重启。", "问答"),
    ("https://unknown.example/x/3.html", "第一章 初见\n……\n第二章 重逢\n……", "文学"),
    ("https://unknown.example/x/4.html", "本报讯（记者 张三）昨日，……", "新闻"),
    ("https://unknown.example/x/5.html", "WASHINGTON (Reuters) - The Senate voted ...", "新闻"),
    ("https://unknown.example/about", "We make chairs.", OTHER),
])
def test_rules(url, text, label):
    assert source_type(url, text) == label


@pytest.mark.parametrize("url", ["", "not a url", "http://[::1", "http://例子.中国/路径", "\ud800", "http://a.b/\x00"])
def test_any_url_gives_a_label_never_an_error(url):
    assert source_type(url, "\ud800\x00") in SOURCE_TYPES


def test_host_table_uses_known_labels_only():
    rules = host_rules()
    assert len(rules) > 100 and {label for _, _, label in rules} <= set(SOURCE_TYPES)


# -- the `domain` step and the record's dataType ------------------------------------------------------------

def test_domain_step_labels_keeps_the_inputs_own_and_filters():
    from cleaners.document import Document, to_wudao_record
    from cleaners.recipe import build_step
    from cleaners.runner import StepRunner

    runner = StepRunner([build_step("domain", {"keep": ["百科", "新闻"], "topic": False})])
    wiki = Document(id="1", text="长城是古代中国的军事防御工程。", url="https://zh.wikipedia.org/wiki/长城", lang="zh")
    own = Document(id="2", text="一段文字。", url="https://tieba.baidu.com/p/1", lang="zh", meta={"dataType": "新闻"})
    shop = Document(id="3", text="包邮", url="https://item.jd.com/1.html", lang="zh")
    outs = [runner.run(doc) for doc in (wiki, own, shop)]
    kept = [doc for out in outs for doc in out.kept]
    records = [to_wudao_record(doc) for doc in kept]
    assert [(r["dataType"], r["domain"]) for r in records] == [("百科", {"source_type": "百科"}),
                                                                ("新闻", {"source_type": "论坛"})]
    assert [(stage, reason) for out in outs for _, stage, reason in out.drops] == [("domain", "domain:商品")]
    hists = Counter()
    for out in outs:
        hists.update({name: n for (stage, kind, name), n in out.events.items() if kind == "hist"})
    assert hists == Counter({"dataType|百科": 1, "dataType|新闻": 1, "dataType|商品": 1})
    assert to_wudao_record(Document(id="4", text="x"))["dataType"] == "web-text"     # no domain step: the kind
    with pytest.raises(ValueError, match="keep must be a list"):
        build_step("domain", {"keep": "新闻"})


@pytest.mark.parametrize("domain, expected", [
    ({"source_type": "新闻"}, {"source_type": "新闻", "topic": None, "topic_score": None}),
    ({"source_type": "其他", "topic": "sports", "topic_score": 0.9},
     {"source_type": "其他", "topic": "sports", "topic_score": 0.9}),
    ({"source_type": "其他", "topic": "sports", "topic_score": "high"},
     {"source_type": "其他", "topic": None, "topic_score": None}),
    (None, None), ("news", None), ({"source_type": 3}, None), ([1], None)])
def test_parquet_rows_take_only_a_well_formed_domain(domain, expected):
    """`wudao dedup` passes input fields through: a `domain` that is not ours must not break the Parquet sink."""
    from pipelines.sinks import _parquet_row

    assert _parquet_row({"id": "1", "domain": domain})["domain"] == expected
