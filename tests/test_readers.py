"""Input readers: exact small WARC/ARC/JSON/Parquet/HTML cases built here, every real sample WARC/ARC/WET file,
damage (truncation at every cut point, corrupt gzip, wrong lengths, bad headers) and flat memory on a 50 MB WARC."""
from __future__ import annotations

import collections
import gzip
import io
import json
import tracemalloc
import zlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.readers import RawPage, Skip, detect_format, iter_file

DATE = "2024-01-02T03:04:05Z"


# ---- builders ---------------------------------------------------------------------------------
def warc_record(wtype: str, block: bytes, uri: str = "http://example.com/", content_type: str | None = None,
                length: int | None = None, version: str = "1.0") -> bytes:
    lines = [f"WARC/{version}", f"WARC-Type: {wtype}", f"WARC-Target-URI: {uri}", f"WARC-Date: {DATE}",
             "WARC-Record-ID: <urn:uuid:00000000-0000-0000-0000-000000000000>"]
    if content_type:
        lines.append(f"Content-Type: {content_type}")
    lines.append(f"Content-Length: {len(block) if length is None else length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + block + b"\r\n\r\n"


def http_response(body: bytes, status: str = "200 OK",
                  headers: tuple[str, ...] = ("Content-Type: text/html",)) -> bytes:
    return ("HTTP/1.1 " + status + "\r\n" + "".join(h + "\r\n" for h in headers) + "\r\n").encode() + body


def response(body: bytes, status: str = "200 OK", headers: tuple[str, ...] = ("Content-Type: text/html",),
             uri: str = "http://example.com/") -> bytes:
    return warc_record("response", http_response(body, status, headers), uri, "application/http; msgtype=response")


class NonSeekable(io.RawIOBase):
    """A raw, non-seekable stream that returns short reads, like a network file system."""

    def __init__(self, data: bytes | io.BufferedIOBase, max_read: int = 1000) -> None:
        self._inner = io.BytesIO(data) if isinstance(data, bytes) else data
        self._max = max_read

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        chunk = self._inner.read(min(len(b), self._max))
        b[: len(chunk)] = chunk
        return len(chunk)


def read_all(data: bytes, path: str = "t.warc", **kw) -> list[RawPage | Skip]:
    return list(iter_file(NonSeekable(data), path, **kw))


def summary(items) -> list[tuple]:
    return [("page", i.key, i.url, i.html if i.html is not None else i.text) if isinstance(i, RawPage)
            else ("skip", i.key, i.reason) for i in items]


HTML = b"<!doctype html><html><head><title>t</title></head><body><p>Hello</p></body></html>"
PAGE2 = b"<html><body><p>second page</p></body></html>"

RECORDS = [
    warc_record("warcinfo", b"software: test\r\n", "", "application/warc-fields"),
    warc_record("request", b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
                content_type="application/http; msgtype=request"),
    response(HTML, headers=("Content-Type: text/html; charset=UTF-8",), uri="<http://example.com/a>"),
    response(b"", "301 Moved Permanently", ("Location: /b",)),
    response(b"\x89PNG\r\n\x1a\n", headers=("Content-Type: image/png",)),
    warc_record("resource", PAGE2, "http://example.com/r", "text/html"),
    warc_record("revisit", http_response(b""), content_type="application/http; msgtype=response"),
    warc_record("metadata", b"via: x\r\n", content_type="application/warc-fields"),
    warc_record("conversion", "纯文本 plain text".encode(), "http://example.com/t", "text/plain"),
]
EXPECTED_REASONS = ["warcinfo", "request", "page", "http-status:301", "non-html:image/png", "page", "revisit",
                    "metadata", "page"]


def offsets(parts: list[bytes]) -> list[int]:
    out, pos = [], 0
    for part in parts:
        out.append(pos)
        pos += len(part)
    return out


# ---- WARC: exact small cases ------------------------------------------------------------------
def test_plain_warc_one_item_per_record_with_exact_keys_and_payloads():
    items = read_all(b"".join(RECORDS))
    assert [i.reason if isinstance(i, Skip) else "page" for i in items] == EXPECTED_REASONS
    assert [i.key for i in items] == [f"t.warc#{o}" for o in offsets(RECORDS)]
    page, resource, wet = items[2], items[5], items[8]
    assert (page.url, page.date, page.html, page.http_charset, page.content_type) == (
        "http://example.com/a", DATE, HTML, "utf-8", "text/html")
    assert page.meta["http_status"] == 200 and page.text is None
    assert (resource.url, resource.html, resource.http_charset) == ("http://example.com/r", PAGE2, None)
    assert (wet.text, wet.html) == ("纯文本 plain text", None)


def test_per_record_gzip_keys_are_member_offsets_and_payloads_match_plain():
    members = [gzip.compress(r) for r in RECORDS]
    items = read_all(b"".join(members), "t.warc.gz")
    assert [i.key for i in items] == [f"t.warc.gz#{o}" for o in offsets(members)]
    plain = read_all(b"".join(RECORDS))
    assert [s[2:] for s in summary(items)] == [s[2:] for s in summary(plain)]


def test_whole_file_as_one_gzip_member_keys_count_decoded_bytes_in_the_member():
    items = read_all(gzip.compress(b"".join(RECORDS)), "t.warc.gz")
    assert [i.key for i in items] == ["t.warc.gz#0"] + [f"t.warc.gz#0+{o}" for o in offsets(RECORDS)[1:]]
    assert [s[2:] for s in summary(items)] == [s[2:] for s in summary(read_all(b"".join(RECORDS)))]


def test_chunked_transfer_encoding_is_undone():
    chunked = (b"1a;ext=1\r\n" + HTML[:26] + b"\r\n" + f"{len(HTML) - 26:x}".encode() + b"\r\n" + HTML[26:]
               + b"\r\n0\r\n\r\n")
    [page] = read_all(response(chunked, headers=("Content-Type: text/html", "Transfer-Encoding: chunked")))
    assert page.html == HTML and "bad_chunking" not in page.meta


def test_wrong_chunk_sizes_fall_back_to_the_raw_body():
    body = b"ff\r\n" + HTML + b"\r\n0\r\n\r\n"          # claims 255 bytes, has fewer
    [page] = read_all(response(body, headers=("Content-Type: text/html", "Transfer-Encoding: chunked")))
    assert page.html == body and page.meta["bad_chunking"] is True


def raw_deflate(data: bytes) -> bytes:
    """Deflate without the zlib wrapper, as some servers send `Content-Encoding: deflate`."""
    comp = zlib.compressobj(wbits=-15)
    return comp.compress(data) + comp.flush()


@pytest.mark.parametrize("coding,encode", [
    ("gzip", gzip.compress),
    ("x-gzip", gzip.compress),
    ("deflate", zlib.compress),
    ("deflate", raw_deflate),
])
def test_content_encoding_is_undone(coding, encode):
    [page] = read_all(response(encode(HTML), headers=("Content-Type: text/html", f"Content-Encoding: {coding}")))
    assert page.html == HTML


def test_chunked_and_gzip_together():
    gz = gzip.compress(HTML)
    body = f"{len(gz):x}\r\n".encode() + gz + b"\r\n0\r\n\r\n"
    headers = ("Content-Type: text/html", "Transfer-Encoding: chunked", "Content-Encoding: gzip")
    [page] = read_all(response(body, headers=headers))
    assert page.html == HTML


def test_unsupported_and_broken_content_encodings_are_counted():
    items = read_all(b"".join([
        response(b"\x1b\x00\x00", headers=("Content-Type: text/html", "Content-Encoding: br")),
        response(b"\x1f\x8b\x08\x00garbage-not-deflate", headers=("Content-Type: text/html", "Content-Encoding: gzip")),
        response(HTML, headers=("Content-Type: text/html", "Content-Encoding: gzip")),  # stored decoded
    ]))
    assert [i.reason if isinstance(i, Skip) else i.html for i in items] == [
        "content-encoding:br", "content-encoding:bad-gzip", HTML]


def test_decompression_bomb_is_too_large_not_memory():
    bomb = gzip.compress(b"<html>" + b" " * 5_000_000)
    [item] = read_all(response(bomb, headers=("Content-Type: text/html", "Content-Encoding: gzip")),
                      max_record_bytes=100_000)
    assert item.reason == "too-large"


def test_gbk_payload_keeps_bytes_and_header_charset():
    body = "<html><head><title>新闻</title></head><body><p>你好，世界。中文网页。</p></body></html>".encode("gbk")
    [page] = read_all(response(body, headers=('Content-Type: text/html; charset="GBK"',)))
    assert page.html == body and page.http_charset == "gbk"
    assert page.html.decode(page.http_charset).startswith("<html><head><title>新闻")


def test_missing_content_type_is_sniffed():
    items = read_all(response(b"  \n<!DOCTYPE html><html>x</html>", headers=())
                     + response(b"\x00\x01binary", headers=()))
    assert isinstance(items[0], RawPage) and items[0].content_type == "text/html"
    assert items[1].reason == "non-html:unknown"


def test_xhtml_and_statuses():
    items = read_all(b"".join([
        response(HTML, headers=("Content-Type: application/xhtml+xml",)),
        response(HTML, "404 Not Found"),
        response(HTML, "206 Partial Content"),
        response(b"   ", headers=("Content-Type: text/html",)),
    ]))
    assert [i.reason if isinstance(i, Skip) else "page" for i in items] == [
        "page", "http-status:404", "http-status:206", "no-text"]


def test_too_large_record_is_skipped_unbuffered_and_reading_goes_on():
    big = response(b"<html>" + b"x" * 50_000 + b"</html>")
    items = read_all(big + RECORDS[2], max_record_bytes=10_000)
    assert [i.reason if isinstance(i, Skip) else i.html for i in items] == ["too-large", HTML]
    assert items[1].key == f"t.warc#{len(big)}"


def test_wrong_content_lengths_resync_keep_pages_and_count_damage():
    too_long = warc_record("conversion", b"first text", "http://a/", "text/plain", length=len(b"first text") + 30)
    too_short = warc_record("conversion", b"second text, longer", "http://b/", "text/plain", length=6)
    last = warc_record("conversion", b"third", "http://c/", "text/plain")
    past_end = warc_record("conversion", b"fourth", "http://d/", "text/plain", length=10_000)
    items = read_all(too_long + too_short + past_end + last, "x.wet")
    pages = [i for i in items if isinstance(i, RawPage)]
    damage = [i for i in items if isinstance(i, Skip)]
    assert [(p.url, p.text) for p in pages] == [("http://a/", "first text"), ("http://b/", "second text, longer"),
                                                ("http://d/", "fourth"), ("http://c/", "third")]
    assert [p.key for p in pages] == [f"x.wet#{o}" for o in offsets([too_long, too_short, past_end, last])]
    assert [d.reason for d in damage] == ["damaged:bad-length"] * 3


def test_garbage_between_records_resyncs_with_one_damage_skip():
    data = RECORDS[2] + b"this is not a warc header\r\nnor this\r\n" + RECORDS[5]
    items = read_all(data)
    assert [i.reason if isinstance(i, Skip) else i.html for i in items] == [HTML, "damaged:bad-header", PAGE2]
    assert items[1].key == f"t.warc#{len(RECORDS[2])}"


def test_bad_content_length_header_resyncs():
    bad = RECORDS[2].replace(b"Content-Length: ", b"Content-Length: x", 1)
    items = read_all(bad + RECORDS[5])
    assert [i.reason if isinstance(i, Skip) else i.html for i in items] == ["damaged:bad-header", PAGE2]


# ---- damage: truncation at every cut point, corrupt gzip -----------------------------------------
def _check_cut(full: list, cut_items: list, at_record_boundary: bool):
    body = [i for i in cut_items if not (isinstance(i, Skip) and i.is_damage)]
    damage = [i for i in cut_items if isinstance(i, Skip) and i.is_damage]
    assert summary(body) == summary(full[: len(body)])        # nothing before the damage is lost or changed
    assert len(damage) <= 1 and (not damage or cut_items[-1] is damage[0])
    assert bool(damage) != at_record_boundary


@pytest.mark.parametrize("gzipped", [False, True])
def test_truncated_file_yields_every_record_before_the_cut_then_one_damage_skip(gzipped):
    parts = [gzip.compress(r) for r in RECORDS] if gzipped else RECORDS
    data = b"".join(parts)
    full = read_all(data)
    ends = {o + len(p) for o, p in zip(offsets(parts), parts)}
    # a plain record may also lose its trailing CRLF CRLF without damage
    ends |= {e - k for e in ends for k in range(1, 5)} if not gzipped else set()
    for cut in range(1, len(data), 7):
        _check_cut(full, read_all(data[:cut]), at_record_boundary=cut in ends)


def test_corrupt_gzip_member_is_damage_and_later_members_are_read():
    members = [gzip.compress(r) for r in RECORDS]
    bad = bytearray(members[3])
    bad[len(bad) // 2] ^= 0xFF
    members[3] = bytes(bad)
    items = read_all(b"".join(members), "t.warc.gz")
    plain = read_all(b"".join(RECORDS))
    assert [s[2:] for s in summary(items[:3])] == [s[2:] for s in summary(plain[:3])]
    assert [i.reason for i in items[3:4]] == ["damaged:bad-gzip"] and items[3].key == f"t.warc.gz#{offsets(members)[3]}"
    assert [s[2:] for s in summary(items[4:])] == [s[2:] for s in summary(plain[4:])]


def test_trailing_garbage_after_gzip_members_is_damage_but_zero_padding_is_not():
    data = b"".join(gzip.compress(r) for r in RECORDS[:3])
    assert len(read_all(data + b"\x00" * 100, "t.warc.gz")) == 3
    assert [i.reason for i in read_all(data + b"junk!!", "t.warc.gz")[3:]] == ["damaged:bad-gzip"]


def test_random_bytes_never_raise():
    import random
    rng = random.Random(7)
    data = b"".join(RECORDS)
    for _ in range(200):
        mutated = bytearray(data)
        for _ in range(rng.randint(1, 20)):
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        items = read_all(bytes(mutated))
        assert all(isinstance(i, (RawPage, Skip)) for i in items)


# ---- ARC -------------------------------------------------------------------------------------
def arc_record(url: str, mime: str, body: bytes, date: str = "20080430204825") -> bytes:
    return f"{url} 1.2.3.4 {date} {mime} {len(body)}\n".encode() + body + b"\n"


def test_arc_v1_records():
    desc = b"1 1 InternetArchive\nURL IP-address Archive-date Content-type Archive-length\n"
    parts = [arc_record("filedesc://x.arc", "text/plain", desc),
             arc_record("dns:example.com", "text/dns", b"20080430204825\nexample.com. 60 IN A 1.2.3.4\n"),
             arc_record("http://example.com/", "text/html",
                        http_response(HTML, headers=("Content-Type: text/html; charset=iso-8859-1",))),
             arc_record("http://example.com/x.gif", "image/gif",
                        http_response(b"GIF89a", headers=("Content-Type: image/gif",)))]
    items = read_all(b"".join(parts), "x.arc")
    assert [i.reason if isinstance(i, Skip) else "page" for i in items] == [
        "arcinfo", "non-html:text/dns", "page", "non-html:image/gif"]
    assert [i.key for i in items] == [f"x.arc#{o}" for o in offsets(parts)]
    page = items[2]
    assert (page.url, page.date, page.html, page.http_charset) == (
        "http://example.com/", "2008-04-30T20:48:25Z", HTML, "iso-8859-1")
    cut = read_all(b"".join(parts)[:-10], "x.arc")
    assert [i.reason if isinstance(i, Skip) else "page" for i in cut] == [
        "arcinfo", "non-html:text/dns", "page", "damaged:truncated"]
    gz = read_all(b"".join(gzip.compress(p) for p in parts), "x.arc.gz")
    assert [s[2:] for s in summary(gz)] == [s[2:] for s in summary(items)]


def test_arc_v2_header_and_resync_after_a_bad_header_line():
    v2 = (b"http://example.com/ 1.2.3.4 20080430204825 text/html 200 SHA1:ABC - 0 x.arc "
          + str(len(http_response(HTML))).encode() + b"\n" + http_response(HTML) + b"\n")
    garbage = b"not an arc header line at all\nmore junk\n"
    items = read_all(v2 + garbage + v2, "v2.arc")
    assert [i.reason if isinstance(i, Skip) else i.html for i in items] == [HTML, "damaged:bad-header", HTML]
    assert [i.key for i in items] == ["v2.arc#0", f"v2.arc#{len(v2)}", f"v2.arc#{len(v2) + len(garbage)}"]


# ---- real sample files -------------------------------------------------------------------------
# counts worked out from the files by hand (zcat | grep WARC-Type / HTTP status / Content-Type; ARC header lines),
# records = WARC/ARC headers in the file; see web/SOURCES.md
SAMPLE_COUNTS = {
    "cc_net/sample.wet.txt": (4, {"page": 3, "warcinfo": 1, "damaged:bad-length": 4}),
    "commoncrawl_whirlwind/whirlwind.warc.gz": (4, {"page": 1, "warcinfo": 1, "request": 1, "metadata": 1}),
    "commoncrawl_whirlwind/whirlwind.warc.wat.gz": (2, {"warcinfo": 1, "metadata": 1}),
    "commoncrawl_whirlwind/whirlwind.warc.wet.gz": (2, {"page": 1, "warcinfo": 1}),
    "dolma/sample-0000.warc.gz": (48, {"page": 22, "warcinfo": 1, "request": 22, "metadata": 1,
                                       "non-html:text/plain": 2}),
    "jwarc/cc.warc.gz": (1, {"page": 1}),
    "jwarc/gzip_extra_sl.warc.gz": (1, {"warcinfo": 1}),
    "resiliparse/block-sized-records.warc.gz": (3, {"warc-type:unknown": 3}),
    "warcio/example-bad-non-chunked.warc.gz": (6, {"page": 1, "warcinfo": 2, "request": 2, "revisit": 1}),
    "warcio/example-digest.warc": (4, {"request": 4}),
    "warcio/example-iana.org-chunked.warc": (3, {"page": 1, "warcinfo": 1, "request": 1}),
    "warcio/example-resource.warc.gz": (3, {"page": 1, "warcinfo": 2}),
    "warcio/example-space-in-target-uri.warc.gz": (2, {"warcinfo": 1, "non-html:image/png": 1}),
    "warcio/example-trunc.warc": (4, {"page": 1, "warcinfo": 2, "request": 1, "damaged:bad-length": 1}),
    "warcio/example-wrong-chunks.warc.gz": (2, {"page": 1, "request": 1}),
    "webarchive-commons/IAH-20080430204825-00000-blackbook-truncated.arc": (9, {
        "page": 2, "arcinfo": 1, "non-html:text/dns": 1, "non-html:text/plain": 1, "non-html:image/jpeg": 1,
        "non-html:image/gif": 1, "non-html:image/png": 1, "non-html:text/xml": 1}),
    "webarchive-commons/IAH-urls-wget.warc.gz": (36, {
        "page": 2, "warcinfo": 1, "request": 16, "http-status:302": 7, "http-status:301": 2,
        "non-html:text/plain": 4, "non-html:image/jpeg": 1, "non-html:image/gif": 1, "non-html:image/png": 1,
        "non-html:text/xml": 1}),
}


def test_sample_table_covers_every_file(corpus_samples):
    found = {str(p.relative_to(corpus_samples / "web/warc")) for p in (corpus_samples / "web/warc").glob("*/*")}
    assert found == set(SAMPLE_COUNTS)


@pytest.mark.parametrize("name", sorted(SAMPLE_COUNTS))
def test_sample_files_exact_counts_and_every_record_once(corpus_samples, name):
    records, expected = SAMPLE_COUNTS[name]
    data = (corpus_samples / "web/warc" / name).read_bytes()
    items = read_all(data, name)
    counts = collections.Counter("page" if isinstance(i, RawPage) else i.reason for i in items)
    assert dict(counts) == expected
    per_record = [i for i in items if isinstance(i, RawPage) or not i.is_damage]
    assert len(per_record) == records                           # every record exactly once
    assert len({i.key for i in items}) == len(items)            # keys unique
    with open(corpus_samples / "web/warc" / name, "rb") as seekable:   # same answer from a real file object
        assert summary(iter_file(seekable, name)) == summary(items)
    for page in items:
        if isinstance(page, RawPage):
            assert page.url and not page.url.startswith("<") and page.date
            assert (page.html or page.text.encode()).strip()


def test_sample_pages_are_decoded_payloads(corpus_samples):
    warc = corpus_samples / "web/warc"
    [chunked] = [i for i in read_all((warc / "warcio/example-iana.org-chunked.warc").read_bytes())
                 if isinstance(i, RawPage)]
    assert chunked.html.startswith(b"<!doctype html>") and b"\r\n001c37" not in chunked.html
    assert chunked.html.rstrip().endswith(b"</html>") and chunked.http_charset == "utf-8"
    [gz] = [i for i in read_all((warc / "warcio/example-bad-non-chunked.warc.gz").read_bytes())
            if isinstance(i, RawPage)]
    assert gz.html.startswith(b"<!doctype html>") and b"Example Domain" in gz.html
    dolma = [i for i in read_all((warc / "dolma/sample-0000.warc.gz").read_bytes()) if isinstance(i, RawPage)]
    assert dolma[0].url == "https://www.semanticscholar.org/research/research-team"
    assert all(p.html.rstrip().lower().endswith((b"</html>", b"</body>")) for p in dolma)
    wet = [i for i in read_all((warc / "cc_net/sample.wet.txt").read_bytes()) if isinstance(i, RawPage)]
    assert [p.url for p in wet] == ["http://sample_english.com", "http://sample_chinese.zh", "http://sample_russian.ru"]
    assert wet[0].text.startswith("Famous Mark Twain Quotes") and wet[0].text.endswith("Truth isn't.")
    assert wet[1].text.startswith("馬克·吐溫名言") and "WARC/1.0" not in wet[1].text
    assert wet[2].text.endswith("Правда нет.")


# ---- JSON lines / arrays / HTML / Parquet ----------------------------------------------------------
JSONL_LINES = [
    json.dumps({"id": 7, "uniqueKey": "u", "titleUkey": "", "dataType": "新闻", "title": "标题", "content": "正文内容",
                "url": "http://zh.example/1"}, ensure_ascii=False),
    json.dumps({"text": "plain text", "meta": {"url": "http://en.example/2"}}),
    '{"text": "broken',
    "",
    "[1, 2]",
    json.dumps({"title": "only title", "content": "  "}),
    json.dumps({"text": "last line, no newline"}),
]


@pytest.mark.parametrize("compress", [False, True])
def test_jsonl_records_bad_lines_counted_and_rest_read(compress):
    data = "\n".join(JSONL_LINES).encode()
    items = read_all(gzip.compress(data) if compress else data, "c.jsonl.gz" if compress else "c.jsonl")
    name = "c.jsonl.gz" if compress else "c.jsonl"
    assert [(i.key, i.reason if isinstance(i, Skip) else i.text) for i in items] == [
        (f"{name}#1", "正文内容"), (f"{name}#2", "plain text"), (f"{name}#3", "bad-json"),
        (f"{name}#5", "bad-json"), (f"{name}#6", "no-text"), (f"{name}#7", "last line, no newline")]
    first = items[0]
    assert (first.title, first.url, first.meta) == (
        "标题", "http://zh.example/1", {"id": 7, "dataType": "新闻", "uniqueKey": "u"})
    assert items[1].url == "http://en.example/2"


def test_jsonl_invalid_utf8_and_too_long_lines():
    data = b'{"text": "\xff\xfe"}\n' + b'{"text": "' + b"a" * 5000 + b'"}\n{"text": "ok"}\n'
    items = read_all(data, "c.jsonl", max_record_bytes=1000)
    assert [i.reason if isinstance(i, Skip) else i.text for i in items] == ["bad-json", "too-large", "ok"]


def test_wudao_records_export_and_flagai_jsonl(corpus_samples):
    records = corpus_samples / "zh_text/wudao_format/flagai_glm_pretrain_jinrong_data.json"
    items = read_all(records.read_bytes(), "j.json")
    expected = json.loads(records.read_text())["RECORDS"]
    assert [i.text for i in items] == [r["content"] for r in expected] and len(items) == 21
    assert [i.key for i in items] == [f"j.json#RECORDS/{n}" for n in range(21)]
    demo = read_all((corpus_samples / "zh_text/wudao_format/flagai_indexed_dataset_demo.jsonl").read_bytes(), "d.jsonl")
    assert len(demo) == 20 and all(isinstance(i, RawPage) for i in demo)
    assert demo[0].meta["id"] == "wudao-0-3-25501" and demo[0].text.startswith("九江新闻网讯")


def test_json_array_streams_and_a_broken_array_is_damage():
    good = json.dumps([{"content": "a"}, {"text": "b", "url": "u"}, 3]).encode()
    assert [i.reason if isinstance(i, Skip) else i.text for i in read_all(good, "a.json")] == ["a", "b", "bad-json"]
    with_bom = b"\xef\xbb\xbf  [ {\"content\": \"\xe4\xb8\xad\"} ]"
    assert [i.text for i in read_all(with_bom, "a.json")] == ["中"]
    broken = b'[{"content": "a"}, {"content": "b"'
    assert [i.reason if isinstance(i, Skip) else i.text for i in read_all(broken, "a.json")] == [
        "a", "damaged:bad-json"]


def test_html_files_plain_and_gzip(corpus_samples):
    page_gz = sorted((corpus_samples / "web/html_groundtruth/magic-html-zh/article/htmls").glob("*.html.gz"))[0]
    [page] = read_all(page_gz.read_bytes(), page_gz.name)
    assert page.key == f"{page_gz.name}#0" and page.html == gzip.decompress(page_gz.read_bytes())
    body = "<html><body>中文</body></html>".encode("gbk")
    [plain] = read_all(body, "p.htm")
    assert plain.html == body and plain.http_charset is None


def _parquet_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, row_group_size=2)
    return sink.getvalue()


def test_parquet_seekable_and_streamed_give_the_same_rows(tmp_path: Path):
    table = pa.table({"content": ["一", "", "three", None, "five"], "url": ["u1", "u2", None, "u4", "u5"],
                      "title": ["t1", None, "t3", "t4", "t5"], "id": [1, 2, 3, 4, 5]})
    data = _parquet_bytes(table)
    path = tmp_path / "x.parquet"
    path.write_bytes(data)
    with open(path, "rb") as fh:
        seekable = list(iter_file(fh, "x.parquet"))
    streamed = read_all(data, "x.parquet")
    assert summary(seekable) == summary(streamed)
    assert [(i.key, i.reason if isinstance(i, Skip) else (i.text, i.url, i.title, i.meta)) for i in streamed] == [
        ("x.parquet#0", ("一", "u1", "t1", {"id": 1})), ("x.parquet#1", "no-text"),
        ("x.parquet#2", ("three", "", "t3", {"id": 3})), ("x.parquet#3", "no-text"),
        ("x.parquet#4", ("five", "u5", "t5", {"id": 5}))]


def test_parquet_without_text_and_corrupt_parquet():
    no_text = _parquet_bytes(pa.table({"url": ["a"], "caption": ["b"]}))
    assert [i.reason for i in read_all(no_text, "y.parquet")] == ["damaged:no-text-column"]
    corrupt = _parquet_bytes(pa.table({"text": ["a"] * 10}))
    corrupt = corrupt[:8] + b"\x00" * 40 + corrupt[48:]
    items = read_all(corrupt, "z.parquet")
    assert items and items[-1].reason == "damaged:bad-parquet"


# ---- sniffing ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("head,name,fmt", [
    (b"WARC/1.1\r\n", "a.bin", "warc"), (b"filedesc://x", "a", "arc"), (b'{"text":1}', "a.txt", "jsonl"),
    (b"[{}]", "a", "json-array"), (b'{\n  "RECORDS": [', "a.json", "json-array"),
    (b"\xef\xbb\xbf<!DOCTYPE html>", "a", "html"), (b"<p>x", "a.html.gz", "html"),
    (b"hello", "a.wet.gz", "warc"), (b"hello", "a.bin", None),
])
def test_detect_format(head, name, fmt):
    assert detect_format(head, name) == fmt


