"""Line/paragraph dedup: the pure helpers (`cleaners.lines`) and the Beam stage (`pipelines.dedup.lines`)."""
from __future__ import annotations

import glob
import json
import random
from collections import Counter, defaultdict

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.util import assert_that, equal_to
from hypothesis import given, settings
from hypothesis import strategies as st

from cleaners.document import stable_hash
from cleaners.filters.text_stats import count_han
from cleaners.lines import (countable_hash, distinct_line_hashes, line_hash, normalize_line, remove_lines,
                            split_lines)
from pipelines.ledger import dropped_counts, kept_counts
from pipelines.dedup.lines import LineDedup

STAGE = "line_dedup"


# ---------------------------------------------------------------------------------------------- normalization

@pytest.mark.parametrize("a, b", [
    ("版权所有 © 2023 新华网", "版权所有©2024 新华网"),            # symbol, year and spacing differ
    ("版权所有 © 2023 新华网", "  版权所有（C）2000-2023　新华网。"),  # full-width brackets/space, range of years
    ("Copyright © 2023 Example Inc. All rights reserved.", "copyright 2024  EXAMPLE INC — all rights reserved"),
    ("We use cookies.", "WE USE COOKIES!!"),
    ("ＡＢＣ新闻", "abc 新闻"),                                     # full-width Latin (NFKC) and CJK spacing
    ("第9页 共10页", "第 12 页，共 130 页"),                        # page counters
    ("分享到：微信 | 微博 | QQ空间", "分享到 微信 微博 qq 空间"),
    ("点击\u200b这里\ufeff订阅", "点击这里订阅"),                   # zero-width space, BOM
    ("1. Home", "Home"),                                           # edge digits and punctuation
    ("\tcookie\u00a0policy ", "Cookie Policy"),                     # tab, no-break space
])
def test_variants_of_one_line_normalize_the_same(a, b):
    assert normalize_line(a) == normalize_line(b)
    assert countable_hash(a) == countable_hash(b) is not None


@pytest.mark.parametrize("a, b", [
    ("版权所有 新华网", "版权所有 人民网"),
    ("we use cookies", "we use biscuits"),
    ("cookie policy", "cookiepolicy"),          # Latin word boundaries are kept
    ("二〇二三年", "二〇二四年"),                 # Chinese numerals are words, not digits
    ("café", "cafe"),                           # accents kept (see cleaners.lines)
])
def test_different_lines_stay_different(a, b):
    assert normalize_line(a) != normalize_line(b)


def test_exact_normal_forms():
    assert normalize_line("版权所有 © 2023 新华网") == "版权所有0新华网"
    assert normalize_line("  We use Cookies, OK?  ") == "we use cookies ok"
    assert normalize_line("Version 2.0 of 我的 App") == "version 0 of我的app"
    assert normalize_line("Copyright (C) 2000-2023, Example") == "copyright 0 example"
    assert normalize_line("한국어 문장") == "한국어 문장"        # Hangul keeps its word spaces


@pytest.mark.parametrize("line", ["", "   ", "2023", "——— * ———", "12:30 | 2023-05-01", "\u200b\ufeff"])
def test_lines_with_nothing_to_compare_are_never_counted(line):
    assert normalize_line(line) == ""
    assert countable_hash(line) is None


def test_min_line_chars_counts_normalized_length():
    assert countable_hash("关于我们", min_line_chars=5) is None          # 4 characters
    assert countable_hash("关于我们 | 联系我们", min_line_chars=5) is not None
    assert countable_hash("  A. B. C.  ", min_line_chars=6) is None      # "a b c" is 5 long


def test_hash_is_eight_stable_bytes():
    digest = line_hash("版权所有0新华网")
    assert isinstance(digest, bytes) and len(digest) == 8
    assert digest == line_hash("版权所有0新华网") != line_hash("版权所有0人民网")
    assert digest.hex() == "8f9c4969e29aee8a"     # pinned: a rerun (or another machine) must give the same keys


def test_distinct_hashes_count_a_repeated_line_once():
    content = "广告\n正文第一段。\n广告\n\n正文第一段。"
    assert distinct_line_hashes(content) == sorted({countable_hash("广告"), countable_hash("正文第一段。")})


