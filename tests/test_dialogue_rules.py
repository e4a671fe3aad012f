"""LCCC-style per-session dialogue rules: exact cases per rule, splitting, names, the ledger, bad input."""
from __future__ import annotations

import pickle
from collections import Counter
from types import SimpleNamespace

import pytest
from hypothesis import given, settings, strategies as st

from cleaners.dialogue.records import Session, session_id
from cleaners.runner import StepRunner
from cleaners.dialogue.rules import (
    SessionCleaner, cut_repeats, erase_emoticons, erase_hashtags, erase_platform_text, erase_reply_prefix,
    erase_repost_chain, erase_urls, mostly_chinese, top_words_share, words_of,
)
from pipelines.ledger import events_to_counts, reject_row

STAGE = "dialogue_rules"
RULE_STAGES = ("dialogue_erase", "dialogue_names", "dialogue_repeats", "dialogue_judge")


@pytest.fixture(scope="module")
def cleaner() -> SessionCleaner:
    c = SessionCleaner()
    c.setup()
    return c


def process(cleaner: SessionCleaner, session: Session, stage: str = STAGE) -> SimpleNamespace:
    """The rule steps run as the pipeline runs them: fragments kept, reject rows, and the ledger counts of the four
    stages seen as one stage `stage` (in: the first's, out and created: the last's, drops and counts: all), which
    is what the rules as a whole did to the session (per-stage counts: test_each_rule_phase_is_its_own_stage)."""
    out = StepRunner(cleaner.steps()).run(session)
    first, last = RULE_STAGES[0], RULE_STAGES[-1]
    counts: Counter = Counter()
    for (name, kind, detail), n in out.events.items():
        if kind in ("count", "drop") or (kind == "in" and name == first) or (kind in ("out", "created")
                                                                            and name == last):
            counts[(stage, kind, detail)] += n
    return SimpleNamespace(fragments=out.kept, counts=events_to_counts(counts),
                           rejects=[reject_row(item, stage, reason) for item, _, reason in out.drops])


def cut(cleaner: SessionCleaner, text: str) -> str:
    return cut_repeats(text, cleaner._word_re, cleaner._char_re, cleaner.max_repeats)


def balanced(counts: dict[str, int]) -> bool:
    dropped = sum(n for k, n in counts.items() if k.startswith(f"{STAGE}|drop|"))
    return counts[f"{STAGE}|in"] + counts.get(f"{STAGE}|created", 0) == counts.get(f"{STAGE}|out", 0) + dropped


# -- erasing ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("erase, text, expected", [
    (erase_urls, "看这个https://a.com/x?y=1，好看", "看这个，好看"),
    (erase_urls, "去 www.example.cn/p 或 t.cn/A6xyz 看", "去  或  看"),
    (erase_urls, "no link here: a.b", "no link here: a.b"),
    (erase_repost_chain, "说得对//@张三: 原文//@李四:更早", "说得对"),
    (erase_repost_chain, "路径 a//b 不是转发", "路径 a//b 不是转发"),
    (erase_reply_prefix, "回复@王五:我不同意", "我不同意"),
    (erase_reply_prefix, "我回复@王五:了", "我回复@王五:了"),
    (erase_hashtags, "#今日话题# 你好", " 你好"),
    (erase_hashtags, "C# and F# stay", "C# and F# stay"),
    (erase_emoticons, "好[哈哈][doge][DOGE] [1] [link]", "好 [1] [link]"),
    (erase_platform_text, "转发微博 网页链接", " "),
])
def test_erase_rules(erase, text, expected):
    assert erase(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("哈哈哈哈哈哈", "哈哈哈"),
    ("哈哈哈", "哈哈哈"),
    ("好的好的好的好的", "好的好的好的"),
    ("ha ha ha ha ha", "ha ha ha"),
    ("no no no no way", "no no no way"),
    ("hahahahaha", "hahaha"),
    ("啊啊啊啊啊！！！！！！", "啊啊啊！！！"),
    ("100000元", "100000元"),               # digits are numbers, not repeats
    ("        indented code", "        indented code"),
    ("我们我们我们我们走吧走吧走吧走吧", "我们我们我们走吧走吧走吧"),
])
def test_cut_repeats(cleaner, text, expected):
    assert cut(cleaner, text) == expected


