"""Dialogue readers: exact small cases for every format, the LCCC joining rule (also on real lines), bad input
counted as Skips, gzip damage, and every real sample file in ../shared/corpus-samples/dialogue with exact counts."""
from __future__ import annotations

import collections
import gzip
import io
import json

import pytest

from cleaners.dialogue.records import Post, Session, session_id
from pipelines.readers.dialogue import (iter_dialogue_file, join_spaced_characters, looks_space_tokenized,
                                        record_to_item)


def read(data: bytes, path: str) -> list:
    return list(iter_dialogue_file(io.BytesIO(data), path))


def jsonl(*records) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode()


def summary(items: list) -> list[tuple]:
    out = []
    for item in items:
        if isinstance(item, Session):
            out.append(("session", item.key, item.turns))
        elif isinstance(item, Post):
            out.append(("post", item.key, item.id, item.parent_id, item.text))
        else:
            out.append(("skip", item.key, item.reason))
    return out


# ---- joining rule ---------------------------------------------------------------------------------
@pytest.mark.parametrize("spaced, joined", [
    ("你 好 啊", "你好啊"),
    ("真 的 瘦 了 . . . .", "真的瘦了...."),                     # ASCII punctuation joins like CJK punctuation
    ("是 哈 ， 你 没 遭 撒 ？", "是哈，你没遭撒？"),
    ("这 一 年 过 的 ， 2 4 岁 的 我", "这一年过的，24岁的我"),       # LCCC splits digits too
    ("疯 狂 打 c a l l", "疯狂打call"),                         # ...and Latin letters
    ("你 好 啊 , hello world", "你好啊,hello world"),          # word tokens keep their space
    ("A P P store", "APP store"),
    ("i love you", "i love you"),
    ("3 0 本 书", "30本书"),
    ("好  的", "好 的"),                                       # a double space is an original space
    (" 前 后 空 格 ", "前后空格"),
    ("", ""),
])
def test_join_spaced_characters(spaced, joined):
    assert join_spaced_characters(spaced) == joined


def test_looks_space_tokenized():
    assert looks_space_tokenized(["遭 淋 安 逸 了 ？", "晚 班"])
    assert looks_space_tokenized(["你 好 啊 , hello world"])          # 4 of 6 tokens are one character
    assert not looks_space_tokenized(["你好 世界 今天"])               # word-segmented Chinese stays
    assert not looks_space_tokenized(["I am a man"])                  # half single letters: not LCCC
    assert not looks_space_tokenized(["好"])                          # nothing to join
    assert not looks_space_tokenized(["你 好 啊", "我们 都 很 好 的 朋友"])  # one CJK word token is enough


def test_real_lccc_lines_are_joined(corpus_samples):
    path = corpus_samples / "dialogue" / "cdial-gpt_lccc" / "toy_train.txt"
    items = {item.key.rsplit("#", 1)[1]: item for item in iter_dialogue_file(path.open("rb"), str(path))}
    assert items["1540"].turns[0] == "疯狂打call"
    assert items["86"].turns[0].startswith("这一年过的，依旧的平淡，24岁的我，")
    assert items["3953"].turns == ["土豪下次可以带上我吗我可以去蹭个WIFI的", "你都不跟我玩"]
    assert items["1"].turns == ["为什么听一面之辞就相信？只有当事人才能知道吧，咱们旁观者并不知道真相啊",
                                "因为另一个当事人不站出来啊…站出来就能比较了。"]


# ---- LCCC text ---------------------------------------------------------------------------------------
def test_lccc_text_exact():
    """Blank lines give nothing; a line of ideographic spaces and tabs has no turn with text."""
    data = "你 好\t你 好 啊\n\n在 吗 ？\r\n\u3000\t \n".encode() + b"\xff\xfe bad\tline\n" + "单\n".encode()
    items = read(data, "d/x.txt")
    assert summary(items) == [("session", "d/x.txt#1", ["你好", "你好啊"]),
                              ("session", "d/x.txt#3", ["在吗？"]),
                              ("skip", "d/x.txt#4", "no-turns"),
                              ("skip", "d/x.txt#5", "bad-record"),
                              ("session", "d/x.txt#6", ["单"])]
    first = items[0]
    assert first.source == "d/x.txt" and first.lang == "" and first.speakers is None
    assert first.id == session_id(["你好", "你好啊"]) and first.meta == {"joined_characters": True}


