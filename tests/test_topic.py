"""Topic classifier (cleaners/topic.py), `wudao domain train/eval`, and the topic in the `domain` step."""
from __future__ import annotations

import gzip
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from cleaners.document import Document, to_wudao_record
from cleaners.recipe import build_step
from cleaners.runner import StepRunner
from cleaners.topic import TOPIC_NAMES, TopicModel, evaluate, read_labeled, train_topic

REPO = Path(__file__).resolve().parents[1]
THUCNEWS = ["finance", "realty", "stocks", "education", "science", "society", "politics", "sports", "game",
            "entertainment"]


def thucnews_test(corpus_samples: Path) -> list[tuple[str, str]]:
    folder = corpus_samples / "zh_text" / "thucnews_titles"
    classes = (folder / "class.txt").read_text(encoding="utf-8").split()
    pairs = []
    for line in (folder / "test.txt").read_text(encoding="utf-8").splitlines():
        text, _, class_id = line.rpartition("\t")
        pairs.append((text, classes[int(class_id)]))
    return pairs


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row, ensure_ascii=False)) + "\n"
                            for row in rows), encoding="utf-8")
    return path


# A separable toy corpus: the words decide the label.
_SPORTS = "足球 篮球 排球 网球 比赛 进球 球队 联赛 冠军 教练 球员 赛季 主场 客场".split()
_STOCKS = "沪指 深成指 创业板 股价 上涨 下跌 涨停 跌停 成交 板块 个股 券商 基金 市值".split()
TOY = [(" ".join(words[(i * 3 + k * 5) % len(words)] for k in range(5)), label)
       for words, label in ((_SPORTS, "sports"), (_STOCKS, "stocks")) for i in range(60)]


def test_bundled_model_labels_and_chinese_names():
    model = TopicModel()
    assert set(THUCNEWS) <= set(model.labels) and set(model.labels) <= set(TOPIC_NAMES)
    assert [TOPIC_NAMES[label] for label in THUCNEWS] == ["财经", "房产", "股票", "教育", "科技", "社会", "时政",
                                                          "体育", "游戏", "娱乐"]
    assert model.predict("") == ("", 0.0) and model.predict("  \n ") == ("", 0.0)
    label, score = model.predict("\ud800\x00 国足 世预赛 主场 2比0 取胜")       # lone surrogate and NUL: no crash
    assert label == "sports" and 0.5 < score <= 1.0


def test_bundled_model_on_held_out_thucnews(corpus_samples):
    """The 10,000 THUCNews test headlines of the shared samples were never trained on (another split)."""
    result = evaluate(TopicModel(), thucnews_test(corpus_samples))
    assert result["n"] == 10_000 and set(result["per_label"]) == set(THUCNEWS)
    assert result["accuracy"] >= 0.85, result
    assert min(result["per_label"].values()) >= 0.75, result


def test_training_is_byte_for_byte_reproducible_and_learns(tmp_path):
    first, second = tmp_path / "a.bin", tmp_path / "b.bin"
    assert train_topic(TOY, str(first), seed=3) == {"sports": 60, "stocks": 60}
    train_topic(list(reversed(TOY)), str(second), seed=3)      # order does not matter: pairs are shuffled by seed
    assert first.read_bytes() != b"" and first.read_bytes() == second.read_bytes()
    result = evaluate(TopicModel(str(first)), [("篮球 比赛 进球", "sports"), ("沪指 涨停", "stocks")])
    assert result == {"accuracy": 1.0, "per_label": {"sports": 1.0, "stocks": 1.0}, "n": 2}
    pairs = [("篮球 比赛 进球", "sports"), ("沪指 涨停", "sports")]            # the second is "wrong" on purpose
    scores = [TopicModel(str(first)).predict(text)[1] for text, _ in pairs]
    cut = (min(scores) + max(scores)) / 2 if scores[0] != scores[1] else 2.0
    result = evaluate(TopicModel(str(first)), pairs, min_score=cut)
    covered = [s >= cut for s in scores]
    assert result["covered"] == sum(covered) / 2
    assert result["accuracy_covered"] == ((1.0 if covered[0] else 0.0) if any(covered) else 0.0)
    with pytest.raises(ValueError, match="at least two labels"):
        train_topic([("a b", "x")], str(tmp_path / "c.bin"))


def test_read_labeled_counts_what_it_skips(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": "足球", "label": "sports"}, "not json", [1, 2],
                                              {"text": "", "label": "x"}, {"text": "t"}, {"text": "t", "label": 3},
                                              {"text": "t", "label": "two words"}, {"text": "股市", "label": "stocks"}])
    assert read_labeled(str(path)) == ([("足球", "sports"), ("股市", "stocks")], 6)
    gz = tmp_path / "d.jsonl.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    assert read_labeled(str(gz))[0] == [("足球", "sports"), ("股市", "stocks")]