def test_cut_repeats_is_a_fixed_point(cleaner):
    text = "xaaaaxaaaaxaaaaxaaaa"
    once = cut(cleaner, text)
    assert cut(cleaner, once) == once and "aaaa" not in once


# -- judging ----------------------------------------------------------------------------------------------------

def test_words_and_top_share():
    assert words_of("我爱 NLP <NAME1>!") == ["我", "爱", "NLP", "<NAME1>"]
    assert top_words_share(list("aabbccd"), 3) == pytest.approx(6 / 7)
    assert top_words_share([], 3) == 0.0


@pytest.mark.parametrize("text, chinese, expected", [
    ("", True, "empty"),
    ("好", True, "too-short"),
    ("<NAME1>", False, "too-short"),          # a placeholder is one character
    ("好" * 1001, True, "too-long"),
    (" ".join(f"word{i}" for i in range(300)), False, None),     # 2,389 characters but 300 words
    (" ".join(f"word{i}" for i in range(1001)), False, "too-long"),
    ("好的好的", True, None),                   # under the minimum length of the top-words rule
    ("哈哈哈啊啊啊哈哈哈啊啊啊", True, "top-words"),
    ("今天天气真好我们一起去公园散步吧", True, None),
    ("ok then", True, "no-chinese"),
    ("ok then", False, None),
    # Chinese sessions tolerate digits, times, prices, units, codes, names and placeholders
    ("9:00-18:30;19:00-21:30。", True, None),
    ("010-<PHONE>。", True, None),
    ("FRF80,000,000(estimated)。", True, None),
    ("Sandee Chan。", True, None),
    ("5km, 2 hrs", True, None),
    # ... but not other-language chatter, another script, or punctuation alone
    ("thank you so much", True, "no-chinese"),
    ("ありがとう", True, "no-chinese"),
    ("？？", True, "no-chinese"),
    # the web-text term lists, one hit is enough in an utterance
    ("这里有网络赌博的群吗", True, "wordlist:zh_gambling"),
])
def test_judge(cleaner, text, chinese, expected):
    assert cleaner.judge(text, chinese) == expected


def test_mostly_chinese():
    assert mostly_chinese(["你好啊", "ok"])
    assert not mostly_chinese(["hello there", "好"])
    assert not mostly_chinese(["<NAME1> 123"])


# -- sessions ---------------------------------------------------------------------------------------------------

def test_split_at_bad_middle_turn(cleaner):
    turns = ["今天去哪儿玩", "去公园吧", "x", "公园人多吗", "周末人很多"]
    session = Session(turns=turns, key="f.jsonl#3", source="f.jsonl", lang="zh", speakers=list("ABABA"))
    out = process(cleaner, session)
    assert [f.turns for f in out.fragments] == [turns[:2], turns[3:]]
    assert [f.key for f in out.fragments] == ["f.jsonl#3/fragment-1", "f.jsonl#3/fragment-2"]
    assert [f.id for f in out.fragments] == [session_id(turns[:2]), session_id(turns[3:])]
    assert [f.speakers for f in out.fragments] == [["A", "B"], ["B", "A"]]
    assert all(f.source == "f.jsonl" and f.lang == "zh" and f.meta["fragment_of"] == session.id
               for f in out.fragments)
    assert out.counts == {f"{STAGE}|in": 1, f"{STAGE}|out": 2, f"{STAGE}|created": 1,
                          f"{STAGE}|count|utt-dropped:too-short": 1}
    assert out.rejects == []


