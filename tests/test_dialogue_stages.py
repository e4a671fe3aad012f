"""Dialogue shuffle stages: threads -> sessions, advertisement replies, generic replies (exact small cases)."""
from __future__ import annotations

import os
import pickle
import tempfile
from collections import Counter

import apache_beam as beam
import pytest

from cleaners.dialogue.records import Post, Session
from cleaners.dialogue.sessions import generic_cover, runs_between, split_session, tokens, trigrams
from cleaners.dialogue.threads import build_thread
from pipelines.dialogue_stages import AdReplies, CappedDistinct, GenericReplies, ThreadsToSessions
from pipelines.ledger import SumCounts


def _dump(values, path):
    with open(path, "wb") as f:
        pickle.dump(values, f)


def run(transform, items):
    """Run one stage on FnApiRunner; returns (kept, rejects, summed counts, per-element count dicts)."""
    with tempfile.TemporaryDirectory() as tmp:
        with beam.Pipeline(runner="FnApiRunner") as p:
            out = p | beam.Create(items, reshuffle=False) | transform
            for name, pcoll in zip(("kept", "rejects", "counts"), out):
                pcoll | f"List{name}" >> beam.combiners.ToList() | f"Dump{name}" >> beam.Map(
                    _dump, os.path.join(tmp, name))
        got = {}
        for name in ("kept", "rejects", "counts"):
            with open(os.path.join(tmp, name), "rb") as f:
                got[name] = pickle.load(f)
    total = SumCounts().extract_output(SumCounts().merge_accumulators(Counter(d) for d in got["counts"]))
    return got["kept"], got["rejects"], total, got["counts"]


def balanced(total, stage):
    dropped = sum(n for k, n in total.items() if k.startswith(f"{stage}|drop|"))
    return total.get(f"{stage}|in", 0) + total.get(f"{stage}|created", 0) == total.get(f"{stage}|out", 0) + dropped


def by_key(sessions):
    return {s.key: s.turns for s in sessions}


# ------------------------------------------------------------------ threads

THREAD = [Post("r", "root", None, "alice", "f", "f#0"), Post("a", "reply a", "r", "bob", "f", "f#1"),
          Post("b", "reply b", "r", "carol", "f", "f#2"), Post("a1", "reply a1", "a", "alice", "f", "f#3")]


def test_build_thread_branching_paths_and_outcomes():
    sessions, outcomes = build_thread(THREAD, max_depth=32)
    assert by_key(sessions) == {"f#3": ["root", "reply a", "reply a1"], "f#2": ["root", "reply b"]}
    assert {p.id: o for p, o in outcomes} == {"r": "merged-into-session", "a": "merged-into-session",
                                              "a1": "out", "b": "out"}
    assert sessions[0].speakers == ["alice", "bob", "alice"] and sessions[0].source == "f"


def test_build_thread_depth_cut_keeps_last_posts():
    chain = [Post(f"p{i:02d}", f"t{i}", f"p{i - 1:02d}" if i else None) for i in range(10)]
    sessions, _ = build_thread(chain, max_depth=4)
    assert [s.turns for s in sessions] == [["t6", "t7", "t8", "t9"]]
    assert sessions[0].speakers is None


def test_build_thread_cycle_and_missing_parent():
    posts = [Post("x", "x", "y"), Post("y", "y", "x"), Post("z", "below cycle", "x"),
             Post("m", "orphan", "gone"), Post("m1", "reply to orphan", "m")]
    sessions, outcomes = build_thread(posts, max_depth=32)
    assert [s.turns for s in sessions] == [["orphan", "reply to orphan"]]
    assert {p.id: o for p, o in outcomes} == {"x": "cycle", "y": "cycle", "z": "cycle",
                                              "m": "merged-into-session", "m1": "out"}
    _, dropped = build_thread(posts, max_depth=32, missing_parent="drop")
    assert {p.id: o for p, o in dropped if p.id.startswith("m")} == {"m": "missing-parent", "m1": "missing-parent"}


def test_threads_to_sessions_pipeline_exact():
    posts = THREAD + [Post("a", "dup of a", "r", "", "g", "g#9"),                 # duplicate id
                      Post("lone", "nobody answered"),                          # no-reply
                      Post("c1", "c1", "c2"), Post("c2", "c2", "c1"),             # cycle
                      Post("o", "orphan", "missing"), Post("o1", "answer", "o"),  # missing parent -> root
                      Post("t1", "q", None, meta={"thread_id": "T"}), Post("t2", "ans", "t1", meta={"thread_id": "T"}),
                      "not a post", Post("", "empty id")]
    kept, rejects, total, per_item = run(ThreadsToSessions(max_depth=32), posts)
    assert sorted(s.turns for s in kept) == [["orphan", "answer"], ["q", "ans"], ["root", "reply a", "reply a1"],
                                             ["root", "reply b"]]
    assert total == {"threads|in": 14, "threads|out": 4, "threads|drop|merged-into-session": 4,
                     "threads|drop|duplicate-id": 1, "threads|drop|no-reply": 1, "threads|drop|cycle": 2,
                     "threads|drop|bad-input": 2, "threads|count|missing-parent": 1}
    assert len(per_item) == 14 and balanced(total, "threads")
    assert sorted(r["reason"] for r in rejects) == ["bad-input", "bad-input", "cycle", "cycle", "duplicate-id",
                                                    "no-reply"]
    assert [r["key"] for r in rejects if r["reason"] == "duplicate-id"] == ["g#9"]   # smallest key kept


