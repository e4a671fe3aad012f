"""Main-text extraction: extract_html on small pages, PageExtractor reasons, time limit, pickling, files."""
from __future__ import annotations

import gzip
import json
import os
import pickle
import time

import pytest

from cleaners.document import Document, RawPage, stable_hash
from cleaners.extract import PageExtractor, extract_files, extract_html

ARTICLE_EN = """<!DOCTYPE html><html><head><title>River cleanup draws volunteers | Town Gazette</title></head>
<body>
<nav><ul><li><a href="/">Home</a></li><li><a href="/news">News</a></li><li><a href="/sport">Sport</a></li></ul></nav>
<header><div class="logo">Town Gazette</div></header>
<article>
<h1>River cleanup draws volunteers</h1>
<p>More than two hundred volunteers gathered on Saturday morning to clear rubbish from the banks of the river that \
runs through the old town.</p>
<p>Organisers said they collected forty bags of plastic, three shopping trolleys and an abandoned bicycle before \
noon.</p>
<p>The council has promised to install new bins along the footpath and to repeat the event every spring.</p>
</article>
<footer><p>Copyright 2024 Town Gazette. All rights reserved.</p><a href="/privacy">Privacy policy</a></footer>
</body></html>"""
EN_PARAGRAPHS = [
    "More than two hundred volunteers gathered on Saturday morning to clear rubbish from the banks of the river "
    "that runs through the old town.",
    "Organisers said they collected forty bags of plastic, three shopping trolleys and an abandoned bicycle "
    "before noon.",
    "The council has promised to install new bins along the footpath and to repeat the event every spring.",
]

ZH_PARAGRAPHS = ["经过半年的施工，市中心的人民公园今天重新向市民开放，园内新增了步道和儿童游乐区。",
                 "公园管理处表示，改造后的公园每天早上六点开放，晚上十点关闭，欢迎市民前来游览。"]
ZH_TW_PARAGRAPHS = ["經過半年的施工，市中心的人民公園今天重新向市民開放，園內新增了步道和兒童遊樂區。",
                    "公園管理處表示，改造後的公園每天早上六點開放，晚上十點關閉，歡迎市民前來遊覽。"]


def zh_page(title: str, paragraphs: list[str], head: str = "", nav=("首页", "国内"), footer="版权所有 2024") -> str:
    body = "".join(f"<p>{p}</p>" for p in paragraphs)
    links = " ".join(f'<a href="/{i}">{name}</a>' for i, name in enumerate(nav))
    return (f"<html><head>{head}<title>{title}</title></head><body>"
            f'<div class="nav">{links}</div>'
            f'<div class="article"><h1>{title}</h1>{body}</div>'
            f'<div class="footer">{footer}</div></body></html>')


# Extraction functions injected into the child process (module level so they pickle by reference).
def slow_on_marker(html, url, **options):
    """Hangs on pages containing SLEEP, raises on BOOM, kills its process on DIE; else extracts."""
    if "SLEEP" in html:
        time.sleep(60)
    if "BOOM" in html:
        raise KeyError("boom")
    if "DIE" in html:
        os._exit(3)
    return extract_html(html, url, **options)


@pytest.fixture(scope="module")
def extractor():
    pe = PageExtractor(timeout_s=1.0, extract_fn=slow_on_marker)
    pe.setup()
    yield pe
    pe.teardown()


def raw_html(data: bytes, key: str = "file.warc.gz#100", **kw) -> RawPage:
    return RawPage(key=key, source="file.warc.gz", url="http://example.com/a", date="2024-05-01T00:00:00Z",
                   html=data, **kw)


# --- extract_html ---------------------------------------------------------------------------

def test_extract_html_keeps_paragraphs_and_drops_boilerplate():
    result = extract_html(ARTICLE_EN)
    assert result.title == "River cleanup draws volunteers"
    assert result.text == "\n".join(EN_PARAGRAPHS)  # the <h1> title is not repeated in the text
    for boilerplate in ("Home", "Sport", "Copyright", "Privacy policy", "Town Gazette"):
        assert boilerplate not in result.text