def test_unknown_and_empty_files():
    assert [i.reason for i in read_all(b"\x00\x01\x02 binary", "b.bin")] == ["unknown-format"]
    assert read_all(b"", "e.warc") == []
    assert [i.reason for i in read_all(gzip.compress(b"WARC/1.0\r\n")[:15], "t.warc.gz")] == ["damaged:truncated"]


# ---- memory -----------------------------------------------------------------------------------------
class GeneratedWarc(io.RawIOBase):
    """A non-seekable stream of `n` identical ~50 KB response records, produced on the fly."""

    def __init__(self, n: int) -> None:
        self._record = response(b"<html><body>" + b"<p>lorem ipsum dolor sit amet</p>" * 1500 + b"</body></html>")
        self._left = n
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        if not self._pending and self._left:
            self._pending = memoryview(self._record)
            self._left -= 1
        n = min(len(b), len(self._pending))
        b[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n


def test_memory_stays_flat_on_a_50_mb_non_seekable_warc():
    stream = GeneratedWarc(1100)
    size = len(stream._record) * 1100
    assert size > 50_000_000
    tracemalloc.start()
    try:
        pages = 0
        for item in iter_file(stream, "big.warc"):
            pages += isinstance(item, RawPage)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert pages == 1100
    assert peak < 4_000_000, f"peak {peak} bytes for a {size} byte file"
