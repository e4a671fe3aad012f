"""Deeply nested HTML (past libxml2's 256 levels) still extracts; unreadable pages get their own reason."""
from __future__ import annotations

import gzip
import random
import re

import pytest
from lxml import etree
from lxml import html as lxml_html
from trafilatura.utils import load_html

import cleaners.extract as extract_module
from cleaners.document import RawPage
from cleaners.extract import PageExtractor, UnparsableHTML, extract_html, parse_html
from cleaners.html_depth import flatten_deep_html

TITLE = "Ferry terminal to open next spring"
SENTENCES = [
    "The harbour authority confirmed on Tuesday that the new ferry terminal will open to passengers next spring "
    "after years of delay.",
    "Engineers said the final inspections of the floating pontoons and the ticket hall had been completed "
    "without any serious problems.",
    "Ticket prices for the crossing will stay at last year's level until the end of the summer season.",
]
ARTICLE = f"<article><h1>{TITLE}</h1>" + "".join(f"<p>{s}</p>" for s in SENTENCES) + "</article>"
ZH_SENTENCES = ["经过半年的施工，市中心的人民公园今天重新向市民开放，园内新增了步道和儿童游乐区。",
                "公园管理处表示，改造后的公园每天早上六点开放，晚上十点关闭，欢迎市民前来游览。"]


def page(body: str, title: str = TITLE) -> str:
    return (f"<!DOCTYPE html><html><head><title>{title} | Port News</title></head><body>"
            "<nav><a href='/'>Home</a> <a href='/news'>News</a> <a href='/sport'>Sport</a></nav>"
            f"{body}<footer>Copyright 2024 Port News</footer></body></html>")


def bare(body: str) -> str:
    """A page with nothing but `body`: no navigation for trafilatura to fall back on."""
    return f"<html><head><title>t</title></head><body>{body}</body></html>"


def nested(depth: int, inner: str) -> str:
    return "<div class='wrap'>" * depth + inner + "</div>" * depth


def sidebar(depth: int) -> str:
    links = " ".join(f"<a href='/story/{i}'>Related story number {i}</a>" for i in range(8))
    return f"<aside>{nested(depth, links)}</aside>"


@pytest.fixture(scope="module")
def extractor():
    pe = PageExtractor(timeout_s=10)
    pe.setup()
    yield pe
    pe.teardown()


def raw(html: str | bytes) -> RawPage:
    data = html.encode("utf-8") if isinstance(html, str) else html
    return RawPage(key="deep.warc.gz#1", source="deep.warc.gz", url="http://example.com/a", html=data)


def tree_depth(tree) -> int:
    depth = deepest = 0
    for event, _ in etree.iterwalk(tree, events=("start", "end")):
        depth += 1 if event == "start" else -1
        deepest = max(deepest, depth)
    return deepest


# --- deep pages extract, the same as their shallow twin -------------------------------------------

def test_libxml2_alone_loses_a_deep_page():
    """The defect: the plain parse stops at depth 256 and the article is gone."""
    tree = load_html(page(nested(300, ARTICLE)))
    assert SENTENCES[0] not in tree.text_content()


@pytest.mark.parametrize("depth", [300, 5000])
def test_deeply_nested_article_extracts(extractor, depth):
    shallow = extractor.process(raw(page(nested(3, ARTICLE))))
    doc = extractor.process(raw(page(nested(depth, ARTICLE))))
    assert doc.title == TITLE
    assert doc.text.splitlines() == SENTENCES
    assert (doc.title, doc.text) == (shallow.title, shallow.text)


@pytest.mark.parametrize("before", [True, False], ids=["sidebar-first", "sidebar-last"])
def test_shallow_article_with_a_3000_deep_sidebar(extractor, before):
    body = sidebar(3000) + ARTICLE if before else ARTICLE + sidebar(3000)
    doc = extractor.process(raw(page(body)))
    assert doc.text.splitlines() == SENTENCES  # the article, without the sidebar's links
    assert "Related story" not in doc.text


def test_unclosed_font_tags_of_an_old_chinese_page(extractor):
    body = '<font color="#333333">导航 ' * 400 + "<div class='content'>" + "".join(
        f"<p>{s}</p>" for s in ZH_SENTENCES) + "</div>"
    doc = extractor.process(raw(page(body, title="城市公园完成改造").encode("gb18030")))
    for sentence in ZH_SENTENCES:
        assert sentence in doc.text


def test_flattened_tree_stays_under_the_limit():
    tree, cut_short = parse_html(page(nested(5000, ARTICLE) + sidebar(3000)))
    assert not cut_short
    assert tree_depth(tree) < 210  # `hard` (200) plus html, body and a few implied elements


# --- unreadable pages: extract-unparsable, not extract-empty ------------------------------------------

