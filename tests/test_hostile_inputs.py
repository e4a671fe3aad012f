"""Hostile and careless input to the readers and pipelines: lone surrogates, decompression bombs, deep JSON,
wrong field types, list text columns, broken links. Every case keeps the run alive, counts its drop, and loses
nothing valid next to it."""
from __future__ import annotations

import gzip
import io
import json
import os
import tracemalloc
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cleaners.document import encodable
from pipelines.cli import main
from pipelines.dedup.corpus import prepare
from pipelines.readers import RawPage, Skip, iter_file
from pipelines.readers.bytesource import ByteSource
from pipelines.readers.dialogue import iter_dialogue_file
from pipelines.readers.image_text import iter_image_text_file
from pipelines.readers.jsonrecords import iter_json_document, iter_json_lines, parse_json

ZH = "这是一段用来测试读取器的中文正文，内容完整，句子通顺，没有任何广告或者乱码。"


def zh_text(n: int) -> str:
    return f"第{n}篇。" + ZH * 6 + f"编号{n}结束。"


def read_output(folder: Path, part: str) -> list[dict]:
    rows = []
    for path in sorted((folder / part).glob("part-*")):
        rows += [json.loads(line) for line in gzip.open(path, "rt", encoding="utf-8")]
    return rows


def stats_of(folder: Path) -> dict:
    return json.loads((folder / "stats.json").read_text())


def stage(stats: dict, name: str) -> dict:
    return next(s for s in stats["stages"] if s["stage"] == name)


def balanced(stats: dict) -> bool:
    return all(s["in"] + s.get("created", 0) == s["out"] + s["dropped"] for s in stats["stages"])


# ---- one parser: surrogates, nesting ---------------------------------------------------------------
def test_parse_json_replaces_lone_surrogates_only():
    value = parse_json(rb'{"a\ud800": ["x\udc00y", {"k": "\ud83d\ude00 ok"}], "n": 1}')
    assert value == {"a\ufffd": ["x\ufffdy", {"k": "\U0001F600 ok"}], "n": 1}
    assert parse_json(b'"\xed\xa0\x80"') == "\ufffd"            # CESU-8 bytes, which json.loads accepts
    assert parse_json('"\ud800"') == "\ufffd"
    json.dumps(value, ensure_ascii=False).encode("utf-8")      # writable
    assert encodable({"\udcff": ("t",)}) == {"\ufffd": ("t",)}


def test_deep_nesting_is_a_bad_line_not_a_lost_file():
    with pytest.raises(ValueError, match="nested too deeply"):
        parse_json(b"[" * 100_000)
    data = b'{"text": "first"}\n' + b"[" * 100_000 + b'\n{"text": "after"}\n'
    items = list(iter_file(io.BytesIO(data), "d.jsonl"))
    assert [(i.key, i.reason if isinstance(i, Skip) else i.text) for i in items] == [
        ("d.jsonl#1", "first"), ("d.jsonl#2", "bad-json"), ("d.jsonl#3", "after")]


# ---- caps enforced while decompressing ----------------------------------------------------------------
def _peak_bytes(consume) -> int:
    tracemalloc.start()
    try:
        consume()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_gzip_line_bomb_costs_its_line_and_bounded_memory():
    line = b'{"text": "' + b"a" * 40_000_000 + b'"}\n'
    bomb = gzip.compress(line + b'{"text": "after the bomb"}\n', compresslevel=9)
    assert len(bomb) < 100_000
    items: list = []
    peak = _peak_bytes(lambda: items.extend(
        iter_json_lines(ByteSource(io.BytesIO(bomb), gzipped=True), "b.jsonl.gz", 1_000_000)))
    assert [(key, v.reason if isinstance(v, Skip) else v) for key, v in items] == [
        ("b.jsonl.gz#1", "too-large"), ("b.jsonl.gz#2", {"text": "after the bomb"})]
    assert peak < 8_000_000, peak            # one capped line plus read buffers, not 40 MB


def test_an_over_long_csv_line_is_skipped_unread(monkeypatch):
    import pipelines.readers.image_text as image_text
    monkeypatch.setattr(image_text, "MAX_LINE_BYTES", 1000)
    data = b"url,caption\nhttp://a/1.jpg,one\nhttp://b/" + b"x" * 5_000_000 + b".jpg,big\nhttp://c/3.jpg,three\n"
    items: list = []
    peak = _peak_bytes(lambda: items.extend(iter_image_text_file(io.BytesIO(gzip.compress(data)), "l.csv.gz")))
    assert [(i.key, getattr(i, "reason", None) or i.url) for i in items] == [
        ("l.csv.gz#0", "http://a/1.jpg"), ("l.csv.gz#1", "too-large"), ("l.csv.gz#2", "http://c/3.jpg")]
    assert peak < 4_000_000, peak


