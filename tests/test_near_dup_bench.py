"""Tests of the near-duplicate benchmark's generator and evaluation (bench/near_duplicates.py): sentence pools,
edits at a controlled Jaccard, exact all-pairs Jaccard, predicted clusters from a hand-made rejects file, and the
pair precision/recall arithmetic. Fast; the dedup run itself is the benchmark, not a test."""
from __future__ import annotations

import gzip
import itertools
import json
import random
import time
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import near_duplicates as nd  # noqa: E402


def word_shingles(text: str, lang: str, n: int = 3) -> set[str]:
    """A reference shingler for tests independent of cleaners.minhash: word n-grams (en), char n-grams (zh)."""
    tokens = text.split() if lang == "en" else [c for c in text if not c.isspace()]
    return {" ".join(tokens[i:i + n]) for i in range(max(1, len(tokens) - n + 1))}


def toy_language(lang: str = "en", n: int = 200, seed: int = 0) -> nd.Language:
    rng = random.Random(seed)
    if lang == "en":
        words = [f"w{i}" for i in range(500)]
        sentences = [[rng.choice(words) for _ in range(rng.randint(8, 20))] for _ in range(n)]
        return nd.Language("en", sentences, words)
    chars = [chr(0x4E00 + i) for i in range(800)]
    sentences = [[rng.choice(chars) for _ in range(rng.randint(10, 30))] + ["。"] for _ in range(n)]
    return nd.Language("zh", sentences, chars)


# --------------------------------------------------------------------------------------------- sentences

def test_split_sentences_keeps_prose_and_drops_fragments_code_and_other_scripts():
    text = "Short one. This sentence has more than four words in it! Too short?\n\\section{A b c d e}\nx"
    assert nd.split_sentences(text, "en") == ["This sentence has more than four words in it!"]
    zh = "今天天气很好，我们去公园散步。好。\nThis is English text only here。我 也 要 去 健 身 懒 半 年 了"  # noqa: E501
    expected = ["今天天气很好，我们去公园散步。", "我也要去健身懒半年了"]
    assert nd.split_sentences(zh, "zh") == expected


def test_real_sentence_pools_are_large_distinct_and_of_their_language(corpus_samples):
    en = nd.sentence_pool(corpus_samples, "en")
    zh = nd.sentence_pool(corpus_samples, "zh")
    assert len(en) > 10_000 and len(zh) > 30_000
    assert len(set(en)) == len(en) and en == sorted(en)
    assert all(len(nd._CJK.findall(s)) >= len(s) / 2 for s in zh)
    assert not any(nd._CJK.search(s) for s in en[:2000])


# --------------------------------------------------------------------------------------------- documents

def test_render_puts_three_sentences_per_line_with_language_joiners():
    sentences = [["a", "b."], ["c."], ["d", "e."], ["f."]]
    assert nd.render(sentences, "en") == "a b. c. d e.\nf."
    assert nd.render([list("你好。"), list("再见。")], "zh") == "你好。再见。"


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_compose_base_reaches_the_drawn_length_from_real_sentences(lang):
    language = toy_language(lang)
    rng = random.Random(3)
    low, high = nd.DOC_CHARS[lang]
    pool = {tuple(s) for s in language.sentences}
    for _ in range(20):
        doc = nd.compose_base(language, rng)
        text = nd.render(doc, lang)
        longest = max(len(nd.render([s], lang)) for s in language.sentences)
        assert low <= len(text) <= high + longest + len(doc)
        assert all(tuple(s) in pool for s in doc)


def test_apply_edits_is_deterministic_leaves_the_base_alone_and_counts_tokens():
    language = toy_language()
    base = language.sentences[:10]
    frozen = [list(s) for s in base]
    assert nd.apply_edits(base, 0, 1, language.vocabulary) == frozen
    edited = nd.apply_edits(base, 15, 7, language.vocabulary)
    assert edited == nd.apply_edits(base, 15, 7, language.vocabulary)
    assert edited != nd.apply_edits(base, 15, 8, language.vocabulary)
    assert base == frozen
    assert abs(sum(map(len, edited)) - sum(map(len, base))) <= 15
    assert len(edited) == len(base)


