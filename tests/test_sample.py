"""The embedded sample crawl (pipelines/data/sample): reproducible, small, well-formed, and its expectations
(expected.json) are real: planted encodings, checksums and boilerplate are what the spec says they are, and the
kept pages' snippets survive the pinned extractor (trafilatura) and OpenCC t2s."""
from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys
import zlib
from collections import Counter
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "pipelines" / "data" / "sample"
BUILD = REPO / "scripts" / "build_sample.py"
REASON_VOCABULARY = ("lang:", "wordlist:", "gopher-", "c4-", "fineweb-", "zh-", "extract-", "http-status:",
                     "non-html", "damaged:", "bad-http", "bad-json", "no-text")
STAGES = ("read", "extract", "language", "filter")


# ---------------------------------------------------------------- small readers written for the test

def gzip_members(data: bytes) -> tuple[list[bytes], bytes | None]:
    """Decompressed gzip members of a per-record .warc.gz, and the partial bytes of a truncated last member."""
    members, partial = [], None
    while data:
        inflater = zlib.decompressobj(31)
        out = inflater.decompress(data)
        if not inflater.eof:
            partial = out
            break
        members.append(out)
        data = inflater.unused_data
    return members, partial


def split_records(data: bytes) -> list[tuple[dict[str, str], bytes]]:
    """(WARC headers, block) of each complete record in uncompressed WARC bytes."""
    records, pos = [], 0
    while pos < len(data):
        end = data.index(b"\r\n\r\n", pos)
        lines = data[pos:end].decode("utf-8").split("\r\n")
        assert lines[0] == "WARC/1.0", lines[0]
        headers = dict(line.split(": ", 1) for line in lines[1:])
        start = end + 4
        stop = start + int(headers["Content-Length"])
        assert data[stop:stop + 4] == b"\r\n\r\n", "record must end with two CRLF"
        records.append((headers, data[start:stop]))
        pos = stop + 4
    return records


def read_warc(path: Path) -> tuple[list[tuple[dict[str, str], bytes]], bytes | None]:
    data = path.read_bytes()
    if path.name.endswith(".gz"):
        members, partial = gzip_members(data)
        return [r for m in members for r in split_records(m)], partial
    return split_records(data), None


def dechunk(body: bytes) -> bytes:
    out, pos = [], 0
    while True:
        eol = body.index(b"\r\n", pos)
        size = int(body[pos:eol], 16)
        if size == 0:
            return b"".join(out)
        out.append(body[eol + 2:eol + 2 + size])
        pos = eol + 2 + size + 2


def http_parts(block: bytes) -> tuple[str, dict[str, str], bytes]:
    """(status line, lower-cased headers, decoded body) of an HTTP response block."""
    head, _, body = block.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v for k, _, v in (line.partition(": ") for line in lines[1:])}
    if headers.get("transfer-encoding") == "chunked":
        body = dechunk(body)
    if headers.get("content-encoding") == "gzip":
        body = gzip.decompress(body)
    return lines[0], headers, body


def gb11643_valid(number: str) -> bool:
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    return "10X98765432"[sum(int(d) * w for d, w in zip(number[:17], weights)) % 11] == number[17]


def luhn_valid(number: str) -> bool:
    digits = [int(d) for d in reversed(number)]
    return (sum(digits[0::2]) + sum(sum(divmod(2 * d, 10)) for d in digits[1::2])) % 10 == 0


# ---------------------------------------------------------------- fixtures

def build_into(folder: Path) -> Path:
    subprocess.run([sys.executable, str(BUILD), "--output", str(folder)], check=True, capture_output=True)
    return folder


@pytest.fixture(scope="module")
def rebuilt(tmp_path_factory) -> Path:
    return build_into(tmp_path_factory.mktemp("sample-a"))


@pytest.fixture(scope="module")
def expected() -> dict:
    return json.loads((SAMPLE / "expected.json").read_text("utf-8"))


@pytest.fixture(scope="module")
def warc_records() -> dict[str, list[tuple[dict[str, str], bytes]]]:
    return {p.name: read_warc(p)[0] for p in sorted(SAMPLE.glob("*.warc*"))}