def test_remove_lines_keeps_every_other_line_exactly():
    content = "  标题  \n\n点击这里订阅\n正文，第一段。\n点击 这里 订阅！\n\tIndented line\n"
    out, removed = remove_lines(content, {countable_hash("点击这里订阅")})
    assert (out, removed) == ("  标题  \n\n正文，第一段。\n\tIndented line\n", 2)
    assert remove_lines(content, set()) == (content, 0)


CJK = st.characters(min_codepoint=0x4E00, max_codepoint=0x4E80)
LINE_CHARS = st.one_of(CJK, st.sampled_from("abcXYZ019 ,.!?，。！？©|-—\t\u3000"), st.characters())
LINES = st.text(LINE_CHARS, max_size=30)


@settings(max_examples=300, deadline=None)
@given(LINES)
def test_normalization_is_idempotent_and_has_no_edge_or_double_spaces(line):
    once = normalize_line(line)
    assert normalize_line(once) == once
    assert once == once.strip(" 0") and "  " not in once and "\n" not in once


def join_tokens(tokens: list[tuple[str, int]]) -> str:
    """Tokens joined with the given number of spaces before each, except between two Latin words (one space)."""
    text = tokens[0][0]
    for (prev, _), (token, spaces) in zip(tokens, tokens[1:]):
        latin_pair = prev.isascii() and token.isascii()
        text += (" " if latin_pair else " " * spaces) + token
    return text


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.one_of(CJK, st.sampled_from(["ab", "Cd", "e"])), st.integers(0, 2)), min_size=1,
                max_size=8))
def test_spaces_next_to_cjk_do_not_matter(tokens):
    without = normalize_line(join_tokens([(token, 0) for token, _ in tokens]))
    assert normalize_line(join_tokens(tokens)) == without
    assert " " not in without or any(a.isascii() and b.isascii() for (a, _), (b, _) in zip(tokens, tokens[1:]))


@settings(max_examples=200, deadline=None)
@given(st.lists(LINES, max_size=8), st.sets(st.integers(0, 7), max_size=4), st.integers(0, 4))
def test_remove_lines_removes_exactly_the_lines_with_those_hashes(lines, picked, min_chars):
    content = "\n".join(lines)
    doomed = {countable_hash(lines[i], min_chars) for i in picked if i < len(lines)} - {None}
    out, removed = remove_lines(content, doomed, min_chars)
    expected = [line for line in split_lines(content) if countable_hash(line, min_chars) not in doomed]
    assert removed == len(split_lines(content)) - len(expected)
    assert (out == "\n".join(expected)) if removed else (out == content)


# ---------------------------------------------------------------------------------------------- the Beam stage

ZH_FOOTERS = ["版权所有 © 2023 新华网", "版权所有©2024 新华网", "版权所有 ©2022 新华网 ", "版权所有（C）2021　新华网"]
EN_COOKIES = ["We use cookies to improve your experience. Accept all?",
              "We use Cookies to improve your experience.  Accept all?",
              "WE USE COOKIES TO IMPROVE YOUR EXPERIENCE — ACCEPT ALL?"]
SHARED_BY_TWO = "这是两篇文章共有的一句话，它不是模板。"
ZH_BODIES = [
    "今年春天，城市图书馆在经过两年的修缮之后重新开放，新的阅览室宽敞明亮，每天都吸引许多学生和附近的居民前来读书。",
    "山区的小学新建了一座操场，孩子们第一次在塑胶跑道上奔跑，老师说这是全村人共同努力的结果，大家都非常高兴。",
    "气象部门预计本周末将有一次明显的降温过程，提醒市民及时增添衣物，出行时注意交通安全，农户要做好防寒准备。",
    "这家老字号面馆已经经营了六十多年，每天清晨门口都排起长队，店主坚持用传统的方法熬制骨汤，味道始终如一。",
]
EN_BODIES = [
    "The city library opened its new reading room on Monday after two years of careful work.",
    "Visitors found long oak tables, quiet corners and large windows that let in the morning light.",
    "A small cafe near the entrance sells tea and sandwiches, but food is not allowed near the shelves.",
]
SHORT_ZH = "今天天气很好，我们去公园散步吧。"     # 15 Chinese characters: below wudao_zh's 50