def test_text_without_extension_is_sniffed_as_lccc_text():
    assert summary(read("你 好\t好\n".encode(), "noext")) == [("session", "noext#1", ["你好", "好"])]


# ---- JSON lines ----------------------------------------------------------------------------------------
def test_jsonl_every_record_shape():
    data = jsonl(
        ["你 好", "好 啊"],
        {"turns": ["Hi there", "Hello"], "id": "t1", "lang": "en"},
        {"id": 7, "conversations": [{"from": "system", "value": "Be nice."}, {"from": "human", "value": "Hi"},
                                    {"from": "gpt", "value": "Hello!"}]},
        {"messages": [{"message": "知道这部电影吗？"}, {"message": "知道", "attrs": [{"attrname": "x"}]}],
         "name": "电影"},
        {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]},
        {"id": "p1", "parent_id": None, "text": "root", "author": "amy"},
        {"id": 2, "reply_to": 1, "content": "reply"},
        {"id": "p3", "parent_id": "", "text": "another root"},
    )
    items = read(data, "s.jsonl")
    assert summary(items) == [
        ("session", "s.jsonl#1", ["你好", "好啊"]),
        ("session", "s.jsonl#2", ["Hi there", "Hello"]),
        ("session", "s.jsonl#3", ["Hi", "Hello!"]),
        ("session", "s.jsonl#4", ["知道这部电影吗？", "知道"]),
        ("session", "s.jsonl#5", ["Hi", "Yo"]),
        ("post", "s.jsonl#6", "p1", None, "root"),
        ("post", "s.jsonl#7", "2", "1", "reply"),
        ("post", "s.jsonl#8", "p3", None, "another root"),
    ]
    plain, turns, sharegpt, kdconv, chat, root = items[:6]
    assert plain.meta == {"joined_characters": True} and plain.id == session_id(["你好", "好啊"])
    assert (turns.id, turns.meta["source_id"], turns.lang, turns.speakers) == (
        session_id(turns.turns), "t1", "en", None)  # input ids go to meta: they are not unique across files
    assert (sharegpt.id, sharegpt.speakers, sharegpt.meta) == (
        session_id(sharegpt.turns), ["human", "gpt"], {"system": "Be nice.", "source_id": "7"})
    assert (kdconv.speakers, kdconv.meta) == (None, {"name": "电影"})
    assert chat.speakers == ["user", "assistant"]
    assert (root.author, root.source, items[6].author) == ("amy", "s.jsonl", "")


def test_only_bare_turn_lists_are_joined():
    """ShareGPT / turns / KdConv / posts keep their spaces even when they look spaced."""
    items = read(jsonl({"turns": ["a b c d", "e f"]}, {"id": "1", "parent_id": None, "text": "你 好 啊"}), "s.jsonl")
    assert items[0].turns == ["a b c d", "e f"] and items[1].text == "你 好 啊"


def test_jsonl_bad_input_is_counted_never_raised():
    lines = [b'{"turns": ["ok", "fine"]}', b"{not json", b'"just a string"', b"[1, 2]", b'{"turns": "no list"}',
             b'{"turns": []}', b'{"turns": ["", "  "]}', b'{"conversations": [{"from": "human"}]}',
             b'{"messages": ["x"]}', b'{"title": "no turns"}', b'{"id": null, "parent_id": null, "text": "x"}',
             b'{"id": "a", "parent_id": [1], "text": "x"}', b'{"id": "a", "parent_id": "b"}',
             b'{"id": true, "parent_id": "b", "text": "x"}', b"\xff\xff", b"[[[[" * 100_000]
    items = read(b"\n".join(lines) + b"\n", "b.jsonl")
    assert [getattr(item, "reason", "session") for item in items] == [
        "session", "bad-json", "bad-record", "bad-record", "bad-record", "no-turns", "no-turns", "bad-record",
        "bad-record", "bad-record", "bad-record", "bad-record", "bad-record", "bad-record", "bad-json", "bad-json"]
    assert [item.key for item in items] == [f"b.jsonl#{n}" for n in range(1, 17)]