def test_cli_train_and_eval(tmp_path):
    data = write_jsonl(tmp_path / "toy.jsonl", [{"text": t, "label": y} for t, y in TOY] + ["junk"])
    model = tmp_path / "m.bin"

    def wudao(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "pipelines.cli", "domain", *args], cwd=REPO,
                              capture_output=True, text=True, timeout=300)

    trained = wudao("train", "--data", str(data), "--output", str(model))
    assert trained.returncode == 0, trained.stderr
    assert json.loads(trained.stdout)["trained"] == {"sports": 60, "stocks": 60}
    assert "skipped 1 lines" in trained.stderr
    evaluated = wudao("eval", "--data", str(data), "--model", str(model))
    assert evaluated.returncode == 0 and evaluated.stdout.count("\n") == 1
    assert json.loads(evaluated.stdout) == {"accuracy": 1.0, "per_label": {"sports": 1.0, "stocks": 1.0}, "n": 120}
    covered = wudao("eval", "--data", str(data), "--model", str(model), "--min-score", "0")
    assert {k: v for k, v in json.loads(covered.stdout).items() if k.endswith("covered")} == \
        {"covered": 1.0, "accuracy_covered": 1.0}
    bundled = wudao("eval", "--data", str(data))                       # no --model: the bundled model
    assert json.loads(bundled.stdout)["per_label"]["sports"] == 1.0
    missing = wudao("eval", "--data", str(data), "--model", str(tmp_path / "none.bin"))
    assert missing.returncode != 0 and "model not found" in missing.stderr and "Traceback" not in missing.stderr


def test_domain_step_topic_precedence_and_keep(tmp_path):
    news = Document(id="1", text="国足世预赛主场2比0战胜对手", url="https://sports.sina.com.cn/a.shtml", lang="zh")
    plain = Document(id="2", text="国足世预赛主场2比0战胜对手，球队积分升至小组第二", url="https://example.org/x",
                     lang="zh")
    russian = Document(id="3", text="Сборная выиграла матч", url="https://example.org/y", lang="ru")
    own = Document(id="4", text="沪指涨停", url="https://example.org/z", lang="zh", meta={"dataType": "问答"})
    runner = StepRunner([build_step("domain", {})])
    records = [to_wudao_record(doc) for d in (news, plain, russian, own) for doc in runner.run(d).kept]
    assert [r["dataType"] for r in records] == ["新闻", "体育", "其他", "问答"]
    assert records[0]["domain"]["topic"] == "sports" and records[0]["domain"]["source_type"] == "新闻"
    assert records[1]["domain"]["topic"] == "sports" and records[1]["domain"]["topic_score"] >= 0.5
    assert records[2]["domain"] == {"source_type": "其他"}            # not a language of the bundled model
    assert records[3]["domain"]["topic"] == "stocks"

    # keep matches dataType, source type or topic under either name
    for keep, kept_ids in ((["sports"], ["1", "2"]), (["体育"], ["1", "2"]), (["新闻"], ["1"]), (["stocks"], ["4"])):
        step_runner = StepRunner([build_step("domain", {"keep": keep})])
        outs = [step_runner.run(Document(id=d.id, text=d.text, url=d.url, lang=d.lang, meta=dict(d.meta)))
                for d in (news, plain, russian, own)]
        assert [doc.id for out in outs for doc in out.kept] == kept_ids, keep
        drops = Counter(reason for out in outs for _, _, reason in out.drops)
        assert sum(drops.values()) == 4 - len(kept_ids)

    # below min_topic_score (0.8) the topic is recorded but does not become the dataType
    vague = Document(id="5", text="今天天气不错，我们去公园散步", url="https://example.org/w", lang="zh")
    record = to_wudao_record(runner.run(vague).kept[0])
    assert record["dataType"] == "其他" and 0.5 < record["domain"]["topic_score"] < 0.8
    loose = StepRunner([build_step("domain", {"min_topic_score": 0.5})])
    assert to_wudao_record(loose.run(vague).kept[0])["dataType"] == TOPIC_NAMES[record["domain"]["topic"]]
    # English only when asked for
    english = Document(id="6", text="Shares fell on Wall Street", url="https://example.org/e", lang="en")
    assert "topic" not in to_wudao_record(runner.run(english).kept[0])["domain"]
    both = StepRunner([build_step("domain", {"topic_languages": ["zh", "en"]})])
    assert "topic" in to_wudao_record(both.run(english).kept[0])["domain"]


def test_domain_step_with_a_users_model(tmp_path):
    path = tmp_path / "mine.bin"
    train_topic([(t, "ball" if y == "sports" else "market") for t, y in TOY], str(path), seed=1)
    runner = StepRunner([build_step("domain", {"model_path": str(path), "topic_languages": []})])
    doc = runner.run(Document(id="1", text="篮球 比赛", url="", lang="")).kept[0]
    assert doc.meta["domain"]["topic"] == "ball" and to_wudao_record(doc)["dataType"] == "ball"
    with pytest.raises(FileNotFoundError, match="model not found"):
        StepRunner([build_step("domain", {"model_path": str(tmp_path / "none.bin")})]).run(
            Document(id="2", text="篮球", url="", lang="zh"))
    for bad in ({"min_topic_score": 2}, {"topic_languages": "zh"}):
        with pytest.raises(ValueError):
            build_step("domain", bad)


@pytest.mark.slow
def test_script_rebuilds_the_bundled_model_byte_for_byte(tmp_path, capsys):
    """`scripts/train_topic.py` from the data in the repository gives the committed bytes (about 20 s)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("train_topic", REPO / "scripts" / "train_topic.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    output = tmp_path / "topic.bin"
    assert script.main(["--output", str(output), "--samples", str(tmp_path / "no-samples")]) == 0
    assert output.read_bytes() == (REPO / "cleaners" / "data" / "topic" / "topic.bin").read_bytes()
    report = json.loads(capsys.readouterr().out)
    assert set(report["held_out"]) == {"sib200_zho_hans", "sib200_eng", "csl_titles"}   # THUCNews's is in ../shared
    assert report["trained"]["finance"] == 3311 and len(report["trained"]) == 16