def record(doc_id: str, content: str, lang: str) -> dict:
    return {"id": doc_id, "uniqueKey": stable_hash(content), "title": f"title {doc_id}", "content": content,
            "url": f"https://example.com/{doc_id}", "date": "2023-05-01T00:00:00Z", "lang": lang,
            "source": "crawl.warc.gz", "scores": {"lang": 0.99}}


def corpus() -> list[dict]:
    docs = [
        record("z0", f"{ZH_BODIES[0]}\n{SHARED_BY_TWO}\n{ZH_FOOTERS[0]}", "zh"),
        record("z1", f"{ZH_FOOTERS[1]}\n{ZH_BODIES[1]}\n\n{SHARED_BY_TWO}", "zh"),
        record("z2", f"{ZH_BODIES[2]}\n{ZH_FOOTERS[2]}\n{ZH_BODIES[3]}", "zh"),
        record("z3", f"{SHORT_ZH}\n{ZH_FOOTERS[3]}", "zh"),                     # too little Chinese left
        record("e0", f"{EN_COOKIES[0]}\n{EN_BODIES[0]}", "en"),
        record("e1", f"{EN_BODIES[1]}\n{EN_COOKIES[1]}\n{EN_BODIES[2]}", "en"),
        record("e2", f"  {EN_COOKIES[2]}\n\n{ZH_FOOTERS[0]}", "en"),             # nothing left: empty
        record("u0", f"{ZH_BODIES[3]}\n{EN_BODIES[2]}", "zh"),                  # no boilerplate: untouched
    ]
    return docs


def changed(rec: dict, content: str) -> dict:
    return {**rec, "content": content, "uniqueKey": stable_hash(content)}


def canon(rows) -> list[str]:
    return sorted(json.dumps(r, sort_keys=True, ensure_ascii=False) for r in rows)


def to_json(pcoll, label):
    return pcoll | label >> beam.Map(lambda r: json.dumps(r, sort_keys=True, ensure_ascii=False))


def check_stage(records, kept, rejects, counts, **params):
    with beam.Pipeline(runner="FnApiRunner") as p:
        out = p | beam.Create(records) | LineDedup(**params)
        assert_that(to_json(out.kept, "K"), equal_to(canon(kept)), label="kept")
        assert_that(to_json(out.rejects, "R"), equal_to(canon(rejects)), label="rejects")
        assert_that(to_json(out.counts, "C"), equal_to(canon(counts)), label="counts")


def reject(rec: dict, reason: str) -> dict:
    return {"id": rec["id"], "key": "", "url": rec["url"], "source": rec["source"], "stage": STAGE, "reason": reason}


def removed_count(n: int) -> dict:
    return {**kept_counts(STAGE), f"{STAGE}|count|lines-removed": n}


def test_footer_and_cookie_lines_are_removed_and_other_lines_kept_in_order():
    z0, z1, z2, z3, e0, e1, e2, u0 = corpus()
    kept = [
        changed(z0, f"{ZH_BODIES[0]}\n{SHARED_BY_TWO}"),          # the line shared by two docs survives
        changed(z1, f"{ZH_BODIES[1]}\n\n{SHARED_BY_TWO}"),        # the empty line stays where it was
        changed(z2, f"{ZH_BODIES[2]}\n{ZH_BODIES[3]}"),
        changed(z3, SHORT_ZH),                                    # no recheck steps: kept
        changed(e0, EN_BODIES[0]),
        changed(e1, f"{EN_BODIES[1]}\n{EN_BODIES[2]}"),
        u0,                                                       # unchanged, uniqueKey included
    ]
    counts = [removed_count(1)] * 6 + [kept_counts(STAGE), dropped_counts(STAGE, "line-dedup:empty")]
    check_stage(corpus(), kept, [reject(e2, "line-dedup:empty")], counts, min_docs=3)


def test_recheck_drops_a_document_left_with_too_little_chinese():
    z0, z1, z2, z3, e0, e1, e2, u0 = corpus()
    kept = [changed(z0, f"{ZH_BODIES[0]}\n{SHARED_BY_TWO}"), changed(z1, f"{ZH_BODIES[1]}\n\n{SHARED_BY_TWO}"),
            changed(z2, f"{ZH_BODIES[2]}\n{ZH_BODIES[3]}"), changed(e0, EN_BODIES[0]),   # wudao_zh skips English
            changed(e1, f"{EN_BODIES[1]}\n{EN_BODIES[2]}"), u0]
    assert count_han(SHORT_ZH) < 50 <= min(count_han(r["content"]) for r in kept[:3])   # the changed zh docs
    rejects = [reject(z3, "line-dedup:zh-too-few-chinese-chars"), reject(e2, "line-dedup:empty")]
    counts = [removed_count(1)] * 5 + [kept_counts(STAGE), dropped_counts(STAGE, "line-dedup:empty"),
                                       dropped_counts(STAGE, "line-dedup:zh-too-few-chinese-chars")]
    check_stage(corpus(), kept, rejects, counts, min_docs=3, recheck_steps=["wudao_zh"])