def test_jsonl_too_long_line_is_skipped_and_reading_goes_on():
    data = jsonl(["x" * 100, "y"], ["a", "b"])
    items = list(iter_dialogue_file(io.BytesIO(data), "l.jsonl", max_line_bytes=50))
    assert summary(items) == [("skip", "l.jsonl#1", "too-large"), ("session", "l.jsonl#2", ["a", "b"])]


def test_json_extension_holding_json_lines_is_sniffed():
    data = b"\xef\xbb\xbf" + jsonl({"turns": ["a", "b"]}, {"turns": ["c", "d"]})
    assert summary(read(data, "x.json")) == [("session", "x.json#1", ["a", "b"]), ("session", "x.json#2", ["c", "d"])]


# ---- JSON documents ---------------------------------------------------------------------------------
def test_lccc_split_document():
    doc = {"train": [["你 好", "好"], ["早"]], "valid": [], "test": [[], "oops", ["晚 安 ！"]]}
    items = read(json.dumps(doc, ensure_ascii=False, indent=1).encode(), "toy.json")
    assert summary(items) == [("session", "toy.json#train/0", ["你好", "好"]),
                              ("session", "toy.json#train/1", ["早"]),
                              ("skip", "toy.json#test/0", "no-turns"),
                              ("skip", "toy.json#test/1", "bad-record"),
                              ("session", "toy.json#test/2", ["晚安！"])]
    assert items[0].meta == {"split": "train", "joined_characters": True} and items[1].meta == {"split": "train"}


def test_list_documents_kdconv_turn_lists_posts():
    kdconv = [{"messages": [{"message": "知道吗？"}, {"message": "知道。"}], "name": "n"}, {"messages": "bad"}]
    assert summary(read(json.dumps(kdconv, indent=2).encode(), "k.json")) == [
        ("session", "k.json#0", ["知道吗？", "知道。"]), ("skip", "k.json#1", "bad-record")]
    lists = [["你 好", "好"], ["hello there", "hi"]]
    assert summary(read(json.dumps(lists).encode(), "l.json")) == [
        ("session", "l.json#0", ["你好", "好"]), ("session", "l.json#1", ["hello there", "hi"])]
    posts = [{"id": "1", "parent_id": None, "text": "a"}, {"id": "2", "parent_id": "1", "text": "b"}]
    assert summary(read(json.dumps(posts, indent=1).encode(), "p.json")) == [
        ("post", "p.json#0", "1", None, "a"), ("post", "p.json#1", "2", "1", "b")]


def test_document_bad_and_too_large():
    assert summary(read(b'[\n{"messages": [', "x.json")) == [("skip", "x.json#0", "damaged:bad-json")]
    assert summary(read(b'[\n3\n]', "x.json")) == [("skip", "x.json#0", "bad-record")]
    assert summary(read(b'{"turns": ["a", "b"]', "x.json")) == [("skip", "x.json#0", "bad-json")]
    # documents stream record by record: the cap is per record, and the records before a break are kept
    big = json.dumps([["a", "b"]] * 3 + [["c" * 600]] + [["d", "e"]]).encode()
    items = list(iter_dialogue_file(io.BytesIO(b"[\n" + big[1:]), "big.json", max_line_bytes=500))
    assert summary(items) == [("session", f"big.json#{n}", ["a", "b"]) for n in range(3)] + [
        ("skip", "big.json#3", "too-large"), ("skip", "big.json#3", "damaged:bad-json")]
    turns = json.dumps(["x" * 300, "y" * 300]).encode()
    assert summary(list(iter_dialogue_file(io.BytesIO(turns), "t.json", max_line_bytes=500))) == [
        ("skip", "t.json#0", "too-large")]
    assert summary(read(turns, "t.json")) == [("session", "t.json#0", ["x" * 300, "y" * 300])]
    assert summary(read(b'["a", ["b"], "c"]', "m.json")) == [("skip", "m.json#0", "bad-record")]
    assert read(b"", "empty.json") == [] and read(b"\n\n", "blank.txt") == []


def test_record_to_item_on_non_containers():
    assert record_to_item(3, "k", "p").reason == "bad-record"
    assert record_to_item(None, "k", "p").reason == "bad-record"


