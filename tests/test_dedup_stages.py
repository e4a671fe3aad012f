"""Exact and URL dedup stages, URL normalization, and `wudao dedup` on a small corpus."""
from __future__ import annotations

import gzip
import json
from collections import Counter

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to

from cleaners.urlnorm import normalize_url
from pipelines.cli import main
from pipelines.dedup.keep_one import ExactDedup, UrlDedup


def rec(id_, content, url="", date="", quality=None):
    r = {"id": id_, "content": content, "url": url, "date": date, "lang": "en", "scores": {}}
    if quality is not None:
        r["scores"]["quality"] = quality
    return r


def run_stage(stage, records, kept_ids, reject_pairs, counts):
    with beam.Pipeline(runner="FnApiRunner") as p:
        out = p | beam.Create(records) | stage
        assert_that(out.kept | "KeptIds" >> beam.Map(lambda r: r["id"]), equal_to(kept_ids), label="kept")
        assert_that(out.rejects | "RejectPairs" >> beam.Map(lambda r: (r["id"], r["reason"])),
                    equal_to(reject_pairs), label="rejects")
        summed = (out.counts | beam.FlatMap(lambda c: c.items()) | beam.CombinePerKey(sum))
        assert_that(summed, equal_to(sorted(counts.items())), label="counts")


def test_exact_dedup_keeps_best_quality_then_smallest_id():
    records = [
        rec("b", "The same  text.\nSecond line."),
        rec("a", "the same text. second line."),            # same after case and whitespace folding
        rec("c", "THE SAME TEXT. SECOND LINE.", quality=0.9),  # best quality wins over smaller ids
        rec("d", "Different text."),
        rec("e", "Different text."),
    ]
    run_stage(ExactDedup(), records, ["c", "d"],
              [("a", "exact-duplicate-of:c"), ("b", "exact-duplicate-of:c"), ("e", "exact-duplicate-of:d")],
              {"exact_dedup|in": 5, "exact_dedup|out": 2, "exact_dedup|drop|exact-duplicate-of": 3})


def test_identical_records_keep_exactly_one():
    records = [rec("x", "Same."), rec("x", "Same.")]
    run_stage(ExactDedup(), records, ["x"], [("x", "exact-duplicate-of:x")],
              {"exact_dedup|in": 2, "exact_dedup|out": 1, "exact_dedup|drop|exact-duplicate-of": 1})


def test_url_dedup_keeps_newest_capture_and_passes_records_without_url():
    records = [
        rec("1", "old", "http://Example.com/a?utm_source=x#top", "2023-01-01T00:00:00Z"),
        rec("2", "new", "http://example.com:80/a", "2024-06-01T00:00:00Z"),
        rec("3", "undated", "http://example.com/a"),
        rec("4", "other", "http://example.com/b", "2020-01-01T00:00:00Z"),
        rec("5", "no url"),
    ]
    run_stage(UrlDedup(), records, ["2", "4", "5"],
              [("1", "url-duplicate-of:2"), ("3", "url-duplicate-of:2")],
              {"url_dedup|in": 5, "url_dedup|out": 3, "url_dedup|drop|url-duplicate-of": 2})


@pytest.mark.parametrize("url, expected", [
    ("HTTP://Example.COM:80/a/./b/../c?utm_source=x&b=2&a=1#frag", "http://example.com/a/c?a=1&b=2"),
    ("https://example.com", "https://example.com/"),
    ("https://example.com:443/x/?gclid=1", "https://example.com/x/"),
    ("https://example.com:8443/x", "https://example.com:8443/x"),
    ("http://www.example.com/x", "http://www.example.com/x"),          # www. is a different host
    ("https://example.com/%E8%B7%AF", "https://example.com/%E8%B7%AF"),
    ("https://example.com/路", "https://example.com/%E8%B7%AF"),
    ("not a url", ""),
    ("", ""),
])
def test_normalize_url(url, expected):
    assert normalize_url(url) == expected


def test_dedup_command_on_a_text_corpus(tmp_path):
    src = tmp_path / "corpus.jsonl.gz"
    rows = [
        {"id": "r1", "text": "A first document about rivers and boats.", "url": "https://a.example/1"},
        {"id": "r2", "text": "a first document about rivers and boats.", "url": "https://a.example/2"},
        {"text": "Another page.", "url": "https://a.example/1?utm_medium=mail", "date": "2024-01-01"},
        "{broken",
        {"title": "no text field"},
    ]
    with gzip.open(src, "wt", encoding="utf-8") as fh:
        for row in rows:
            fh.write((row if isinstance(row, str) else json.dumps(row)) + "\n")
    recipe = tmp_path / "r.yaml"
    recipe.write_text("dedup: {lines: {enabled: false}, minhash: {enabled: false}}\n")
    assert main(["dedup", "--input", str(src), "--output", str(tmp_path / "out"), "--config", str(recipe)]) == 0
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["totals"] == {"records_in": 5, "kept": 1, "dropped": 4}
    reasons = Counter()
    for stage in stats["stages"]:
        reasons.update({f"{stage['stage']}:{r}": n for r, n in stage["dropped_by_reason"].items()})
    assert reasons == Counter({"read:bad-json": 1, "read:no-text": 1, "exact_dedup:exact-duplicate-of": 1,
                               "url_dedup:url-duplicate-of": 1})
    with gzip.open(next((tmp_path / "out" / "corpus").glob("part-*")), "rt") as fh:
        kept = [json.loads(line) for line in fh]
    assert [r["text"] for r in kept] == ["Another page."]          # written back under its own field name
    assert "content" not in kept[0] and not [k for k in kept[0] if k.startswith("_")]
    assert kept[0]["lang"] == "en" and len(kept[0]["id"]) == 40   # an id made from its file and line


def test_dedup_command_on_parquet_with_fuzzy_threshold(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    base = ("Volunteers planted two hundred oak trees along the river on Saturday, and the council promised to "
            "water them through the first dry summer. Local schools will each adopt a small section of the new "
            "woodland and measure how the trees grow over the next ten years.")
    near = base.replace("two hundred", "three hundred")
    table = pa.table({"id": ["k1", "k2", "k3"], "content": [base, near, "An unrelated note about trains."],
                      "lang": ["en", "en", "en"]})
    pq.write_table(table, tmp_path / "c.parquet")
    recipe = tmp_path / "r.yaml"
    recipe.write_text("dedup: {lines: {enabled: false}}\n")
    args = ["dedup", "--input", str(tmp_path / "*.parquet"), "--config", str(recipe)]
    assert main([*args, "--output", str(tmp_path / "loose"), "--threshold", "0.8"]) == 0
    assert main([*args, "--output", str(tmp_path / "strict"), "--threshold", "0.99"]) == 0
    loose = json.loads((tmp_path / "loose" / "stats.json").read_text())
    strict = json.loads((tmp_path / "strict" / "stats.json").read_text())
    assert loose["totals"] == {"records_in": 3, "kept": 2, "dropped": 1}
    assert strict["totals"] == {"records_in": 3, "kept": 3, "dropped": 0}
    with gzip.open(next((tmp_path / "loose" / "rejects").glob("part-*")), "rt") as fh:
        assert [json.loads(line)["reason"] for line in fh] == ["minhash-duplicate-of:k1"]