def test_threads_deep_chain_and_determinism():
    chain = [Post(f"n{i:03d}", f"t{i}", f"n{i - 1:03d}" if i else None, key=f"k{i}") for i in range(40)]
    first, _, total, _ = run(ThreadsToSessions(max_depth=5), chain)
    again, _, _, _ = run(ThreadsToSessions(max_depth=5), list(reversed(chain)))
    assert [s.turns for s in first] == [["t35", "t36", "t37", "t38", "t39"]]
    assert [(s.id, s.key, s.turns) for s in first] == [(s.id, s.key, s.turns) for s in again]
    assert total["threads|drop|merged-into-session"] == 39 and balanced(total, "threads")


def test_threads_bad_parameters():
    with pytest.raises(ValueError):
        ThreadsToSessions(max_depth=1)
    with pytest.raises(ValueError):
        ThreadsToSessions(missing_parent="keep")


# ------------------------------------------------------------------ splitting and helpers

def test_split_session_fragments():
    s = Session(["a", "b", "AD", "c", "d", "e", "AD", "f"], key="k", speakers=list("12345678"))
    frags = split_session(s, {2, 6})
    assert [(f.key, f.turns, f.speakers) for f in frags] == [("k@0-1", ["a", "b"], ["1", "2"]),
                                                             ("k@3-5", ["c", "d", "e"], ["4", "5", "6"])]
    assert split_session(s, set()) == [s]
    assert split_session(Session(["a", "AD", "b"]), {1}) == []


def test_runs_between_is_the_one_splitting_rule():
    """Session rules and corpus-wide stages cut sessions at the same places (cleaners/dialogue/sessions.py)."""
    assert runs_between(8, {2, 6}) == [range(0, 2), range(3, 6), range(7, 8)]
    assert runs_between(3, set()) == [range(0, 3)]
    assert runs_between(4, {0, 1, 2, 3}) == []
    assert runs_between(5, {0, 4, 9, -1}) == [range(1, 4)]          # positions outside 0..n-1 are ignored
    assert runs_between(0, set()) == []


def test_capped_distinct_is_order_free():
    fn = CappedDistinct(3)
    a = fn.add_input(fn.add_input(fn.create_accumulator(), "x"), "y")
    b = fn.add_input(fn.add_input(fn.create_accumulator(), "z"), "w")
    assert fn.extract_output(fn.merge_accumulators([a, b])) == 3
    assert fn.extract_output(fn.merge_accumulators([a, fn.add_input(fn.create_accumulator(), "x")])) == 2


def test_tokens_and_cover():
    assert tokens("Hello, 你好 World42") == ["hello", ",", "你", "好", "world42"]
    units = tokens("哈哈哈好的")
    assert trigrams(units) == ["哈\x1f哈\x1f哈", "哈\x1f哈\x1f好", "哈\x1f好\x1f的"]
    assert generic_cover(units, {"哈\x1f哈\x1f哈"}) == pytest.approx(3 / 5)
    assert generic_cover(["a", "b"], {"x"}) == 0.0


# ------------------------------------------------------------------ ad replies

def test_ad_replies_exact():
    sessions = [Session([f"问题{i}", "加微信买药", f"回答{i}", f"追问{i}"], key=f"s{i}") for i in range(4)]
    sessions.append(Session(["你好", "加 微信买药"], key="only-ad"))           # normalized to the same reply
    sessions.append(Session(["今天天气", "不错"], key="clean"))
    bad = Session(["placeholder"])
    bad.turns = [1, 2]
    kept, rejects, total, per_item = run(AdReplies(max_contexts=4, min_reply_chars=4), sessions + [bad])
    assert by_key(kept) == {**{f"s{i}@2-3": [f"回答{i}", f"追问{i}"] for i in range(4)}, "clean": ["今天天气", "不错"]}
    assert total == {"ad_replies|in": 7, "ad_replies|out": 5, "ad_replies|drop|ad-reply": 1,
                     "ad_replies|drop|bad-input": 1, "ad_replies|count|replies-removed": 5}
    assert len(per_item) == 7 and balanced(total, "ad_replies")
    assert sorted(r["reason"] for r in rejects) == ["ad-reply", "bad-input"]
    kept5, _, total5, _ = run(AdReplies(max_contexts=5, min_reply_chars=4), sessions)  # 5 is not more than 5
    assert len(kept5) == 6 and "ad_replies|count|replies-removed" not in total5
    kept_short, _, total_short, _ = run(AdReplies(max_contexts=4), sessions)  # default: 6-char replies are no ads
    assert len(kept_short) == 6 and "ad_replies|count|replies-removed" not in total_short