@pytest.fixture(scope="module")
def payloads(warc_records, expected) -> dict[tuple[str, str], tuple[dict[str, str], bytes]]:
    """(file, url) -> (HTTP headers, body) of every response record, plus the bare HTML file under url ''."""
    out = {}
    for name, records in warc_records.items():
        for headers, block in records:
            if headers["WARC-Type"] == "response" and not block.startswith(b"HTPT"):
                _, http_headers, body = http_parts(block)
                out[(name, headers["WARC-Target-URI"])] = (http_headers, body)
    for name in expected["files"]:
        if name.endswith(".html"):
            out[(name, "")] = ({"content-type": "text/html; charset=utf-8"}, (SAMPLE / name).read_bytes())
    return out


@pytest.fixture(scope="module")
def t2s():
    opencc = pytest.importorskip("opencc")
    return opencc.OpenCC("t2s").convert


# ---------------------------------------------------------------- reproducible and small

def test_build_is_deterministic(rebuilt, tmp_path):
    again = build_into(tmp_path / "sample-b")
    names = sorted(p.name for p in rebuilt.iterdir())
    assert names == sorted(p.name for p in again.iterdir())
    for name in names:
        assert (rebuilt / name).read_bytes() == (again / name).read_bytes(), name


def test_committed_sample_is_what_the_script_builds(rebuilt):
    """Byte for byte, except that gzip streams are compared decompressed (zlib builds may differ)."""
    committed = sorted(p.name for p in SAMPLE.iterdir() if p.name != "README.md")
    assert committed == sorted(p.name for p in rebuilt.iterdir())
    for name in committed:
        ours, theirs = (SAMPLE / name).read_bytes(), (rebuilt / name).read_bytes()
        if name.endswith(".gz"):
            assert gzip_members(ours) == gzip_members(theirs), name
        else:
            assert ours == theirs, name


def test_gzip_members_carry_no_timestamp_or_name():
    for path in SAMPLE.glob("*.gz"):
        head = path.read_bytes()[:10]
        assert head[:3] == b"\x1f\x8b\x08" and head[3] & 0x08 == 0, f"{path.name}: file name stored"
        assert head[4:8] == b"\0\0\0\0", f"{path.name}: mtime is not 0"


def test_sample_stays_small():
    total = sum(p.stat().st_size for p in SAMPLE.iterdir())
    assert total < 1_500_000, f"sample is {total} bytes"


# ---------------------------------------------------------------- well-formed files

def test_warc_record_counts_match_the_listing(expected):
    listing = expected["files"]
    warcs = sorted(p.name for p in SAMPLE.glob("*.warc*"))
    assert warcs == sorted(n for n in listing if ".warc" in n)
    for name in warcs:
        records, partial = read_warc(SAMPLE / name)
        assert Counter(h["WARC-Type"] for h, _ in records) == Counter(listing[name]["records"]), name
        truncated = listing[name].get("truncated_records")
        if truncated:
            assert partial is not None and partial.startswith(b"WARC/1.0\r\nWARC-Type: response"), name
            length = int(re.search(rb"Content-Length: (\d+)", partial).group(1))
            assert len(partial.split(b"\r\n\r\n", 1)[1]) < length, "the last record must really be cut"
        else:
            assert partial is None, name


def test_warc_headers_are_complete_and_ids_unique(warc_records):
    ids = []
    for records in warc_records.values():
        assert records[0][0]["WARC-Type"] == "warcinfo"
        for headers, _ in records:
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", headers["WARC-Date"])
            assert re.fullmatch(r"<urn:uuid:[0-9a-f-]{36}>", headers["WARC-Record-ID"])
            ids.append(headers["WARC-Record-ID"])
    assert len(ids) == len(set(ids))


def test_jsonl_lines_match_the_listing(expected):
    lines = gzip.decompress((SAMPLE / "pages.jsonl.gz").read_bytes()).decode("utf-8").splitlines()
    info = expected["files"]["pages.jsonl.gz"]
    assert len(lines) == info["lines"]
    bad, records = 0, []
    for line in lines:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            bad += 1
    assert bad == info["bad_json_lines"]
    for rec in records:
        assert set(rec) == {"id", "uniqueKey", "titleUkey", "dataType", "title", "content"}
    assert sum(1 for r in records if r["content"] == "") == 1


# ---------------------------------------------------------------- expected.json is a coherent spec

def test_every_case_is_well_formed(expected):
    for case in expected["cases"]:
        assert case["expect"] in ("kept", "dropped", "skipped"), case
        assert case["file"] in expected["files"], case
        if case["expect"] == "kept":
            assert case["must_contain"] and case["lang"] in ("zh", "en"), case
        elif case["expect"] == "dropped":
            assert case["stage"] in STAGES, case
            assert case["reason_prefix"] == case["reason_prefixes"][0], case
            assert all(r in REASON_VOCABULARY for r in case["reason_prefixes"]), case


