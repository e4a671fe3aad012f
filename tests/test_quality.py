"""Quality classifier: reading training files, training on real text vs generated spam, the `quality` step."""
from __future__ import annotations

import gzip
import json
import pickle
import random
from pathlib import Path

import numpy as np
import pytest

from cleaners.document import Document
from cleaners.fasttext_text import load_model
from cleaners.language import BUNDLED_MODEL
from cleaners.quality import QualityClassifier, hq_probabilities, read_texts, train_quality

_PRODUCTS = ("viagra cialis replica watches rolex handbags sneakers jordans iphone casino poker slots bitcoin "
             "forex loans insurance pills diet supplements followers likes crypto nft ringtones wallpapers "
             "movies mp3 torrent crack keygen serial essays coupons").split()
_CITIES = ("london paris berlin madrid rome tokyo dubai miami chicago houston boston seattle denver austin dallas "
           "phoenix toronto sydney melbourne delhi mumbai lagos cairo").split()
_NAV = ("Home About Contact Login Register Cart Checkout Privacy Terms Sitemap FAQ Blog Shop Deals Account "
        "Wishlist Help Careers Press").split()
_ZH_SPAM = "首页 新闻 联系我们 登录 注册 点击这里 免费下载 优惠 特价 包邮 加微信 代理 招商 返利 秒杀 抢购 广告".split()


def _spam(rng: random.Random) -> str:
    product, city = rng.choice(_PRODUCTS), rng.choice(_CITIES)
    kind = rng.randrange(4)
    if kind == 0:
        return " | ".join(rng.sample(_NAV, rng.randint(6, 12))) + f" | {product} © {rng.randint(1999, 2024)}"
    if kind == 1:
        return (f"BUY CHEAP {product.upper()} ONLINE!!! Best {product} price ${rng.randint(5, 999)} "
                f"click here http://{product}-{city}.biz free shipping {rng.randint(10, 90)}% OFF!!! "
                f"order {rng.choice(_PRODUCTS)} now")
    if kind == 2:
        words = [rng.choice((product, f"cheap {product}", f"best {product}", f"{product} {city}", city))
                 for _ in range(rng.randint(10, 25))]
        return " ".join(words)
    return " ".join(rng.choices(_ZH_SPAM, k=rng.randint(8, 16))) + f" {rng.randint(10, 999)}元 {product}"


def _write_jsonl(path: Path, texts, field="text"):
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt", encoding="utf-8") as fh:
        for t in texts:
            fh.write(json.dumps({field: t}, ensure_ascii=False) + "\n")


def _positives(samples: Path) -> list[str]:
    texts = [line for line in (samples / "en_text" / "flagai_gpt2_title_generation_debug.txt")
             .read_text("utf-8").splitlines() if line.strip()]
    records = json.loads((samples / "zh_text" / "wudao_format" / "flagai_glm_pretrain_jinrong_data.json")
                         .read_text("utf-8"))["RECORDS"]
    texts += [r["content"] for r in records]
    texts += read_texts([samples / "zh_text" / "wudao_format" / "flagai_indexed_dataset_demo.jsonl"])[0]
    return texts