def test_extract_html_accepts_bytes_and_chinese():
    result = extract_html(zh_page("城市公园完成改造", ZH_PARAGRAPHS).encode("utf-8"))
    assert result.title == "城市公园完成改造"
    assert result.text == "\n".join(ZH_PARAGRAPHS)


@pytest.mark.parametrize("html", ["", "<html><body></body></html>",
                                  "<html><head><script>var a = 1;</script></head>"
                                  "<body><img src='x.png'></body></html>"])
def test_extract_html_returns_none_without_main_text(html):
    assert extract_html(html) is None


# --- PageExtractor: decoding, reasons, pass-through ------------------------------------------

def test_gbk_page_with_header_charset(extractor):
    data = zh_page("城市公园完成改造", ZH_PARAGRAPHS).encode("gbk")
    doc = extractor.process(raw_html(data, http_charset="GBK"))
    assert isinstance(doc, Document)
    assert doc.text == "\n".join(ZH_PARAGRAPHS)
    assert doc.title == "城市公园完成改造"
    assert doc.meta["encoding"] == "gb18030"
    assert (doc.id, doc.url, doc.source, doc.date) == (
        stable_hash("file.warc.gz#100"), "http://example.com/a", "file.warc.gz", "2024-05-01T00:00:00Z")


def test_big5_page_with_meta_charset(extractor):
    page = zh_page("城市公園完成改造", ZH_TW_PARAGRAPHS,
                   '<meta http-equiv="Content-Type" content="text/html; charset=big5">',
                   nav=("首頁", "國內"), footer="版權所有 2024")
    doc = extractor.process(raw_html(page.encode("big5")))
    assert doc.text == "\n".join(ZH_TW_PARAGRAPHS)
    assert doc.title == "城市公園完成改造"
    assert doc.meta["encoding"] == "big5hkscs"


def test_in_process_and_child_decode_alike(extractor):
    """The child decodes the response's bytes itself (they cross the pipe as they are); in-process mode decodes here."""
    in_process = PageExtractor(timeout_s=0)
    for raw in (raw_html(zh_page("城市公园完成改造", ZH_PARAGRAPHS).encode("gbk"), http_charset="GBK"),
                raw_html(ARTICLE_EN.encode()), RawPage(key="k", source="s", html=ARTICLE_EN)):
        child_doc, local_doc = extractor.process(raw), in_process.process(raw)
        assert child_doc == local_doc and child_doc.meta["encoding"] in ("gb18030", "utf-8", "str")


def test_raw_meta_is_copied_not_shared(extractor):
    raw = raw_html(ARTICLE_EN.encode(), meta={"warc_id": "x"})
    doc = extractor.process(raw)
    assert doc.meta == {"warc_id": "x", "encoding": "utf-8"}
    assert raw.meta == {"warc_id": "x"}


def test_too_large(extractor):
    small = PageExtractor(timeout_s=0, max_html_bytes=100)
    assert small.process(raw_html(ARTICLE_EN.encode())) == "extract-too-large"
    assert small.process(raw_html(b"<p>" + b"x" * 90 + b"</p>")) != "extract-too-large"


def test_empty_pages(extractor):
    assert extractor.process(raw_html(b"")) == "extract-empty"
    assert (extractor.process(raw_html(b"<html><head><style>p {}</style></head><body><br></body></html>"))
            == "extract-empty")
    assert extractor.process(RawPage(key="k", source="s")) == "extract-empty"


def test_min_text_chars():
    strict = PageExtractor(timeout_s=0, min_text_chars=10_000)
    assert strict.process(raw_html(ARTICLE_EN.encode())) == "extract-empty"
    assert strict.process(RawPage(key="k", source="s", text="short")) == "extract-empty"


def test_text_record_passes_through_without_extraction(extractor):
    raw = RawPage(key="c4.jsonl#7", source="c4.jsonl", url="http://x", text="<p>kept as is</p>\nline 2",
                  title="T", date="2020")
    doc = extractor.process(raw)
    assert (doc.id, doc.text, doc.title, doc.url, doc.source, doc.date) == (
        stable_hash("c4.jsonl#7"), "<p>kept as is</p>\nline 2", "T", "http://x", "c4.jsonl", "2020")
    assert "encoding" not in doc.meta
    assert extractor.process(RawPage(key="k", source="s", text="  \n ")) == "extract-empty"