def test_ad_replies_split_creates_fragments():
    ad = "关注公众号领红包"
    sessions = [Session([f"c{i}", ad], key=f"x{i}") for i in range(3)]
    sessions.append(Session(["甲", "乙", ad, "丙", "丁"], key="two"))
    kept, _, total, _ = run(AdReplies(max_contexts=2, min_reply_chars=4), sessions)
    assert by_key(kept) == {"two@0-1": ["甲", "乙"], "two@3-4": ["丙", "丁"]}
    assert total["ad_replies|created"] == 1 and balanced(total, "ad_replies")


# ------------------------------------------------------------------ generic replies

def test_generic_replies_exact():
    sessions = [Session([f"话题{i}号", "哈哈哈哈哈"], key=f"g{i}") for i in range(4)]
    sessions.append(Session(["哈哈哈哈哈", "我觉得这部电影拍得很好"], key="first-turn-generic"))
    sessions.append(Session(["问", "哈哈哈很有意思的想法"], key="partly"))
    kept, rejects, total, _ = run(GenericReplies(min_sessions=3, max_cover=0.9), sessions)
    assert sorted(by_key(kept)) == ["first-turn-generic", "partly"]
    assert total == {"generic_replies|in": 6, "generic_replies|out": 2, "generic_replies|drop|generic-reply": 4,
                     "generic_replies|count|replies-removed": 4}
    assert [r["reason"] for r in rejects] == ["generic-reply"] * 4 and balanced(total, "generic_replies")
    loose, _, _, _ = run(GenericReplies(min_sessions=6, max_cover=0.9), sessions)
    assert len(loose) == 6


def test_generic_replies_counts_distinct_session_ids():
    same = [Session(["x", "哈哈哈哈"], key=f"k{i}") for i in range(5)]      # one id five times: one session
    kept, _, _, _ = run(GenericReplies(min_sessions=1, max_cover=0.5), same)
    assert len(kept) == 5


def test_generic_replies_bad_parameters():
    with pytest.raises(ValueError):
        GenericReplies(max_cover=1.5)
    with pytest.raises(ValueError):
        AdReplies(max_contexts=0)


def test_a_factual_answer_repeated_after_many_questions_is_no_ad():
    """KdConv-style travel dialogue: the same duration answer follows 10 different questions; without ad cues it is
    kept (LCCC's limit of 5 applies to replies with cues only), while an answer with a contact cue is removed."""
    answer, ad = "1小时-2小时就够了。", "门票打折，加微信<WECHAT>领取"
    sessions = [Session([f"景点{i}适合游玩多久呢？", answer, f"景点{i}的门票多少钱？", ad], key=f"t{i}")
                for i in range(10)]
    kept, _, total, _ = run(AdReplies(), sessions)
    assert by_key(kept) == {f"t{i}@0-2": [f"景点{i}适合游玩多久呢？", answer, f"景点{i}的门票多少钱？"]
                            for i in range(10)}
    assert total["ad_replies|count|replies-removed"] == 10 and balanced(total, "ad_replies")


def test_a_reply_without_cues_is_an_ad_past_the_corpus_scaled_limit():
    spam = "每天都来看看这条回复"
    sessions = [Session([f"话题{i}", spam], key=f"p{i}") for i in range(60)]
    kept, _, total, _ = run(AdReplies(min_plain_contexts=50), sessions)   # 60 contexts > max(50, 0.001 * 60)
    assert kept == [] and total["ad_replies|drop|ad-reply"] == 60
    kept, _, _, _ = run(AdReplies(min_plain_contexts=50, plain_contexts_per_session=1.0), sessions)  # limit 60
    assert len(kept) == 60
    assert AdReplies().plain_limit(1_000_000) == 1000 and AdReplies().plain_limit(1000) == 50
    with pytest.raises(ValueError):
        AdReplies(max_contexts=10, min_plain_contexts=5)


@pytest.mark.parametrize("text, is_ad", [
    ("加微信<WECHAT>了解更多", True),            # a request to make contact alone
    ("景区电话是<PHONE>。", False),              # a contact detail alone answers a question
    ("全场包邮，点击链接下单", True),             # promo + call to action
    ("Huge discount, click here", True),
    ("旺季60元，淡季40元。", False),              # a price alone is a fact
    ("这个景点的地址在哪呢？", False),
    ("我很关注这个问题", False),                  # a call-to-action word alone
])
def test_ad_cues(text, is_ad):
    from cleaners.dialogue.ads import looks_like_ad
    assert looks_like_ad(text) is is_ad
