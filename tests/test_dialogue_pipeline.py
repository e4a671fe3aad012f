"""End-to-end runs of the dialogue Beam pipeline: the embedded sample (exact outcomes) and the real samples."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from pipelines.cli import main
from pipelines.run import run_dialogue, sample_inputs
from pipelines.ledger import ledger_reason


def read_rows(folder: Path) -> list[dict]:
    rows = []
    for path in sorted(folder.glob("part-*.jsonl.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            rows.extend(json.loads(line) for line in fh if line.strip())
    return rows


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("dialogue")
    stats = run_dialogue(sample_inputs("dialogue_sample"), str(out), None, [])
    return stats, read_rows(out / "corpus"), read_rows(out / "rejects")


def test_ledger_balances_at_every_stage(sample_run):
    stats, corpus, rejects = sample_run
    for stage in stats["stages"]:
        assert stage["in"] + stage.get("created", 0) == stage["out"] + stage["dropped"], stage
    totals = stats["totals"]
    assert totals["records_in"] + totals.get("created", 0) == totals["kept"] + totals["dropped"]
    assert len(corpus) == totals["kept"]
    by_stage = {s["stage"]: s["dropped_by_reason"] for s in stats["stages"]}
    for row in rejects:
        assert ledger_reason(row["reason"]) in by_stage[row["stage"]]


def test_planted_cases(sample_run):
    stats, corpus, rejects = sample_run
    sessions = [r["turns"] for r in corpus]
    text = "\n".join("\n".join(t) for t in sessions)
    for record in corpus:
        assert record["dataType"] == "dialogue" and record["lang"] in ("zh", "en") and len(record["turns"]) >= 2
    # erased noise and personal data
    assert "http://t.cn" not in text and "#周末去哪儿#" not in text and "[哈哈]" not in text
    assert "13812345678" not in text and "384726159" not in text
    assert ["有问题可以直接打我电话<PHONE>或者加QQ：<QQ>", "好的，我晚上联系你。", "嗯，八点以后都有空。"] in sessions
    assert ["<NAME1> 你的快递到了，放在门卫室了。", "谢谢提醒，我下班就去拿。", "不客气，记得带上取件码。"] in sessions
    assert ["周末去爬山吗？听说山顶的枫叶红了。", "好啊好啊好啊，几点出发？", "早上七点在地铁站集合吧。"] in sessions
    # a too-short turn splits its session; the two-turn fragment after it is kept
    assert ["哪一题不会？我可以帮你看看。", "第三题，关于函数的那道。"] in sessions
    # the advertisement reply under 7 contexts is gone everywhere: the web-text ad list catches it first
    assert "加微信领取优惠券" not in text
    judge = next(s for s in stats["stages"] if s["stage"] == "dialogue_judge")
    assert judge["counts"]["utt-dropped:wordlist:zh_ads"] == 7
    # the thread: two root-to-leaf paths of the branching thread, the orphan reply, a counted cycle
    assert ["求推荐适合新手的相机，预算三千左右。", "入门微单就够了，二手的性价比更高。",
            "二手的会不会有问题？怎么挑比较好？", "看快门次数和外观，最好当面验机。"] in sessions
    assert ["求推荐适合新手的相机，预算三千左右。", "我去年买的那款挺好用的，推荐给你。",
            "能说一下具体型号吗？谢谢！"] in sessions
    assert stats_reason(stats, "threads", "cycle") == 2
    # the duplicated English session is kept once; the bad JSON line is counted
    assert sum(s[0] == "Are you coming to the book club on Thursday?" for s in sessions) == 1
    assert stats_reason(stats, "exact_dedup", "exact-duplicate-of") == 1
    assert stats_reason(stats, "read", "bad-json") == 1
    # LCCC's space-separated characters are joined back
    assert ["大学老师还改作业？", "对啊", "可怕"] in sessions
    # every record is scored, the scores are bucketed for the report, and input ids survive (pieces name their session)
    assert all(0.0 <= r["scores"]["dialogue_quality"] <= 1.0 for r in corpus)
    hist = stats["histograms"]["write"]["score:dialogue_quality"]
    assert sum(hist.values()) == len(corpus)
    assert any(r.get("meta", {}).get("source_id", "").startswith("chatalpaca") for r in corpus)
    pieces = [r for r in corpus if "fragment_of" in r.get("meta", {})]
    assert pieces and all(len(r["turns"]) == int(r["meta"]["turn_span"].split("-")[1])
                          - int(r["meta"]["turn_span"].split("-")[0]) + 1 for r in pieces)


def stats_reason(stats: dict, stage: str, reason: str) -> int:
    entry = next((s for s in stats["stages"] if s["stage"] == stage), None)
    return entry["dropped_by_reason"].get(reason, 0) if entry else 0


@pytest.mark.slow
def test_real_dialogue_samples_all_formats(corpus_samples, tmp_path, capsys):
    folder = corpus_samples / "dialogue"
    inputs = [str(p) for p in sorted(folder.rglob("*")) if p.is_file() and p.suffix != ".md"]
    args = ["dialogue", "--output", str(tmp_path / "out")]
    for path in inputs:
        args += ["--input", path]
    assert main(args) == 0
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    read = next(s for s in stats["stages"] if s["stage"] == "read")
    assert read["in"] == read["out"] == 1400 + 10000 + 2000 + 100 + 150 + 150   # every format read, nothing lost
    totals = stats["totals"]
    assert totals["records_in"] + totals.get("created", 0) == totals["kept"] + totals["dropped"]
    assert totals["kept"] >= 0.9 * read["out"]          # real chit-chat is mostly clean
    print(capsys.readouterr().out)                       # the kept / dropped report, in the test log


@pytest.mark.slow
def test_clean_knowledge_grounded_dialogue_stays_whole(tmp_path):
    """KdConv travel (held out in bench/data/dialogue): repeated factual answers ("1小时-2小时。") and turns
    without Chinese characters ("9:00-18:30。") are no noise; at least 97% of the sessions come out in one piece."""
    path = Path(__file__).resolve().parents[1] / "bench/data/dialogue/kdconv_travel_dev.json.gz"
    stats = run_dialogue([str(path)], str(tmp_path), None, [])
    corpus = read_rows(tmp_path / "corpus")
    sessions_in = next(s for s in stats["stages"] if s["stage"] == "read")["out"]
    whole = [r for r in corpus if "fragment_of" not in r.get("meta", {})]
    assert sessions_in == 150 and len(whole) >= 0.97 * sessions_in
    text = "\n".join(turn for r in corpus for turn in r["turns"])
    assert text.count("1小时 - 2小时。") >= 5 and "9:00-18:30" in text
    assert all(r["scores"]["dialogue_quality"] > 0.5 for r in corpus)