def test_single_turn_left_is_dropped(cleaner):
    session = Session(turns=["你好呀", "x", "嗯嗯"], key="f#1", source="f", lang="zh")
    out = process(cleaner, session)
    assert out.fragments == []
    assert out.counts == {f"{STAGE}|in": 1, f"{STAGE}|drop|too-few-turns": 1,
                          f"{STAGE}|count|utt-dropped:too-short": 1, f"{STAGE}|count|utt-dropped:too-few-turns": 2}
    assert out.rejects == [{"id": session.id, "key": "f#1", "url": "", "source": "f", "stage": STAGE,
                            "reason": "too-few-turns"}]


def test_no_good_utterance_names_the_rule(cleaner):
    out = process(cleaner, Session(turns=["hello there", "fine thanks"], lang="zh"))
    assert out.rejects[0]["reason"] == "no-chinese"
    assert out.counts[f"{STAGE}|drop|no-chinese"] == 1


def test_empty_after_erasing_splits(cleaner):
    turns = ["你看这个视频", "https://v.example.com/1 [哈哈]", "没看懂", "我也没看懂"]
    out = process(cleaner, Session(turns=turns, lang="zh"))
    assert [f.turns for f in out.fragments] == [["没看懂", "我也没看懂"]]
    assert out.counts[f"{STAGE}|count|utt-dropped:empty"] == 1
    assert out.counts[f"{STAGE}|count|utt-dropped:too-few-turns"] == 1
    assert out.counts[f"{STAGE}|count|utt-edited:url"] == 1
    assert out.counts[f"{STAGE}|count|utt-edited:emoticon"] == 1


def test_untouched_session_keeps_id_and_key(cleaner):
    session = Session(turns=["吃饭了吗", "还没呢"], id="given-id", key="k#0", lang="zh")
    [kept] = process(cleaner, session).fragments
    assert (kept.id, kept.key, kept.turns, kept.meta) == ("given-id", "k#0", ["吃饭了吗", "还没呢"], {})


def test_edited_session_gets_new_id_same_key(cleaner):
    out = process(cleaner, Session(turns=["哈哈哈哈哈哈你好", "打电话13812345678给我"], key="k#0", lang="zh"))
    [kept] = out.fragments
    assert kept.turns == ["哈哈哈你好", "打电话<PHONE>给我"]
    assert kept.id == session_id(kept.turns) and kept.key == "k#0"
    assert out.counts[f"{STAGE}|count|pii:phone"] == 1
    assert out.counts[f"{STAGE}|count|utt-edited:repeat"] == 1


def test_names_are_consistent_within_a_session(cleaner):
    turns = ["@小明 @小红 你们来吗", "回复@小红:来啊 @小明", "小红 说她也来", "好的我们等你"]
    out = process(cleaner, Session(turns=turns, lang="zh", speakers=["小红", "小刚", "human", "小刚"]))
    [kept] = out.fragments
    assert kept.turns == ["<NAME2> <NAME1> 你们来吗", "来啊 <NAME2>", "<NAME1> 说她也来", "好的我们等你"]
    assert kept.speakers == ["<NAME1>", "<NAME3>", "human", "<NAME3>"]
    # a fresh session numbers from <NAME1> again
    [other] = process(cleaner, Session(turns=["@小明 在吗", "在的在的"], lang="zh")).fragments
    assert other.turns[0] == "<NAME1> 在吗"


def test_role_speakers_stay():
    cleaner = SessionCleaner()
    [kept] = process(cleaner, Session(turns=["hi, how are you", "fine, I am a gpt model"],
                                     speakers=["human", "gpt"], lang="en")).fragments
    assert kept.speakers == ["human", "gpt"] and kept.turns[1] == "fine, I am a gpt model"