def test_every_case_points_at_a_record(expected, warc_records):
    lines = gzip.decompress((SAMPLE / "pages.jsonl.gz").read_bytes()).decode("utf-8").splitlines()
    partial_urls = {}
    for name in warc_records:
        _, partial = read_warc(SAMPLE / name)
        if partial:
            partial_urls[name] = re.search(rb"WARC-Target-URI: (\S+)", partial).group(1).decode()
    for case in expected["cases"]:
        if case["file"] in warc_records and case["url"]:
            types = {h["WARC-Type"] for h, _ in warc_records[case["file"]]
                     if h.get("WARC-Target-URI") == case["url"]}
            wanted = case.get("record_type", "response")
            assert wanted in types or partial_urls.get(case["file"]) == case["url"], case
        elif case["file"].endswith(".jsonl.gz"):
            line = lines[case["line"] - 1]
            assert ("id" not in case) or json.loads(line)["id"] == case["id"], case


def test_the_sample_covers_every_rule(expected):
    cases = expected["cases"]
    kept_html = Counter(c["lang"] for c in cases if c["expect"] == "kept" and not c["file"].endswith(".jsonl.gz"))
    assert kept_html["zh"] >= 20 and kept_html["en"] >= 20
    reasons = {c["reason_prefix"] for c in cases if c["expect"] == "dropped"}
    assert reasons == set(REASON_VOCABULARY)
    names = {c["case"] for c in cases}
    for needed in ("gbk-http-header-only", "gbk-meta-only", "gbk-undeclared", "big5-http-header-only",
                   "big5-meta-only", "big5-undeclared", "gb18030-meta-non-gbk-char", "traditional-utf8",
                   "exact-duplicate", "near-duplicate", "http-chunked", "http-content-encoding-gzip",
                   "truncated-record", "broken-http-header", "revisit-record", "metadata-record",
                   "warcinfo-record", "bare-html-file", "jsonl-bad-json", "jsonl-empty-content"):
        assert needed in names, needed
    placeholders = {p for c in cases for p in c.get("planted", {})}
    assert placeholders == {"ID_CARD", "PHONE", "EMAIL", "QQ", "WECHAT", "IP", "BANK_CARD"}


# ---------------------------------------------------------------- planted facts are true

def test_encodings_are_really_gbk_gb18030_and_big5(expected, payloads):
    for case in (c for c in expected["cases"] if c.get("charset") in ("gbk", "gb18030", "big5")):
        headers, body = payloads[(case["file"], case["url"])]
        with pytest.raises(UnicodeDecodeError):
            body.decode("utf-8")
        body.decode(case["charset"])  # strict: raises if the bytes are not in that codec
        if case["charset"] == "gb18030":
            with pytest.raises(UnicodeDecodeError):
                body.decode("gbk")
        in_header = "charset=" in headers["content-type"].lower()
        in_meta = b"charset=" in body.lower()
        declared = {"http-header-only": (True, False), "meta-only": (False, True), "undeclared": (False, False),
                    "meta-non-gbk-char": (False, True)}
        where = next(v for k, v in declared.items() if case["case"].endswith(k))
        assert (in_header, in_meta) == where, case["case"]


def test_undeclared_encodings_are_detectable(expected, payloads, t2s):
    charset_normalizer = pytest.importorskip("charset_normalizer")
    for case in (c for c in expected["cases"] if c["case"].endswith("-undeclared")):
        _, body = payloads[(case["file"], case["url"])]
        text = t2s(str(charset_normalizer.from_bytes(body).best()))
        for snippet in case["must_contain"]:
            assert snippet in text, (case["case"], snippet)


def test_planted_ids_and_cards_have_valid_checksums(expected):
    planted = [c["planted"] for c in expected["cases"] if "planted" in c]
    ids = [v for p in planted for v in p.get("ID_CARD", [])]
    cards = [v for p in planted for v in p.get("BANK_CARD", [])]
    assert ids and cards
    assert any(v.endswith("X") for v in ids)
    assert {len(v) for v in cards} == {16, 19}
    for number in ids:
        assert re.fullmatch(r"\d{17}[\dX]", number) and gb11643_valid(number), number
        assert 1900 <= int(number[6:10]) <= 2010 and 1 <= int(number[10:12]) <= 12
    for number in cards:
        assert luhn_valid(number), number
        assert not luhn_valid(number[:-1] + str((int(number[-1]) + 1) % 10))