def test_below_min_docs_nothing_changes_and_a_line_repeated_in_one_doc_counts_once():
    docs = [record("a", "同一行\n同一行\n同一行\n正文甲", "zh"), record("b", "同一行\n正文乙", "zh"),
            record("c", "正文丙", "zh")]
    check_stage(docs, docs, [], [kept_counts(STAGE)] * 3, min_docs=3)
    more = docs + [record("d", "正文丁\n同 一 行", "zh")]
    a, b, c, d = more
    kept = [changed(a, "正文甲"), changed(b, "正文乙"), c, changed(d, "正文丁")]
    check_stage(more, kept, [], [removed_count(3), removed_count(1), kept_counts(STAGE), removed_count(1)],
                min_docs=3)


def test_cjk_lines_without_spaces_and_min_line_chars():
    bodies = ["第一篇正文内容", "第二篇正文内容", "第三篇正文内容"]
    docs = [record(f"d{i}", f"首页\n新闻中心关于我们联系我们\n{body}", "zh") for i, body in enumerate(bodies)]
    # min_line_chars=5: the 2-character "首页" is never counted; the 12-character navigation line is removed.
    kept = [changed(d, f"首页\n{body}") for d, body in zip(docs, bodies)]
    check_stage(docs, kept, [], [removed_count(1)] * 3, min_docs=3, min_line_chars=5)


def test_bad_records_are_dropped_and_counted():
    good = record("g", "正文", "zh")
    bad = [{"content": "no id"}, {"id": "x", "content": None, "url": "u"}, {"id": "", "content": "empty id"}]
    rejects = [{"id": r.get("id", ""), "key": "", "url": r.get("url", ""), "source": "", "stage": STAGE,
                "reason": "line-dedup:bad-record"} for r in bad]
    counts = [kept_counts(STAGE)] + [dropped_counts(STAGE, "line-dedup:bad-record")] * 3
    check_stage([good] + bad, [good], rejects, counts, min_docs=3)


@pytest.mark.parametrize("params", [{"min_docs": 1}, {"min_docs": 2.5}, {"min_line_chars": -1},
                                    {"recheck_steps": ["no_such_step"]}, {"recheck_steps": "wudao_zh"},
                                    {"recheck_steps": [{"wudao_zh": {"no_such_param": 1}}]}])
def test_bad_parameters_fail_before_anything_runs(params):
    with pytest.raises(ValueError):
        LineDedup(**params)


# ------------------------------------------------------------------ a random corpus against a one-machine reference

def random_corpus(seed: int, n_docs: int = 150) -> list[dict]:
    rng = random.Random(seed)
    names = ["甲", "乙", "丙", "丁", "戊", "己"]
    boiler = [f"模板行{name}：版权所有 {2000 + i}" for i, name in enumerate(names)]
    boiler += [f"Share this on {site}!" for site in ("weibo", "wechat", "qzone", "douban", "zhihu", "bilibili")]
    docs = []
    for i in range(n_docs):
        lines = [f"正文{chr(0x4E00 + i)}{chr(0x5000 + j)}，独一无二的句子。" for j in range(rng.randint(0, 4))]
        lines += [rng.choice(boiler) for _ in range(rng.randint(0, 5))]
        lines += [""] * rng.randint(0, 1)
        rng.shuffle(lines)
        docs.append(record(f"{i:04d}", "\n".join(lines), rng.choice(["zh", "en"])))
    return docs