def test_a_gzip_json_document_streams_record_by_record():
    sessions = [[f"第{n}句话，你好吗？" * 3, f"我很好，谢谢你{n}。" * 3] for n in range(60_000)]
    document = json.dumps({"train": sessions, "valid": [["好的呀", "再见了"]]}, ensure_ascii=False).encode()
    packed = gzip.compress(document)
    assert len(document) > 10 * 1_000_000 and len(packed) < len(document) // 5
    count = {"sessions": 0}

    def consume():
        for item in iter_dialogue_file(io.BytesIO(packed), "lccc.json.gz"):
            assert not isinstance(item, Skip), item
            count["sessions"] += 1
    peak = _peak_bytes(consume)
    assert count["sessions"] == 60_001
    assert peak < 12_000_000, peak           # a read chunk and one record, not the whole document's objects


def test_json_document_cap_is_per_record():
    big = json.dumps([{"text": "x" * 5000}, {"text": "ok"}]).encode()
    items = [v for _, _, v in iter_json_document(ByteSource(io.BytesIO(big), gzipped=False), "a.json", 1000)]
    assert [i.reason for i in items] == ["too-large", "damaged:bad-json"]
    split = b'{"train": [["a"]], "valid": 3}'
    items = list(iter_json_document(ByteSource(io.BytesIO(split), gzipped=False), "s.json", 100, ("train", "valid")))
    assert items == [("s.json#train/0", "train", ["a"]), ("s.json#valid", "valid", 3)]


# ---- wrong types -------------------------------------------------------------------------------------
def test_dedup_prepare_on_wrong_field_types():
    assert prepare({"content": "正文内容，中文", "lang": ["zh"]}, "f#1")["lang"] == "zh"
    assert prepare({"text": "hello world", "lang": 7}, "f#2")["lang"] == "en"
    assert prepare({"content": "x", "url": ["http://a"]}, "f#3") == "bad-field:url"
    assert prepare({"content": "x", "date": 2020}, "f#4") == "bad-field:date"
    assert prepare({"content": "x", "scores": {"quality": "high"}}, "f#5") == "bad-field:scores"
    assert prepare({"content": "x", "scores": [1]}, "f#6") == "bad-field:scores"
    assert prepare({"content": "x", "id": {"a": 1}}, "f#7")["id"] != "{'a': 1}"
    assert prepare({"content": ["x"]}, "f#8") == "no-text"


def test_parquet_list_text_column_is_joined_or_dropped(tmp_path):
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"text": [["第一段", "第二段"], ["only"], []], "url": ["u1", "u2", "u3"]}), path)
    items = list(iter_file(open(path, "rb"), str(path)))
    assert [(i.text if isinstance(i, RawPage) else i.reason) for i in items] == ["第一段\n第二段", "only", "no-text"]
    path2 = tmp_path / "n.parquet"
    pq.write_table(pa.table({"text": [[1, 2]], "url": ["u"]}), path2)
    assert [i.reason for i in iter_file(open(path2, "rb"), str(path2))] == ["bad-text-type"]


def test_image_text_lists_and_tars_with_surrogates(tmp_path):
    rows = b'{"url": "http://img.example/\\ud800.jpg", "caption": "a red \\udc00 fox"}\n'
    items = list(iter_image_text_file(io.BytesIO(rows), "l.jsonl"))
    assert (items[0].url, items[0].caption) == ("http://img.example/\ufffd.jpg", "a red \ufffd fox")
    import tarfile
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT, encoding="latin-1") as tf:
        for name, data in ((b"k\xff.jpg", b"\xff\xd8img"), (b"k\xff.txt", b"caption")):
            info = tarfile.TarInfo(name.decode("latin-1"))
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    items = list(iter_image_text_file(io.BytesIO(buf.getvalue()), "s.tar"))
    assert len(items) == 1 and items[0].key == "s.tar#k\ufffd" and items[0].caption == "caption"


# ---- whole runs: nothing stops them -----------------------------------------------------------------------
def _hostile_folder(tmp_path: Path, lines: list[str], suffix: str = ".jsonl") -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / f"good{suffix}").write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.symlink(folder / "nowhere", folder / f"dangling{suffix}")
    os.symlink(folder / f"loop{suffix}", folder / f"loop{suffix}")
    (folder / os.fsdecode(b"bad\xffname" + suffix.encode())).write_text(lines[-1] + "\n", encoding="utf-8")
    return folder