# ---- gzip and damage ---------------------------------------------------------------------------------
def test_gzip_equals_plain():
    data = "你 好\t好 啊\n再 见\t拜\n".encode()
    assert summary(read(gzip.compress(data), "a.txt.gz")) == [
        ("session", "a.txt.gz#1", ["你好", "好啊"]), ("session", "a.txt.gz#2", ["再见", "拜"])]
    doc = json.dumps({"valid": [["好"]]}).encode()
    assert summary(read(gzip.compress(doc), "d.json.gz")) == [("session", "d.json.gz#valid/0", ["好"])]


def test_truncated_gzip_ends_with_one_damage_skip():
    data = jsonl(*[{"turns": [f"turn {n}", "reply"]} for n in range(200)])
    packed = gzip.compress(data)
    for cut in (len(packed) // 2, len(packed) - 9):
        items = read(packed[:cut], "t.jsonl.gz")
        assert all(isinstance(item, Session) for item in items[:-1])
        assert items[-1].reason == "damaged:truncated" and items[-1].is_damage
        assert len(items) <= 201
    doc = gzip.compress(json.dumps([["a", "b"]] * 50).encode())
    assert [item.reason for item in read(doc[:-20], "t.json.gz")] == ["damaged:truncated"]


def test_output_is_deterministic():
    data = jsonl(["你 好", "好"], {"conversations": [{"from": "human", "value": "hi"}]})
    assert read(data, "d.jsonl") == read(data, "d.jsonl")


# ---- real samples ------------------------------------------------------------------------------------
REAL_COUNTS = {
    "cdial-gpt_lccc/toy_data.json": 1400,
    "cdial-gpt_lccc/toy_train.txt": 10000,
    "cdial-gpt_lccc/toy_valid.txt": 2000,
    "flagai_chatalpaca/convo_samples.jsonl": 100,
    "kdconv/film_dev.json": 150,
    "kdconv/music_dev.json": 150,
}


def test_every_real_sample_file_is_covered(corpus_samples):
    found = {str(p.relative_to(corpus_samples / "dialogue")) for p in (corpus_samples / "dialogue").rglob("*")
             if p.is_file() and p.suffix != ".md"}
    assert found == set(REAL_COUNTS)


@pytest.mark.parametrize("name", sorted(REAL_COUNTS))
def test_real_sample_counts(corpus_samples, name):
    path = corpus_samples / "dialogue" / name
    with path.open("rb") as stream:
        items = list(iter_dialogue_file(stream, str(path)))
    assert collections.Counter(type(item).__name__ for item in items) == {"Session": REAL_COUNTS[name]}
    assert len({item.key for item in items}) == len(items)
    assert all(item.source == str(path) and len(item.turns) >= 1 for item in items)
    if "lccc" in name:      # every LCCC utterance is character-spaced: all joined, no space left
        assert all(item.meta.get("joined_characters") for item in items)
        assert not any(" " in turn for item in items for turn in item.turns)


def test_real_lccc_splits_and_speakers(corpus_samples):
    base = corpus_samples / "dialogue"
    toy = list(iter_dialogue_file((base / "cdial-gpt_lccc/toy_data.json").open("rb"), "toy_data.json"))
    assert collections.Counter(item.meta["split"] for item in toy) == {"train": 1000, "valid": 200, "test": 200}
    assert toy[0].key == "toy_data.json#valid/0"
    assert toy[0].turns == ["遭淋安逸了？", "是哈，你没遭撒？", "晚班", "那起来这么早，这天气多适合睡觉", "睡不着了"]
    chat = list(iter_dialogue_file((base / "flagai_chatalpaca/convo_samples.jsonl").open("rb"), "c.jsonl"))
    assert (chat[0].meta["source_id"] == "chatalpaca_data_10k_0"
            and chat[0].turns[0] == "Find the product of the numbers: 5 and 8")
    assert all(set(item.speakers) <= {"human", "gpt"} and len(item.speakers) == len(item.turns) for item in chat)
    film = list(iter_dialogue_file((base / "kdconv/film_dev.json").open("rb"), "film_dev.json"))
    assert film[0].turns[0] == "知道恋恋笔记本这部电影吗？" and film[0].meta["name"]