def reference(docs: list[dict], min_docs: int):
    """The stage's result computed on one machine: count documents per line hash, cut the frequent ones."""
    per_hash = Counter(h for d in docs for h in distinct_line_hashes(d["content"]))
    boiler = {h for h, n in per_hash.items() if n >= min_docs}
    kept, rejects, counts = [], [], []
    for d in docs:
        content, removed = remove_lines(d["content"], boiler)
        if not removed:
            kept.append(d)
            counts.append(kept_counts(STAGE))
        elif not content.strip():
            rejects.append(reject(d, "line-dedup:empty"))
            counts.append(dropped_counts(STAGE, "line-dedup:empty"))
        else:
            kept.append(changed(d, content))
            counts.append(removed_count(removed))
    return kept, rejects, counts


def test_random_corpus_matches_the_single_machine_reference_and_the_ledger_balances():
    docs = random_corpus(seed=7)
    kept, rejects, counts = reference(docs, min_docs=20)
    assert kept and rejects and any("lines-removed" in "".join(c) for c in counts)   # the case is not trivial
    assert len(counts) == len(docs) == len(kept) + len(rejects)                  # one count per record
    totals = Counter()
    for c in counts:
        totals.update(c)
    assert totals[f"{STAGE}|in"] == len(docs) == totals[f"{STAGE}|out"] + totals[f"{STAGE}|drop|line-dedup:empty"]
    check_stage(docs, kept, rejects, counts, min_docs=20)


# ---------------------------------------------------------------------------------- reruns and multi_processing

def run_to_files(docs, folder, *beam_args) -> dict[str, list[str]]:
    with beam.Pipeline(runner="FnApiRunner", options=PipelineOptions(list(beam_args))) as p:
        out = p | beam.Create(docs) | LineDedup(min_docs=20, recheck_steps=["wudao_zh"])
        for name in ("kept", "rejects", "counts"):
            _ = to_json(getattr(out, name), f"Json{name}") | f"Write{name}" >> beam.io.WriteToText(
                str(folder / name / "part"))
    result: dict[str, list[str]] = defaultdict(list)
    for name in ("kept", "rejects", "counts"):
        for path in glob.glob(str(folder / name / "part*")):
            with open(path, encoding="utf-8") as fh:
                result[name].extend(fh.read().splitlines())
        result[name].sort()
    return dict(result)


def test_rerun_gives_identical_output(tmp_path):
    docs = random_corpus(seed=11)
    first = run_to_files(docs, tmp_path / "one")
    second = run_to_files(list(reversed(docs)), tmp_path / "two")     # input order does not matter either
    assert first == second
    assert len(first["counts"]) == len(docs) == len(first["kept"]) + len(first["rejects"])


@pytest.mark.slow
def test_multi_processing_gives_the_same_output(tmp_path):
    docs = random_corpus(seed=11)
    in_process = run_to_files(docs, tmp_path / "in")
    multi = run_to_files(docs, tmp_path / "mp", "--direct_running_mode=multi_processing", "--direct_num_workers=2")
    assert multi == in_process


def test_recheck_reuses_the_recipe_steps_as_configured():
    from pipelines.dedup.stages import apply_dedup, recheck_entries

    configured = [{"wudao_zh": {"min_doc_chinese_chars": 200}}, {"gopher_quality": {"as": "gq", "languages": ["en"]}}]
    config = {"steps": ["normalize", *configured],
              "dedup": {"exact": {"enabled": False}, "url": {"enabled": False}, "minhash": {"enabled": False},
                        "lines": {"min_docs": 3, "recheck": ["wudao_zh"]}}}
    assert recheck_entries(["wudao_zh", "gq", "fineweb", {"c4": {}}], config) == [*configured, "fineweb", {"c4": {}}]
    z0, z1, z2, z3, e0, e1, e2, u0 = corpus()
    kept = [changed(e0, EN_BODIES[0]), changed(e1, f"{EN_BODIES[1]}\n{EN_BODIES[2]}"), u0]
    # at the step's default (50 Chinese characters) z0, z1 and z2 pass; the recipe asks for 200
    reasons = ["line-dedup:zh-too-few-chinese-chars"] * 4 + ["line-dedup:empty"]
    rejects = [reject(r, reason) for r, reason in zip((z0, z1, z2, z3, e2), reasons)]
    with beam.Pipeline(runner="FnApiRunner") as p:
        out, rejected, _ = apply_dedup(p | beam.Create(corpus()), config)
        assert_that(to_json(out, "K"), equal_to(canon(kept)), label="kept")
        assert_that(to_json(rejected[0], "R"), equal_to(canon(rejects)), label="rejects")