@pytest.mark.parametrize("turns", [None, "一句话", ["你好", 3], [None, "好的"]])
def test_bad_turns_are_a_counted_reason(cleaner, turns):
    out = process(cleaner, Session(turns=turns, id="bad", key="k#9", source="s"))
    assert out.fragments == [] and out.rejects[0]["reason"] == "bad-input"
    assert out.counts == {f"{STAGE}|in": 1, f"{STAGE}|drop|bad-input": 1}


def test_speakers_mismatch_is_counted_not_fatal(cleaner):
    out = process(cleaner, Session(turns=["你好呀", "你好"], speakers=["A"], lang="zh"))
    assert out.fragments[0].speakers is None
    assert out.counts[f"{STAGE}|count|speakers-mismatch"] == 1


def test_custom_params():
    cleaner = SessionCleaner(min_turns=3, max_chars=5)
    out = process(cleaner, Session(turns=["你好呀", "你好", "今天天气很好啊"], lang="zh"), stage="dlg")
    assert out.counts == {"dlg|in": 1, "dlg|drop|too-few-turns": 1, "dlg|count|utt-dropped:too-long": 1,
                          "dlg|count|utt-dropped:too-few-turns": 2}
    with pytest.raises(ValueError):
        SessionCleaner(min_turns=0)


def test_pickles_before_and_after_setup(cleaner):
    session = Session(turns=["@甲 哈哈哈哈哈哈", "x", "好的好的好的好的好的", "再见啦"], key="p#1", lang="zh")
    expected = process(cleaner, session)
    for original in (SessionCleaner(), cleaner):
        clone = pickle.loads(pickle.dumps(original))
        assert process(clone, session) == expected


def test_each_rule_phase_is_its_own_stage(cleaner):
    """dialogue_erase, dialogue_names, dialogue_repeats and dialogue_judge count what each did; every stage
    balances; the input session is never changed."""
    from pipelines.dialogue import RULES_STAGES

    runner = StepRunner(cleaner.steps())
    assert tuple(runner.stage_names) == RULE_STAGES == RULES_STAGES
    turns = ["看 https://a.cn/1 @小明", "哈哈哈哈哈哈好", "x", "好的呀", "明天见"]
    session = Session(turns=list(turns), key="k#1", source="s", lang="zh", id="given")
    out = runner.run(session)
    counts = events_to_counts(out.events)
    assert counts == {
        "dialogue_erase|in": 1, "dialogue_erase|out": 1, "dialogue_erase|count|utt-edited:url": 1,
        "dialogue_names|in": 1, "dialogue_names|out": 1, "dialogue_names|count|utt-edited:name": 1,
        "dialogue_repeats|in": 1, "dialogue_repeats|out": 1, "dialogue_repeats|count|utt-edited:repeat": 1,
        "dialogue_judge|in": 1, "dialogue_judge|out": 2, "dialogue_judge|created": 1,
        "dialogue_judge|count|utt-dropped:too-short": 1}
    assert [f.turns for f in out.kept] == [["看 <NAME1>", "哈哈哈好"], ["好的呀", "明天见"]]
    assert [f.meta["fragment_of"] for f in out.kept] == ["given", "given"]       # named after the input session
    assert session.turns == turns and session.id == "given" and not session.edited
    untouched = runner.run(Session(turns=["吃饭了吗", "还没呢"], id="same", key="k#2", lang="zh")).kept
    assert [(f.id, f.key) for f in untouched] == [("same", "k#2")]
    dropped = runner.run(Session(turns=["x", "y"], id="gone", key="k#3", lang="zh"))
    assert [(item.id, stage, reason) for item, stage, reason in dropped.drops] == [("gone", "dialogue_judge",
                                                                                     "too-short")]


_UTTERANCE = st.one_of(
    st.text(alphabet="哈好的你我@#[]/ ab1:", max_size=12),
    st.sampled_from(["", "x", "今天很好", "https://a.cn/1", "//@甲:转", "[哈哈]", "#话题#"]),
)