def run_on_hostile_folder(tmp_path: Path, command: str, lines: list[str]) -> Path:
    """Run `wudao <command>` on a folder of `lines` plus a dangling link, a link loop and a file whose name is not
    UTF-8; check that it balances and counts the two links as unreadable files."""
    folder = _hostile_folder(tmp_path, lines)
    out = tmp_path / "out"
    assert main([command, "--input", str(folder / "*.jsonl"), "--output", str(out), "--no-progress"]) == 0
    stats = stats_of(out)
    assert balanced(stats)
    assert stage(stats, "read")["dropped_by_reason"] == {"unreadable-file:FileNotFoundError": 1,
                                                            "unreadable-file:OSError": 1}
    return out


def test_text_run_with_surrogates_broken_links_and_a_bad_file_name(tmp_path):
    lines = [json.dumps({"url": "http://a.example/\ud800", "content": zh_text(1)}, ensure_ascii=True),
             json.dumps({"url": "http://b.example/", "date": "2020\udc00", "id": "x\ud800",
                         "content": zh_text(2)}, ensure_ascii=True),
             json.dumps({"url": "http://c.example/", "content": zh_text(3)}, ensure_ascii=True)]
    out = run_on_hostile_folder(tmp_path, "text", lines)
    corpus = {row["url"]: row for row in read_output(out, "corpus")}
    assert set(corpus) == {"http://a.example/\ufffd", "http://b.example/", "http://c.example/"}
    assert (corpus["http://b.example/"]["date"], corpus["http://b.example/"]["source_id"]) == ("2020\ufffd", "x\ufffd")
    sources = [row["source"] for row in read_output(out, "rejects") + list(corpus.values())]
    assert sum("bad\ufffdname.jsonl" in source for source in sources) == 1   # its copy of record 3 (a duplicate)


def test_a_directly_named_dangling_link_is_a_counted_drop(tmp_path):
    os.symlink(tmp_path / "nowhere.jsonl", tmp_path / "d.jsonl")
    out = tmp_path / "out"
    assert main(["dedup", "--input", str(tmp_path / "d.jsonl"), "--output", str(out), "--no-progress"]) == 0
    assert stage(stats_of(out), "read")["dropped_by_reason"] == {"unreadable-file:FileNotFoundError": 1}


def test_dedup_run_with_bad_types_deep_json_and_surrogates(tmp_path):
    lines = [json.dumps({"id": "a", "lang": ["zh"], "content": zh_text(1)}),
             "[" * 100_000,
             json.dumps({"id": "b\ud800", "url": "http://b/\udc00", "content": zh_text(2)}, ensure_ascii=True),
             json.dumps({"id": "c", "url": 5, "content": zh_text(3)}),
             json.dumps({"id": "d", "content": zh_text(4)})]
    src = tmp_path / "c.jsonl.gz"
    src.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    out = tmp_path / "out"
    assert main(["dedup", "--input", str(src), "--output", str(out), "--no-progress"]) == 0
    stats = stats_of(out)
    assert balanced(stats) and stage(stats, "read")["dropped_by_reason"] == {"bad-json": 1, "bad-field:url": 1}
    kept = {row["id"]: row for row in read_output(out, "corpus")}
    assert set(kept) == {"a", "b\ufffd", "d"} and kept["a"]["lang"] == "zh" and kept["b\ufffd"]["url"] == "http://b/\ufffd"


def test_dialogue_run_with_surrogate_turns_and_broken_links(tmp_path):
    lines = [json.dumps({"id": "s\ud800",
                         "turns": ["你好，今天天气怎么样\udc00？", "挺好的，阳光明媚，适合出去走走。"]},
                        ensure_ascii=True),
             json.dumps({"turns": ["周末有什么安排吗？", "打算去图书馆看书，你呢？"]}, ensure_ascii=False)]
    out = run_on_hostile_folder(tmp_path, "dialogue", lines)
    rows = read_output(out, "corpus")
    assert sorted(row["turns"] for row in rows) == sorted(
        [["你好，今天天气怎么样\ufffd？", "挺好的，阳光明媚，适合出去走走。"],
         ["周末有什么安排吗？", "打算去图书馆看书，你呢？"]])
    assert any("bad\ufffdname.jsonl" in row["source"] for row in rows + read_output(out, "rejects"))