def test_in_process_mode_matches_child_process(extractor):
    data = zh_page("城市公园完成改造", ZH_PARAGRAPHS, '<meta charset="gb2312">').encode("gbk")
    child = extractor.process(raw_html(data))
    local = PageExtractor(timeout_s=0).process(raw_html(data))
    assert child == local


# --- time limit and failures in the child ------------------------------------------------------

def test_timeout_fires_and_the_next_page_still_extracts(extractor):
    extractor.process(raw_html(ARTICLE_EN.encode()))  # child warm
    old_pid = extractor._worker[0].pid
    start = time.monotonic()
    assert extractor.process(raw_html(b"<html><body><p>SLEEP</p></body></html>")) == "extract-timeout"
    assert time.monotonic() - start < 2.5
    assert extractor._worker is None  # the hung child was killed, not left running
    doc = extractor.process(raw_html(ARTICLE_EN.encode()))
    assert doc.text.endswith(EN_PARAGRAPHS[-1])
    assert extractor._worker[0].pid != old_pid


def test_timeout_works_off_the_main_thread():
    from concurrent.futures import ThreadPoolExecutor

    pe = PageExtractor(timeout_s=0.5, extract_fn=slow_on_marker)
    try:
        with ThreadPoolExecutor(1) as pool:
            start = time.monotonic()
            reason = pool.submit(pe.process, raw_html(b"<p>SLEEP</p>")).result(timeout=30)
        assert reason == "extract-timeout"
        assert time.monotonic() - start < 5  # includes starting the child
    finally:
        pe.teardown()


def test_child_start_up_is_not_charged_to_the_first_page():
    pe = PageExtractor(timeout_s=0.3)  # starting a child and importing trafilatura takes longer
    try:
        doc = pe.process(raw_html(ARTICLE_EN.encode()))
        assert isinstance(doc, Document) and doc.title == "River cleanup draws volunteers"
    finally:
        pe.teardown()


def test_exception_in_extraction_is_a_reason_and_the_child_survives(extractor):
    extractor.process(raw_html(ARTICLE_EN.encode()))
    pid = extractor._worker[0].pid
    assert extractor.process(raw_html(b"<p>BOOM</p>")) == "extract-error:KeyError"
    assert extractor._worker[0].pid == pid
    assert extractor.process(raw_html(ARTICLE_EN.encode())).title == "River cleanup draws volunteers"


def test_crashed_child_is_a_reason_and_is_replaced(extractor):
    assert extractor.process(raw_html(b"<p>DIE</p>")) == "extract-error:WorkerDied"
    assert extractor.process(raw_html(ARTICLE_EN.encode())).title == "River cleanup draws volunteers"


def test_in_process_exception_is_a_reason():
    pe = PageExtractor(timeout_s=0, extract_fn=slow_on_marker)
    assert pe.process(raw_html(b"<p>BOOM</p>")) == "extract-error:KeyError"


def test_teardown_stops_the_child():
    pe = PageExtractor(timeout_s=5)
    pe.setup()
    process = pe._worker[0]
    assert process.is_alive()
    pe.teardown()
    assert not process.is_alive()
    pe.teardown()  # twice is fine


# --- pickling and configuration -----------------------------------------------------------------

def test_pickles_before_and_after_setup(extractor):
    fresh = pickle.loads(pickle.dumps(PageExtractor(timeout_s=3, max_html_bytes=123, favor_precision=False)))
    assert (fresh.timeout_s, fresh.max_html_bytes, fresh.options["favor_precision"]) == (3.0, 123, False)
    extractor.setup()
    copy = pickle.loads(pickle.dumps(extractor))
    try:
        assert copy._worker is None and copy.extract_fn is slow_on_marker
        assert copy.process(raw_html(ARTICLE_EN.encode())).title == "River cleanup draws volunteers"
        assert extractor._worker[0].is_alive()  # the original keeps its own child
    finally:
        copy.teardown()