@settings(max_examples=150, deadline=None)
@given(turns=st.lists(_UTTERANCE, max_size=7), lang=st.sampled_from(["zh", "en", ""]))
def test_ledger_balances_and_fragments_pass_the_rules(turns, lang):
    cleaner = SessionCleaner()
    session = Session(turns=turns, key="h#0", lang=lang)
    out = process(cleaner, session)
    assert balanced(out.counts)
    assert len(out.rejects) == (0 if out.fragments else 1)
    assert process(cleaner, session) == out                       # deterministic
    for fragment in out.fragments:
        assert len(fragment.turns) >= cleaner.min_turns
        assert all(cleaner.judge(t, chinese=lang == "zh") is None for t in fragment.turns)
        assert all(t == t.strip() for t in fragment.turns)


def test_real_lccc_sample(corpus_samples):
    """LCCC's released data is already cleaned by these rules, so nearly every session must survive."""
    path = corpus_samples / "dialogue" / "cdial-gpt_lccc" / "toy_valid.txt"
    cleaner = SessionCleaner()
    totals: Counter[str] = Counter()
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        turns = [turn.replace(" ", "") for turn in line.split("\t")]
        totals.update(process(cleaner, Session(turns=turns, key=f"toy_valid.txt#{i}", lang="zh")).counts)
    assert totals[f"{STAGE}|in"] == 2000
    assert balanced(totals)
    assert totals[f"{STAGE}|out"] >= 0.98 * 2000


def test_a_reply_that_copies_its_context_splits_the_session(cleaner):
    turns = ["今天去看电影吗", "好啊，看哪一部", "好啊，看哪一部", "就看新上映的那部科幻片", "行，晚上七点见"]
    out = process(cleaner, Session(turns=turns, key="k", lang="zh"))
    assert [f.turns for f in out.fragments] == [turns[:2], turns[3:]]
    assert out.counts[f"{STAGE}|count|utt-dropped:copies-context"] == 1
    assert [f.meta["turn_span"] for f in out.fragments] == ["0-1", "3-4"]


def test_long_sessions_are_cut_into_windows_of_at_most_30_turns(cleaner):
    turns = [f"这是第{i}句话，我们继续聊天吧" for i in range(70)]
    session = Session(turns=turns, key="long", lang="zh")
    out = process(cleaner, session)
    assert [f.turns for f in out.fragments] == [turns[:23], turns[23:47], turns[47:]]
    assert [f.meta["turn_span"] for f in out.fragments] == ["0-22", "23-46", "47-69"]
    assert all(f.meta["fragment_of"] == session.id for f in out.fragments)
    assert out.counts[f"{STAGE}|count|windows"] == 2 and out.counts[f"{STAGE}|created"] == 2
    exactly = process(cleaner, Session(turns=turns[:30], key="thirty", lang="zh"))
    assert [f.turns for f in exactly.fragments] == [turns[:30]]
    with pytest.raises(ValueError):
        SessionCleaner(max_turns=3)


@pytest.mark.parametrize("text, expected", [
    ("太好笑了😂😂👍🏻", "太好笑了"),
    ("晚安❤️", "晚安"),
    ("今天的风景真美（分享自 @旅行日记）", "今天的风景真美"),
    ("刚到家 发自我的iPhone", "刚到家"),
    ("不错 来自微博安卓客户端", "不错"),
])
def test_emoji_and_platform_marks_are_erased(cleaner, text, expected):
    out = process(cleaner, Session(turns=[text, "是吗，那挺好的"], key="e", lang="zh"))
    assert out.fragments[0].turns[0] == expected


def test_edited_turns_follow_the_fragments(cleaner):
    turns = ["看 http://t.cn/abc 这个", "好的我看看", "x", "还有这个 http://t.cn/def", "收到了谢谢"]
    out = process(cleaner, Session(turns=turns, key="k", lang="zh"))
    assert [f.edited_turns for f in out.fragments] == [(0,), (0,)]