@pytest.fixture(scope="module")
def trained(corpus_samples, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("quality")
    positives = _positives(corpus_samples)
    rng = random.Random(3)
    negatives = [_spam(rng) for _ in range(len(positives))]
    _write_jsonl(tmp / "pos.jsonl", positives[: len(positives) // 2])
    _write_jsonl(tmp / "pos2.jsonl.gz", positives[len(positives) // 2:], field="content")
    _write_jsonl(tmp / "neg.jsonl.gz", negatives)
    out = tmp / "models" / "quality.bin"
    metrics = train_quality([str(tmp / "pos.jsonl"), str(tmp / "pos2.jsonl.gz")], [str(tmp / "neg.jsonl.gz")],
                            str(out), epoch=10, dim=32)
    return out, metrics, len(positives)


def test_train_quality_writes_model_and_metrics(trained):
    out, metrics, n_pos = trained
    assert out.is_file() and not Path(str(out) + ".partial").exists()
    assert sorted(load_model(str(out)).get_labels()) == ["__label__hq", "__label__lq"]
    assert metrics["n_positive"] == n_pos and metrics["n_negative"] == n_pos
    assert metrics["n_train"] + metrics["n_holdout"] == 2 * n_pos
    assert 0 < metrics["n_holdout"] < metrics["n_train"]
    assert metrics["auc"] >= 0.95 and metrics["accuracy"] >= 0.9


def test_model_ranks_unseen_positives_above_unseen_spam(trained, corpus_samples):
    out, _, _ = trained
    model = load_model(str(out))
    unseen_good = read_texts([corpus_samples / "en_text" / "data-juicer_redpajama-c4-refined.jsonl"])[0]
    unseen_good += ["国家统计局今天发布数据显示，今年前三季度全国居民人均可支配收入同比增长百分之六，"
                    "消费支出稳步恢复，服务性消费增长较快。"]
    rng = random.Random(99)
    unseen_spam = [_spam(rng) for _ in range(len(unseen_good))]
    good = hq_probabilities(model, unseen_good)
    bad = hq_probabilities(model, unseen_spam)
    assert good.mean() > bad.mean() + 0.5
    assert np.median(good) > 0.5 > np.median(bad)


def test_training_is_deterministic(trained, tmp_path):
    out, metrics, _ = trained
    folder = out.parent.parent
    again = train_quality([str(folder / "pos.jsonl"), str(folder / "pos2.jsonl.gz")],
                          [str(folder / "neg.jsonl.gz")], str(tmp_path / "q.bin"), epoch=10, dim=32)
    assert (tmp_path / "q.bin").read_bytes() == out.read_bytes()
    assert again["auc"] == metrics["auc"]


def test_read_texts_counts_bad_records(tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join([
        json.dumps({"text": "first document"}),
        json.dumps({"content": "second document"}),
        "{not json",
        json.dumps(["a", "list"]),
        json.dumps({"text": "   "}),
        json.dumps({"title": "no text field"}),
        "",
        json.dumps({"text": "third", "content": "ignored"}),
    ]) + "\n", encoding="utf-8")
    texts, skipped = read_texts([str(path)])
    assert texts == ["first document", "second document", "third"]
    assert skipped == 4


def test_train_quality_bad_input(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("", encoding="utf-8")
    good = tmp_path / "good.jsonl"
    _write_jsonl(good, [f"document number {i} about topic {i * 7}" for i in range(50)])
    with pytest.raises(ValueError, match="no negative"):
        train_quality([str(good)], [str(empty)], str(tmp_path / "m.bin"))
    with pytest.raises(FileNotFoundError):
        train_quality([str(tmp_path / "missing.jsonl")], [str(good)], str(tmp_path / "m.bin"))
    with pytest.raises(ValueError, match="holdout_fraction"):
        train_quality([str(good)], [str(good)], str(tmp_path / "m.bin"), holdout_fraction=1.0)


# --------------------------------------------------------------------------------------------- step


def test_step_without_model_is_a_no_op():
    step = QualityClassifier()
    step.setup()
    doc = Document(id="x", text="BUY CHEAP PILLS!!! click here")
    assert step.apply(doc) is doc
    assert doc.scores == {}


def test_step_scores_and_drops(trained):
    out, _, _ = trained
    step = QualityClassifier(model_path=str(out), field="fasttext_hq")
    step.setup()
    good = Document(id="g", text="The river rises in the northern hills and flows south for about two hundred "
                                 "kilometres before it reaches the sea near the old harbour town, where the "
                                 "first settlers built a bridge in the eighteenth century.")
    rng = random.Random(5)
    bad = Document(id="b", text=_spam(rng) + " " + _spam(rng))
    assert step.apply(good) is good and good.scores["fasttext_hq"] >= 0.5
    assert step.apply(bad) == "quality-low" and bad.scores["fasttext_hq"] < 0.5
    empty = Document(id="e", text="")
    assert step.apply(empty) == "quality-low" and empty.scores["fasttext_hq"] == 0.0


def test_step_pickles_and_loads_lazily(trained):
    out, _, _ = trained
    step = QualityClassifier(model_path=str(out), min_score=0.3)
    step.setup()
    clone = pickle.loads(pickle.dumps(step))
    assert clone._model is None and clone.min_score == 0.3
    doc = Document(id="d", text="A long history of careful scholarship shaped the museum's collection.")
    clone.apply(doc)
    assert 0.0 <= doc.scores["quality"] <= 1.0


def test_step_rejects_a_model_without_hq_label():
    step = QualityClassifier(model_path=BUNDLED_MODEL)     # the language-ID model: labels zh, en, ...
    with pytest.raises(ValueError, match="__label__hq"):
        step.setup()


@pytest.mark.parametrize("kwargs", [{"min_score": 2.0}, {"min_score": -1}, {"field": ""}])
def test_step_rejects_bad_params(kwargs):
    with pytest.raises(ValueError):
        QualityClassifier(**kwargs)


def test_quality_train_command_and_the_step_in_a_pipeline_recipe(corpus_samples, tmp_path, capsys):
    """`wudao quality train` writes a model that the recipe's `quality` step then uses inside `wudao text`."""
    from pipelines.cli import main

    positives = _positives(corpus_samples)
    rng = random.Random(5)
    _write_jsonl(tmp_path / "pos.jsonl", positives)
    _write_jsonl(tmp_path / "neg.jsonl", [_spam(rng) for _ in range(len(positives))])
    model = tmp_path / "q.bin"
    assert main(["quality", "train", "--positive", str(tmp_path / "pos*.jsonl"),
                 "--negative", str(tmp_path / "neg.jsonl"), "--output", str(model)]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert model.is_file() and metrics["accuracy"] > 0.9

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"steps: [normalize, language, {{quality: {{model_path: '{model}', min_score: 0.5}}}}]\n")
    corpus = tmp_path / "in.jsonl"
    _write_jsonl(corpus, [positives[0], _spam(random.Random(9))])
    assert main(["text", "--input", str(corpus), "--output", str(tmp_path / "out"), "--config", str(recipe)]) == 0
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    quality = next(s for s in stats["stages"] if s["stage"] == "quality")
    assert quality["in"] == quality["out"] + quality["dropped"]
    assert stats["totals"] == {"records_in": 2, "kept": 1, "dropped": 1}
    with gzip.open(next((tmp_path / "out" / "corpus").glob("part-*.jsonl.gz")), "rt") as fh:
        kept = [json.loads(line) for line in fh]
    assert len(kept) == 1 and kept[0]["content"][:30] == positives[0].strip()[:30]
    assert kept[0]["scores"]["quality"] >= 0.5