def test_binary_garbage_is_unparsable(extractor):
    garbage = random.Random(0).randbytes(4000)
    assert extractor.process(raw(garbage)) == "extract-unparsable"
    assert PageExtractor(timeout_s=0).process(raw(garbage)) == "extract-unparsable"
    assert extractor.process(raw(gzip.compress(page(ARTICLE).encode()))) == "extract-unparsable"
    with pytest.raises(UnparsableHTML):
        extract_html(garbage)


def test_empty_pages_stay_empty(extractor):
    assert extractor.process(raw(b"")) == "extract-empty"
    assert extractor.process(raw(b"  \n ")) == "extract-empty"
    assert extractor.process(raw(bare("<div></div>"))) == "extract-empty"  # parses, but has no main text
    assert extractor.process(raw(bare(nested(300, "<img src=x.png>")))) == "extract-empty"  # deep, read whole


def test_a_parse_still_cut_short_without_text_is_unparsable(monkeypatch):
    monkeypatch.setattr(extract_module, "flatten_deep_html", lambda html: html)  # as if flattening failed
    with pytest.raises(UnparsableHTML, match="cut short"):
        extract_html(bare(nested(300, ARTICLE)))


# --- normal pages: parsed once, exactly as before ------------------------------------------------------

def test_normal_pages_are_not_flattened(corpus_samples, monkeypatch):
    def must_not_run(html):
        raise AssertionError("a normal page was flattened")

    monkeypatch.setattr(extract_module, "flatten_deep_html", must_not_run)
    folder = corpus_samples / "web/html_groundtruth"
    paths = sorted((folder / "magic-html-zh/article/htmls").glob("*.html.gz"))[:3]
    paths += sorted((folder / "article-extraction-benchmark/html").glob("*.html.gz"))[:3]
    for path in paths:
        html = gzip.decompress(path.read_bytes()).decode("utf-8", "replace")
        tree, cut_short = parse_html(html)
        assert not cut_short
        assert etree.tostring(tree) == etree.tostring(load_html(html))  # the tree trafilatura always got
        assert extract_html(html) is not None
    result = extract_html(page(nested(3, ARTICLE)))
    assert (result.title, result.text) == (TITLE, "\n".join(SENTENCES))


# --- the flattening itself ------------------------------------------------------------------------------

PIECES = ["<div>", "</div>", "<span>", "</span>", "<p>", "</p>", "<li>", "<ul>", "</ul>", "<a href='x>y'>", "</a>",
          "<b>", "</b>", "<font color=red>", "</font>", "<table><tr><td>", "</td></tr></table>", "<i/>", "<br>",
          "<!-- <div> -->", "<script>var a = '<div>';</script>", "<title>t</title>", "<blockquote>", "</blockquote>",
          "<body>", "</body>", "<html>", "<head>", "</head>", "<section>", "</section>", "<textarea><div></textarea>",
          "<div title=\"x><div>\">", "<i a= />", "<script/>", "<!-->", "<select><option>o", "<dd>", "<embed>"]


def visible_text(html: str, parser) -> tuple[str, int, bool]:
    tree = lxml_html.fromstring(html, parser=parser)
    depth = tree_depth(tree)
    etree.strip_elements(tree, "script", "style", "title", "textarea", with_tail=False)
    last = parser.error_log.last_error
    cut = last is not None and last.type == etree.ErrorTypes.ERR_RESOURCE_LIMIT
    return re.sub(r"\s+", "", "".join(tree.itertext())), depth, cut


def test_flattening_random_tag_soup_bounds_depth_and_keeps_all_text():
    rnd = random.Random(7)
    huge = lxml_html.HTMLParser(huge_tree=True, remove_comments=True)
    plain = lxml_html.HTMLParser(remove_comments=True)
    for _ in range(25):
        openers = rnd.random()
        parts = ["<html><body>"]
        for i in range(rnd.randrange(100, 1500)):
            r = rnd.random()
            if r < 0.3:
                parts.append(f" w{i} ")
            elif r < 0.3 + 0.4 * openers:
                parts.append(rnd.choice(["<div>", "<span>", "<font>", "<blockquote>", "<ul><li>", "<p>"]))
            else:
                parts.append(rnd.choice(PIECES))
        soup = "".join(parts)
        text, _, _ = visible_text(soup, huge)
        flat_text, depth, cut = visible_text(flatten_deep_html(soup, soft=20, hard=40), plain)
        assert not cut and depth <= 40 + 5
        assert flat_text == text


def test_flattening_drops_wrapper_tags_first_and_keeps_text():
    flat = flatten_deep_html(nested(10, "<p>one</p><p>two</p>"), soft=4, hard=8)
    assert flat.count("<div") == 4 and flat.count("<p>") == 2  # paragraphs survive past `soft`
    assert [t for t in lxml_html.fromstring(flat).itertext() if t.strip()] == ["one", "two"]
    flat = flatten_deep_html("<blockquote>" * 12 + "x", soft=4, hard=8)
    assert flat.count("<blockquote>") == 8 and flat.endswith("x")
