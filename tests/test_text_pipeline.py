"""End-to-end runs of the web-text Beam pipeline on the embedded sample crawl and on small exact inputs."""
from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest

from cleaners.domain import source_type
from cleaners.document import stable_hash
from pipelines.cli import main
from pipelines.run import run_text, sample_inputs
from pipelines.ledger import ledger_reason

SAMPLE = Path(__file__).resolve().parents[1] / "pipelines" / "data" / "sample"


def read_jsonl_gz(folder: Path) -> list[dict]:
    rows = []
    for path in sorted(folder.glob("part-*.jsonl.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            rows.extend(json.loads(line) for line in fh if line.strip())
    return rows


def run(tmp: Path, *beam_args: str, config: str | None = None) -> tuple[dict, list[dict], list[dict]]:
    stats = run_text(sample_inputs(), str(tmp), config, list(beam_args))
    return stats, read_jsonl_gz(tmp / "corpus"), read_jsonl_gz(tmp / "rejects")


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory):
    return run(tmp_path_factory.mktemp("sample"))


def test_ledger_balances_and_matches_outputs(sample_run):
    stats, corpus, rejects = sample_run
    totals = stats["totals"]
    assert totals["records_in"] == totals["kept"] + totals["dropped"]
    assert len(corpus) == totals["kept"] and len(rejects) == totals["dropped"]
    for stage in stats["stages"]:
        assert stage["in"] == stage["out"] + stage["dropped"], stage
        assert stage["dropped"] == sum(stage["dropped_by_reason"].values())
    names = [s["stage"] for s in stats["stages"]]
    assert names[:2] == ["read", "extract"] and names[-1] == "write"
    # every reject names a stage that exists and a reason that the stage counted
    by_stage = {s["stage"]: s["dropped_by_reason"] for s in stats["stages"]}
    for row in rejects:
        assert ledger_reason(row["reason"]) in by_stage[row["stage"]]


def test_every_planted_case_ends_where_expected(sample_run):
    _, corpus, rejects = sample_run
    cases = json.loads((SAMPLE / "expected.json").read_text("utf-8"))["cases"]
    kept_by_url = {r["url"]: r for r in corpus if r["url"]}
    kept_by_source_id = {r["source_id"]: r for r in corpus if r["source_id"]}
    kept_by_file = {os.path.basename(r["source"]): r for r in corpus}
    rejects_by_url: dict[str, list[dict]] = {}
    for row in rejects:
        rejects_by_url.setdefault(row["url"], []).append(row)
    rejects_by_key = {row["key"]: row for row in rejects}
    failures = []
    originals = {c.get("duplicate_of") or c.get("near_duplicate_of") for c in cases} - {None}
    for case in cases:
        path = str(SAMPLE / case["file"])
        original_url = case.get("duplicate_of") or case.get("near_duplicate_of")
        if case["expect"] == "kept" and original_url:
            # a duplicate pair: the per-record stages keep both, then the dedup stage keeps exactly one
            stage = "exact_dedup" if case.get("duplicate_of") else "minhash_dedup"
            pair = [kept_by_url.get(case["url"]), kept_by_url.get(original_url)]
            dropped = [r for u in (case["url"], original_url) for r in rejects_by_url.get(u, []) if r["stage"] == stage]
            kept_ids = {r["id"] for r in pair if r}
            if len(kept_ids) != 1 or len(dropped) != 1 or dropped[0]["reason"].split(":")[1] not in kept_ids:
                failures.append(f"{case['case']} {case['url']}: expected one kept and one {stage} reject "
                                f"naming it, got kept={kept_ids} rejects={dropped}")
            continue
        if case["expect"] == "kept":
            record = (kept_by_url.get(case["url"]) if case["url"] else
                      kept_by_source_id.get(case.get("id")) if case.get("id") else kept_by_file.get(case["file"]))
            if record is None and case["url"] in originals:
                continue  # its duplicate was kept instead: checked with the duplicate's case
            if record is None:
                failures.append(f"{case['case']} {case['url'] or case.get('id')}: not kept")
                continue
            text = record["title"] + "\n" + record["content"]
            failures += [f"{case['case']}: missing {s!r}" for s in case.get("must_contain", []) if s not in text]
            failures += [f"{case['case']}: still has {s!r}" for s in case.get("must_not_contain", []) if s in text]
            failures += [f"{case['case']}: line dedup left {s!r}" for s in case.get("removed_by_line_dedup", [])
                         if s in text]
            if case.get("lang") and record["lang"] != case["lang"]:
                failures.append(f"{case['case']}: lang {record['lang']} != {case['lang']}")
        elif case["expect"] == "dropped":
            prefixes = tuple(case.get("reason_prefixes") or [case["reason_prefix"]])
            if case.get("line"):
                rows = [rejects_by_key.get(f"{path}#{case['line']}")]
            else:
                rows = [r for r in rejects_by_url.get(case["url"], []) if r["source"] == path]
            rows = [r for r in rows if r is not None]
            if not any(r["reason"].startswith(prefixes) for r in rows):
                failures.append(f"{case['case']} {case['url']}: expected drop {prefixes}, got {rows}")
        else:  # a non-page record the reader skips
            rows = [r for r in rejects_by_url.get(case["url"], []) if r["source"] == path]
            if not any(r["stage"] == "read" and r["reason"] == case["record_type"] for r in rows):
                failures.append(f"{case['case']} {case['url']}: expected skip {case['record_type']}, got {rows}")
    assert not failures, "\n".join(failures)


def test_damage_is_counted_and_records_before_it_kept(sample_run):
    stats, corpus, rejects = sample_run
    damaged = [r for r in rejects if r["reason"].startswith("damaged:")]
    assert [os.path.basename(r["source"]) for r in damaged] == ["crawl-00002-truncated.warc.gz"]
    kept_from_truncated = [r for r in corpus if r["source"].endswith("crawl-00002-truncated.warc.gz")]
    assert len(kept_from_truncated) == 2


def test_records_are_in_wudao_schema_with_stable_ids(sample_run):
    from cleaners.topic import TOPIC_NAMES, TopicModel

    topics = TopicModel()
    _, corpus, _ = sample_run
    assert len({r["id"] for r in corpus}) == len(corpus)
    own_labels = {}                                         # the embedded JSONL corpus carries its own dataType
    with gzip.open(SAMPLE / "pages.jsonl.gz", "rt", encoding="utf-8") as fh:
        for line in fh:
            try:
                row = json.loads(line)
            except ValueError:                                # the sample's planted broken lines
                continue
            if isinstance(row, dict) and isinstance(row.get("id"), str):
                own_labels[row["id"]] = row.get("dataType")
    for record in corpus:
        assert not [k for k in record if k.startswith("_")]  # private fields are never written
        found = source_type(record["url"], record["content"])
        domain = record["domain"]
        assert domain["source_type"] == found
        if record["lang"] == "zh":                           # the bundled topic model labels Chinese
            assert domain["topic"] in topics.labels and 0 < domain["topic_score"] <= 1   # (judged before line dedup)
        else:
            assert set(domain) == {"source_type"}
        if found == "其他" and domain.get("topic_score", 0) >= 0.8:
            found = TOPIC_NAMES[domain["topic"]]             # no kind of page: the topic names the domain
        own = own_labels.get(record["source_id"]) if record["source"].endswith("pages.jsonl.gz") else None
        assert record["dataType"] == (own or found)          # the input's label is never overwritten
        assert record["uniqueKey"] == stable_hash(record["content"])
        assert len(record["id"]) == 40 and int(record["id"], 16) >= 0  # content hash taken before line dedup
        assert record["titleUkey"] == (stable_hash(record["title"]) if record["title"] else "")
        assert record["lang"] in ("zh", "en")
        assert 0.5 <= record["scores"]["lang"] <= 1.0001


@pytest.mark.slow
def test_rerun_and_multi_processing_give_the_same_records(sample_run, tmp_path):
    stats, corpus, rejects = sample_run
    stats2, corpus2, rejects2 = run(tmp_path / "mp", "--direct_running_mode=multi_processing",
                                    "--direct_num_workers=2")
    key = lambda rows: sorted(json.dumps(r, sort_keys=True, ensure_ascii=False) for r in rows)  # noqa: E731
    assert key(corpus2) == key(corpus)
    assert key(rejects2) == key(rejects)
    assert stats2["totals"] == stats["totals"] and stats2["stages"] == stats["stages"]
    stats3, corpus3, _ = run(tmp_path / "again")
    assert key(corpus3) == key(corpus) and stats3["stages"] == stats["stages"]


ARTICLE = (
    "The city library opened its new reading room on Monday after two years of careful work. "
    "Visitors found long oak tables, quiet corners and large windows that let in the morning light. "
    "The librarians said that the room was designed for students who need a calm place to study. "
    "Many of them had asked for longer opening hours, and the library agreed to stay open until ten. "
    "A small cafe near the entrance sells tea and sandwiches, but food is not allowed between the shelves. "
    "The old catalogue cards were kept in a wooden cabinet as a reminder of how research used to be done. "
    "Local historians donated a collection of maps that show how the streets have changed over a century. "
    "The mayor thanked the builders and the volunteers who moved thousands of books by hand. "
    "She said that a public library is one of the few places where everyone is welcome and nobody has to pay."
)


def test_small_jsonl_input_gives_exact_records(tmp_path):
    src = tmp_path / "in.jsonl"
    rows = [
        {"id": "a", "url": "https://example.org/library", "title": "New  reading room", "text": ARTICLE},
        {"id": "b", "url": "https://example.org/short", "text": "Too short."},
        "not json",
    ]
    src.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n", "utf-8")
    assert main(["text", "--input", str(src), "--output", str(tmp_path / "out")]) == 0
    corpus = read_jsonl_gz(tmp_path / "out" / "corpus")
    rejects = read_jsonl_gz(tmp_path / "out" / "rejects")
    assert len(corpus) == 1
    record = corpus[0]
    assert record["title"] == "New reading room"  # whitespace normalized
    assert record["content"] == ARTICLE
    assert record["source_id"] == "a" and record["lang"] == "en" and record["url"] == "https://example.org/library"
    assert record["id"] == stable_hash("https://example.org/library", "New reading room", ARTICLE)
    reasons = sorted((r["key"].rsplit("#", 1)[1], r["stage"], r["reason"].split(":")[0]) for r in rejects)
    assert reasons[0] == ("2", reasons[0][1], reasons[0][2]) and reasons[0][1] != "read"
    assert reasons[1] == ("3", "read", "bad-json")
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["totals"] == {"records_in": 3, "kept": 1, "dropped": 2}


def test_parquet_output_and_user_recipe(tmp_path):
    import pyarrow.parquet as pq

    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"url": "https://example.org/a", "text": ARTICLE}) + "\n", "utf-8")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("output: {format: parquet}\nsteps: [normalize, {language: {min_score: 0.5}}]\n"
                      "dedup: {url: {enabled: false}, lines: {enabled: false}, minhash: {enabled: false}}\n", "utf-8")
    stats = run_text([str(src)], str(tmp_path / "out"), str(recipe), [])
    assert [s["stage"] for s in stats["stages"]] == ["read", "extract", "normalize", "language", "exact_dedup",
                                                     "write"]
    table = pq.read_table(next((tmp_path / "out" / "corpus").glob("part-*.parquet")))
    assert table.num_rows == 1
    row = table.to_pylist()[0]
    assert row["content"] == ARTICLE and row["lang"] == "en" and dict(row["scores"])["lang"] > 0.5