def test_one_swap_moves_whole_sentences_only():
    language = nd.Language("en", [], ["zzz"])
    base = [["a", "b"], ["c", "d"], ["e", "f"]]
    seen_swap = False
    for seed in range(200):
        doc = nd.apply_edits(base, 1, seed, language.vocabulary)
        if sorted(map(tuple, doc)) == sorted(map(tuple, base)) and doc != base:
            seen_swap = True
            assert any(doc[i] == base[i + 1] and doc[i + 1] == base[i] for i in range(2))
    assert seen_swap


@pytest.mark.parametrize("lang", ["en", "zh"])
@pytest.mark.parametrize("target", [0.5, 0.65, 0.8, 0.9])
def test_variant_lands_near_its_target_jaccard_and_reports_it_exactly(lang, target):
    language = toy_language(lang)
    base = nd.compose_base(language, random.Random(11))
    doc, edits, value = nd.variant_at_jaccard(base, target, 5, language, word_shingles)
    truth = nd.jaccard(word_shingles(nd.render(base, lang), lang), word_shingles(nd.render(doc, lang), lang))
    assert value == pytest.approx(truth)
    assert abs(value - target) < 0.05
    assert edits >= 1 and doc == nd.apply_edits(base, edits, 5, language.vocabulary)


def test_benchmark_is_deterministic_with_unique_ids_and_the_promised_shape():
    languages = {"en": toy_language("en"), "zh": toy_language("zh")}
    records = nd.build_benchmark(languages, clusters=4, singletons=3, seed=2, shingle_fn=word_shingles)
    again = nd.build_benchmark(languages, clusters=4, singletons=3, seed=2, shingle_fn=word_shingles)
    assert records == again
    assert records != nd.build_benchmark(languages, clusters=4, singletons=3, seed=3, shingle_fn=word_shingles)
    assert len({r["id"] for r in records}) == len(records)
    for lang in ("en", "zh"):
        mine = [r for r in records if r["lang"] == lang]
        assert sum(r["role"] == "base" for r in mine) == 4 and sum(r["role"] == "single" for r in mine) == 3
        variants = [r for r in mine if r["role"] == "variant"]
        assert 4 <= len(variants) <= 16
        assert all(0.4 < r["jaccard_to_base"] < 1.0 for r in variants)
    bases = {r["cluster"]: r for r in records if r["role"] == "base"}
    variant = next(r for r in records if r["role"] == "variant")
    base = bases[variant["cluster"]]
    assert nd.jaccard(word_shingles(base["content"], base["lang"]),
                      word_shingles(variant["content"], variant["lang"])) == pytest.approx(variant["jaccard_to_base"])


def test_project_shingles_give_the_reported_jaccard(corpus_samples):
    minhash = pytest.importorskip("cleaners.minhash")
    languages = {lang: nd.Language.from_samples(corpus_samples, lang) for lang in ("en", "zh")}
    records = nd.build_benchmark(languages, clusters=2, singletons=1, seed=4, shingle_fn=nd.project_shingles)
    bases = {r["cluster"]: r for r in records if r["role"] == "base"}
    for r in records:
        if r["role"] == "variant":
            b = bases[r["cluster"]]
            got = minhash.exact_jaccard(minhash.shingles(b["content"], b["lang"]),
                                        minhash.shingles(r["content"], r["lang"]))
            assert got == pytest.approx(r["jaccard_to_base"], abs=1e-6)
    sims = nd.all_pairs_jaccard([(r["content"], r["lang"]) for r in records], nd.project_shingles)
    assert nd.check_against_project_jaccard(records, sims) > 0


# --------------------------------------------------------------------------------------------- truth

@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.sampled_from("abcdefgh"), min_size=1, max_size=12), min_size=2, max_size=8))
def test_all_pairs_jaccard_equals_brute_force(docs):
    texts = [(" ".join(d), "en") for d in docs]
    got = nd.all_pairs_jaccard(texts, lambda t, lang: word_shingles(t, lang, n=2))
    for i, j in itertools.combinations(range(len(texts)), 2):
        expected = nd.jaccard(word_shingles(texts[i][0], "en", 2), word_shingles(texts[j][0], "en", 2))
        assert got.get((i, j), 0.0) == pytest.approx(expected)
        assert ((i, j) in got) == (expected > 0)
    assert all(i < j for i, j in got)