def test_bad_configuration_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown extract option"):
        PageExtractor(favour_precision=True)
    with pytest.raises(ValueError, match="max_html_bytes"):
        PageExtractor(max_html_bytes=0)


# --- extract_files (the CLI's `wudao extract`) -------------------------------------------------------

def test_extract_files_html_and_gz(tmp_path):
    plain = tmp_path / "a.html"
    plain.write_bytes(ARTICLE_EN.encode())
    packed = tmp_path / "b.html.gz"
    packed.write_bytes(gzip.compress(zh_page("城市公园完成改造", ZH_PARAGRAPHS, '<meta charset="gbk">').encode("gbk")))
    empty = tmp_path / "c.html"
    empty.write_bytes(b"<html><body></body></html>")
    broken = tmp_path / "d.html.gz"
    broken.write_bytes(b"not gzip")
    rows = list(extract_files([plain, packed, empty, broken], timeout_s=5))
    assert rows[0] == {"file": str(plain), "title": "River cleanup draws volunteers",
                       "text": "\n".join(EN_PARAGRAPHS)}  # the <h1> title is not repeated in the text
    assert rows[1] == {"file": str(packed), "title": "城市公园完成改造", "text": "\n".join(ZH_PARAGRAPHS)}
    assert rows[2] == {"file": str(empty), "title": "", "text": "", "reason": "extract-empty"}
    assert rows[3]["reason"] == "read-error:BadGzipFile"
    json.dumps(rows)  # the CLI prints these as JSON lines


def test_extract_files_rejects_other_suffixes(tmp_path):
    with pytest.raises(ValueError, match="not an .html"):
        list(extract_files([tmp_path / "notes.txt"]))


# --- a real page ------------------------------------------------------------------------------

def test_real_chinese_article_matches_ground_truth(corpus_samples, extractor):
    folder = corpus_samples / "web/html_groundtruth/magic-html-zh/article"
    truth = json.loads((folder / "base.zh-subset.json").read_text("utf-8"))
    path = sorted((folder / "htmls").glob("*.html.gz"))[0]
    gold = truth[path.name[: -len(".html.gz")]]["content"]
    doc = extractor.process(raw_html(gzip.decompress(path.read_bytes())))
    gold_lines = [line.strip() for line in gold.splitlines() if line.strip()]
    got_lines = set(doc.text.splitlines())
    assert sum(line in got_lines for line in gold_lines) >= 0.8 * len(gold_lines)


def test_title_is_not_repeated_as_the_first_line():
    para = ("The river festival returned this weekend with boat races, music and food stalls along the bank. "
            "Thousands of visitors walked the promenade until late in the evening, and the organisers said "
            "the weather had been kinder than in any year they could remember.")
    html = (f"<html><head><title>River festival returns</title></head><body><article><h1>River festival returns"
            f"</h1><p>{para}</p><p>{para.replace('weekend', 'summer')}</p></article></body></html>")
    result = extract_html(html)
    assert result is not None and result.title == "River festival returns"
    assert result.text.startswith("The river festival returned")
    assert "River festival returns" not in result.text


def test_confident_main_pass_skips_the_fallback_comparison_and_keeps_its_text(corpus_samples, monkeypatch):
    """A long real article takes the main pass alone (`precision:confident`) and gets the text the full comparison
    gives; a short page still goes through the comparison; confident_chars=None always compares."""
    from trafilatura import core
    folder = corpus_samples / "web/html_groundtruth/article-extraction-benchmark/html"
    confident = []
    for path in sorted(folder.glob("*.html.gz"))[:12]:
        html = gzip.decompress(path.read_bytes())
        compared, result = extract_html(html, confident_chars=None), extract_html(html)
        assert compared.path == "precision"
        if result.path == "precision:confident":
            confident.append(html)
            assert (result.text, result.title) == (compared.text, compared.title) and len(result.text) >= 500
    assert len(confident) >= 8

    calls = []
    real = core.compare_extraction
    monkeypatch.setattr(core, "compare_extraction", lambda *args: calls.append(1) or real(*args))
    assert extract_html(confident[0]).path == "precision:confident" and calls == []
    assert extract_html(ARTICLE_EN).path == "precision" and calls == [1]    # 330 characters: under the bar