def test_planted_values_are_in_the_raw_pages(expected, payloads):
    lines = gzip.decompress((SAMPLE / "pages.jsonl.gz").read_bytes()).decode("utf-8").splitlines()
    for case in (c for c in expected["cases"] if "planted" in c):
        if case["file"].endswith(".jsonl.gz"):
            text = json.loads(lines[case["line"] - 1])["content"]
        else:
            text = payloads[(case["file"], case["url"])][1].decode("utf-8")
        for values in case["planted"].values():
            for value in values:
                assert value in text, (case["case"], value)


def test_no_unplanned_id_numbers(expected, payloads):
    """Every 18-character ID-shaped string in the sample is a planted one (nothing leaks in by accident)."""
    planted = {v for c in expected["cases"] for v in c.get("planted", {}).get("ID_CARD", [])}
    found = set()
    for (_, _), (headers, body) in payloads.items():
        text = body.decode("utf-8", "ignore")
        found |= {m for m in re.findall(r"(?<!\d)\d{17}[\dX](?!\d)", text) if gb11643_valid(m)}
    assert found == planted


# ---------------------------------------------------------------- the spec holds for the pinned tools

def extract(body: bytes, charset: str) -> str:
    trafilatura = pytest.importorskip("trafilatura")
    return trafilatura.extract(body.decode(charset)) or ""


def test_kept_pages_survive_extraction_and_t2s(expected, payloads, t2s):
    """must_contain / must_not_contain hold after trafilatura + OpenCC t2s (PII aside: it is another stage)."""
    for case in (c for c in expected["cases"] if c["expect"] == "kept" and "charset" in c):
        _, body = payloads[(case["file"], case["url"])]
        text = extract(body, case["charset"])
        if case["lang"] == "zh":
            text = t2s(text)
        planted = {v for vs in case.get("planted", {}).values() for v in vs}
        for snippet in case["must_contain"]:
            if not re.fullmatch(r"<[A-Z_]+>", snippet):
                assert snippet in text, (case["case"], case["url"], snippet)
        for snippet in case["must_not_contain"]:
            if snippet not in planted:
                assert snippet not in text, (case["case"], case["url"], snippet)


def test_kept_jsonl_records_hold_their_snippets(expected, t2s):
    lines = gzip.decompress((SAMPLE / "pages.jsonl.gz").read_bytes()).decode("utf-8").splitlines()
    for case in (c for c in expected["cases"] if c["file"].endswith(".jsonl.gz") and c["expect"] == "kept"):
        text = t2s(json.loads(lines[case["line"] - 1])["content"])
        for snippet in case["must_contain"]:
            if not re.fullmatch(r"<[A-Z_]+>", snippet):
                assert snippet in text, (case["case"], snippet)


def test_filtered_pages_still_carry_their_trigger_after_extraction(expected, payloads):
    by_case = {c["case"]: c for c in expected["cases"]}
    def text_of(name: str) -> str:
        case = by_case[name]
        return extract(payloads[(case["file"], case["url"])][1], "utf-8")
    assert "Lorem ipsum dolor sit amet" in text_of("c4-lorem-ipsum")
    assert any("{" in line and line.rstrip().endswith(".") for line in text_of("c4-curly-bracket").splitlines())
    lines = text_of("list-of-short-lines").splitlines()
    assert len(lines) >= 40
    assert sum(line.rstrip().endswith((".", "!", "?")) for line in lines) / len(lines) < 0.12
    for name, terms in (("spam-zh", ["代开发票", "网络赌博", "澳门赌场", "六合彩", "加微信领取", "刷单返利"]),
                        ("spam-en", ["online casino bonus", "payday loan", "viagra"])):
        text = text_of(name)
        assert all(term in text for term in terms), name
    for name in ("repetitive-zh", "repetitive-en"):
        lines = [line for line in text_of(name).splitlines() if line.strip()]
        assert len(set(lines)) / len(lines) < 0.5, name


def test_pages_without_content_give_the_extractor_nothing(expected, payloads):
    for case in (c for c in expected["cases"] if c["case"] in ("empty-body", "navigation-only")):
        text = extract(payloads[(case["file"], case["url"])][1], "utf-8")
        assert len(re.findall(r"[\u4e00-\u9fff]", text)) < 60, (case["case"], text[:80])