# --------------------------------------------------------------------------------------------- predictions

def write_rejects(folder: Path, rows: list[dict]) -> Path:
    folder.mkdir(parents=True)
    half = len(rows) // 2
    for n, part in enumerate((rows[:half], rows[half:])):
        with gzip.open(folder / f"part-0000{n}-of-00002.jsonl.gz", "wt", encoding="utf-8") as fh:
            fh.writelines(json.dumps(r) + "\n" for r in part)
    return folder


def test_predicted_clusters_from_a_hand_made_rejects_file(tmp_path):
    rows = [{"id": "b", "stage": "minhash_dedup", "reason": "minhash-duplicate-of:a", "url": ""},
            {"id": "c", "stage": "minhash_dedup", "reason": "minhash-duplicate-of:a"},
            {"id": "e", "stage": "minhash_dedup", "reason": "minhash-duplicate-of:d"},
            {"id": "f", "stage": "exact_dedup", "reason": "exact-duplicate-of:a"},
            {"id": "g", "stage": "lines", "reason": "too-short-after-line-dedup"}]
    links, others = nd.duplicate_links(nd.read_jsonl_gz(write_rejects(tmp_path / "rejects", rows)))
    assert links == {"b": "a", "c": "a", "e": "d"}
    assert others == {("exact_dedup", "exact-duplicate-of:a"): 1, ("lines", "too-short-after-line-dedup"): 1}
    labels = nd.predicted_clusters(list("abcdefg"), links)
    assert labels == {"a": "a", "b": "a", "c": "a", "d": "d", "e": "d", "f": "f", "g": "g"}
    assert nd.predicted_clusters(list("abc"), {"c": "b", "b": "a"}) == {"a": "a", "b": "a", "c": "a"}


def test_bad_rejects_are_refused():
    with pytest.raises(ValueError, match="not in the input"):
        nd.predicted_clusters(["a", "b"], {"b": "zz"})
    with pytest.raises(ValueError, match="cycle"):
        nd.predicted_clusters(["a", "b"], {"a": "b", "b": "a"})
    twice = [{"id": "b", "stage": "minhash_dedup", "reason": "minhash-duplicate-of:a"}] * 2
    with pytest.raises(ValueError, match="twice"):
        nd.duplicate_links(twice)


# --------------------------------------------------------------------------------------------- metrics

def test_pair_scores_on_a_hand_worked_example():
    # docs 0..5. True pairs (>= 0.8): (0,1), (0,2), (3,4). (1,2) = 0.7 is below; closure joins {0,1,2}.
    sims = {(0, 1): 0.9, (0, 2): 0.85, (1, 2): 0.7, (3, 4): 0.95, (4, 5): 0.5}
    labels = ["x", "x", "x", "y", "z", "y"]       # predicted: {0,1,2}, {3,5}, {4}
    s = nd.pair_scores(labels, sims, 0.8)
    assert (s.true_pairs, s.predicted_pairs, s.true_positive) == (3, 4, 2)
    assert s.precision == pytest.approx(2 / 4) and s.recall == pytest.approx(2 / 3)
    assert (s.closure_pairs, s.closure_true_positive) == (4, 3)   # closure {0,1,2},{3,4}: 3 + 1 pairs
    assert s.closure_precision == pytest.approx(3 / 4) and s.closure_recall == pytest.approx(3 / 4)
    assert (s.dropped, s.expected_drops) == (3, 3)
    only = nd.pair_scores(labels, sims, 0.8, members=[3, 4, 5])
    assert (only.true_pairs, only.predicted_pairs, only.true_positive) == (1, 1, 0)
    assert only.precision == 0.0 and only.recall == 0.0
    perfect = nd.pair_scores(["a", "a", "a", "b", "b", "c"], sims, 0.8)
    assert perfect.closure_precision == perfect.closure_recall == 1.0 and perfect.recall == 1.0
    assert perfect.precision == pytest.approx(3 / 4)