def test_bad_recipe_is_a_clear_error(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("steps: [no_such_step]\n", "utf-8")
    with pytest.raises(ValueError, match="unknown text step 'no_such_step'; known: c4, domain, fineweb"):
        run_text([str(SAMPLE / "standalone-page.html")], str(tmp_path / "out"), str(recipe), [])


def test_extract_command_prints_one_json_line_per_file(tmp_path, capsys):
    page = tmp_path / "p.html.gz"
    body = f"<html><head><title>Reading room</title></head><body><nav>Home | News</nav><article><p>{ARTICLE}</p>" \
           "</article><footer>Copyright 2024 Example</footer></body></html>"
    page.write_bytes(gzip.compress(body.encode("utf-8")))
    assert main(["extract", str(page)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 1 and rows[0]["file"] == str(page)
    assert ARTICLE[:60] in rows[0]["text"] and "Copyright" not in rows[0]["text"]


def test_real_and_malformed_crawl_files_run_through(corpus_samples, tmp_path):
    """Every real WARC/ARC/WET file in the shared samples, the malformed ones included, in one run:
    nothing crashes, damage is counted per file, and the real HTML captures come out as documents."""
    warc_dir = corpus_samples / "web" / "warc"
    stats = run_text([str(warc_dir / "*" / "*")], str(tmp_path / "out"), None, [])
    rejects = read_jsonl_gz(tmp_path / "out" / "rejects")
    corpus = read_jsonl_gz(tmp_path / "out" / "corpus")
    assert stats["totals"]["records_in"] == stats["totals"]["kept"] + stats["totals"]["dropped"]
    damaged_files = {Path(r["source"]).name for r in rejects if r["reason"].startswith("damaged:")}
    assert "sample.wet.txt" in damaged_files            # wrong Content-Length values, records recovered
    read = next(s for s in stats["stages"] if s["stage"] == "read")
    assert read["out"] >= 30                            # the dolma, jwarc, warcio and ARC captures
    sources = {Path(r["source"]).name for r in corpus}
    assert "sample-0000.warc.gz" in sources             # the 2024 dolma crawl has English pages to keep