def test_link_precision_checks_each_drop_against_its_kept_document():
    records = [{"id": x} for x in "abcd"]
    sims = {(0, 1): 0.9, (0, 2): 0.7}
    assert nd.link_precision(records, {"b": "a", "c": "a", "d": "a"}, sims, 0.8) == (3, 1)
    assert nd.link_precision(records, {"b": "a", "c": "a"}, sims, 0.8, members=[1]) == (1, 1)
    assert nd.link_precision(records, {}, sims, 0.8) == (0, 0)


def test_bucket_rates_count_pairs_and_merges_per_bucket():
    sims = {(0, 1): 0.9, (0, 2): 0.85, (1, 2): 0.7, (3, 4): 0.95, (4, 5): 0.5, (2, 3): 0.1, (0, 5): 1.0}
    labels = ["x", "x", "x", "y", "z", "y"]
    rows = {low: (pairs, merged) for (low, _), pairs, merged in nd.bucket_rates(labels, sims)}
    assert rows == {0.0: (1, 0), 0.5: (1, 0), 0.6: (0, 0), 0.7: (1, 1), 0.8: (1, 1), 0.9: (3, 1)}


def test_report_and_recipe():
    records = [{"lang": "en"}, {"lang": "en"}, {"lang": "zh"}]
    records = [dict(r, id=i) for r, i in zip(records, "abc")]
    run = nd.Run("defaults", ["a", "a", "c"], {"b": "a"}, nd.Counter(), 1.0, [])
    text = nd.render_report(records, run, {(0, 1): 0.9}, 0.8, "cmd", ["a note"])
    assert "| en | 2 | 1 | 1 | 1 | 1.0000 | 1.0000 |" in text and "| zh | 1 | 0 | 0 | 0 |" in text
    assert "| 1 / 1 (1.0000) |" in text
    assert "| 0.9-1.0 | 1 | 1.000 | 0 | - | 1 | 1.000 |" in text and "- a note" in text
    recipe = yaml.safe_load(nd.dedup_recipe(0.7))["dedup"]
    assert recipe["minhash"] == {"enabled": True, "threshold": 0.7}
    assert not any(recipe[s]["enabled"] for s in ("exact", "url", "lines"))
    cmd = nd.dedup_command("in/*.jsonl.gz", Path("out"), 0.7, Path("r.yaml"), ["--direct_num_workers=2"])
    assert cmd[1:] == ["-m", "pipelines.cli", "dedup", "--input", "in/*.jsonl.gz", "--output", "out",
                       "--threshold", "0.7", "--config", "r.yaml", "--direct_num_workers=2"]


# --------------------------------------------------------------------------------------------- scaling corpus

def test_scaling_corpus_is_deterministic_with_the_promised_duplicate_mix():
    import dedup_scaling as ds
    languages = {"en": toy_language("en"), "zh": toy_language("zh")}
    records = list(ds.scaling_records(3000, 5, languages))
    assert records == list(ds.scaling_records(3000, 5, languages))
    assert len({r["id"] for r in records}) == 3000
    kinds = {k: sum(r["kind"] == k for r in records) / 3000 for k in ("exact", "recapture", "near")}
    for kind, share in ds.DUPLICATE_MIX.items():
        assert abs(kinds[kind] - share) < 0.02
    contents = {}
    for r in records:
        if r["kind"] == "exact":
            assert r["content"] in contents
        contents.setdefault(r["content"], r)
    urls = [r["url"] for r in records if r["kind"] == "recapture"]
    earlier = {r["url"] for r in records if r["kind"] != "recapture"}
    assert all(u in earlier for u in urls)
    footers = sum(r["content"].endswith(ds.footer(int(r["url"].split("site")[1].split(".")[0]), r["lang"]))
                  for r in records if r["url"].startswith("https://site"))
    assert footers > 1000


def test_process_tree_rss_counts_a_child(tmp_path):
    import os
    import subprocess
    import dedup_scaling as ds
    child = subprocess.Popen([sys.executable, "-c", "import time; x = bytearray(80 << 20); time.sleep(3)"])
    try:
        time.sleep(1.0)
        tree = ds.descendants(os.getpid())
        assert os.getpid() in tree and child.pid in tree
        assert ds.rss_bytes([child.pid]) > 70 << 20
        assert ds.rss_bytes(tree) > ds.rss_bytes([child.pid])
    finally:
        child.kill()
        child.wait()
