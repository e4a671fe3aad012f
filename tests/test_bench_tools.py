"""Tests of the benchmark's own machinery: the WARC input generator, the datatrove stats summary, the
record counting and the report.

They need no datatrove venv; the generator tests read the real corpus samples (skipped without them).
"""
from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import datatrove_pipeline  # noqa: E402
import make_warc  # noqa: E402
import throughput  # noqa: E402



@pytest.fixture
def samples(corpus_samples) -> Path:
    return corpus_samples


def test_http_block_carries_meta_charset_and_exact_length():
    html = '<html><head><meta charset="GB2312"></head><body>中文</body></html>'.encode("gb2312")
    block = make_warc.http_response_block(html)
    head, body = block.split(b"\r\n\r\n", 1)
    assert body == html
    assert b"Content-Type: text/html; charset=gb2312" in head
    assert f"Content-Length: {len(html)}".encode() in head
    assert b"charset" not in make_warc.http_response_block(b"<html><body>x</body></html>").split(b"\r\n\r\n")[0]


def test_warc_record_round_trips_through_the_reader(tmp_path):
    block = make_warc.http_response_block(b"<p>hello</p>")
    data = make_warc.response_record("https://a.example/x?y=1", block, "00000000-0000-0000-0000-000000000001",
                                     [("WARC-Identified-Payload-Type", "text/html")])
    path = tmp_path / "one.warc.gz"
    path.write_bytes(gzip.compress(data) + gzip.compress(data))
    records = make_warc.read_warc_records(path)
    assert len(records) == 2
    headers, got = records[0]
    assert got == block
    assert headers["WARC-Type"] == "response"
    assert headers["WARC-Target-URI"] == "https://a.example/x?y=1"
    assert int(headers["Content-Length"]) == len(block)


def test_reader_rejects_truncated_and_garbage_input(tmp_path):
    data = make_warc.response_record("https://a.example/", make_warc.http_response_block(b"<p>x</p>"), "id")
    truncated = tmp_path / "t.warc"
    truncated.write_bytes(data[:-20])
    with pytest.raises(ValueError, match="truncated"):
        make_warc.read_warc_records(truncated)
    garbage = tmp_path / "g.warc"
    garbage.write_bytes(b"not a warc\r\n")
    with pytest.raises(ValueError, match="WARC version"):
        make_warc.read_warc_records(garbage)


@pytest.mark.parametrize("url, copy, expected", [
    ("https://a.example/p", 0, "https://a.example/p"),
    ("https://a.example/p", 3, "https://a.example/p?bench_copy=3"),
    ("https://a.example/p?q=1#top", 2, "https://a.example/p?q=1&bench_copy=2#top"),
])
def test_copy_url(url, copy, expected):
    assert make_warc.copy_url(url, copy) == expected


def test_plan_uses_whole_passes_and_unique_urls():
    pages = [make_warc.SourcePage(f"https://a.example/{i}", b"", "x") for i in range(7)]
    plan = make_warc.plan_records(pages, 30, seed=5)
    assert len(plan) == 30
    urls = [make_warc.copy_url(page.url, copy) for page, copy in plan]
    assert len(set(urls)) == 30
    for copy in range(4):   # each full pass holds every page exactly once
        assert sorted(p.url for p, c in plan if c == copy) == sorted(p.url for p in pages)
    assert plan == make_warc.plan_records(pages, 30, seed=5)
    assert plan != make_warc.plan_records(pages, 30, seed=6)
    with pytest.raises(ValueError):
        make_warc.plan_records(pages, 0, seed=0)
    with pytest.raises(ValueError):
        make_warc.plan_records([], 5, seed=0)


def test_build_input_writes_every_source_and_is_reproducible(tmp_path, samples):
    manifest = make_warc.build_input(tmp_path / "a", docs=190, shards=3, seed=0, samples=samples)
    assert manifest["responses"] == 190
    assert manifest["distinct_pages"] == 181            # 120 English + 39 Chinese pages + 22 dolma responses
    assert set(manifest["by_origin"]) == {"article-extraction-benchmark", "magic-html-zh", "dolma-warc"}
    assert sum(s["responses"] for s in manifest["shards"]) == 190
    uris = []
    for shard in manifest["shards"]:
        records = make_warc.read_warc_records(tmp_path / "a" / shard["file"])
        assert records[0][0]["WARC-Type"] == "warcinfo"
        responses = [(h, b) for h, b in records if h["WARC-Type"] == "response"]
        assert len(responses) == shard["responses"]
        assert all(b.startswith(b"HTTP/1.") for _, b in responses)
        uris += [h["WARC-Target-URI"] for h, _ in responses]
    assert len(set(uris)) == 190
    again = make_warc.build_input(tmp_path / "b", docs=190, shards=3, seed=0, samples=samples)
    for shard in manifest["shards"]:
        assert (tmp_path / "a" / shard["file"]).read_bytes() == (tmp_path / "b" / shard["file"]).read_bytes()
    assert again["shards"] == manifest["shards"]


def test_build_input_reuses_a_finished_input_and_redoes_a_damaged_one(tmp_path, samples):
    manifest = make_warc.build_input(tmp_path, docs=20, shards=2, samples=samples)
    first = tmp_path / manifest["shards"][0]["file"]
    stamp = first.stat().st_mtime_ns
    make_warc.build_input(tmp_path, docs=20, shards=2, samples=samples)
    assert first.stat().st_mtime_ns == stamp
    first.write_bytes(b"damaged")
    make_warc.build_input(tmp_path, docs=20, shards=2, samples=samples)
    assert first.stat().st_size == manifest["shards"][0]["bytes"]


def test_load_source_pages_names_missing_samples(tmp_path):
    with pytest.raises(FileNotFoundError, match="corpus samples"):
        make_warc.load_source_pages(tmp_path)


def test_summarize_reads_datatrove_stats_including_empty_steps():
    stats = [
        {"name": "READER: Warc", "time_stats": {"total": 0.5}, "stats": {"documents": {"total": 198, "n": 2}}},
        {"name": "EXTRAC: Trafilatura", "time_stats": {"total": 12.0},
         "stats": {"total": 198, "dropped": 2, "timeout": 1}},
        {"name": "FILTER: Language ID", "time_stats": 0, "stats": {}},
        {"name": "WRITER: Jsonl", "time_stats": {"total": 0.1}, "stats": {"total": 111, "XXXXX.jsonl.gz": 111}},
    ]
    summary = datatrove_pipeline.summarize(stats)
    assert summary["docs_read"] == 198
    assert summary["docs_written"] == 111
    assert summary["steps"][1] == {"name": "EXTRAC: Trafilatura", "time_s": 12.0,
                                   "stats": {"total": 198, "dropped": 2, "timeout": 1}}
    assert summary["steps"][2]["time_s"] == 0
    assert datatrove_pipeline.summarize([]) == {"docs_read": 0, "docs_written": 0, "steps": []}


def test_count_jsonl_gz_records_skips_rejects_and_blank_lines(tmp_path):
    (tmp_path / "corpus").mkdir()
    (tmp_path / "rejects").mkdir()
    (tmp_path / "corpus" / "part-0.jsonl.gz").write_bytes(gzip.compress(b'{"a":1}\n{"a":2}\n\n'))
    (tmp_path / "corpus" / "part-1.jsonl.gz").write_bytes(gzip.compress(b'{"a":3}\n'))
    (tmp_path / "rejects" / "part-0.jsonl.gz").write_bytes(gzip.compress(b'{"r":1}\n' * 5))
    assert throughput.count_jsonl_gz_records(tmp_path) == 3


def test_report_ratios_compare_same_worker_counts():
    rows = [
        throughput.Measurement("datatrove, 1 worker", 100, 50, wall_s=10.0, cpu_s=10.0),
        throughput.Measurement("wudao text, 1 worker", 100, 60, wall_s=5.0, cpu_s=4.0),
        throughput.Measurement("datatrove, 2 workers", 100, 50, wall_s=6.0, cpu_s=12.0),
        throughput.Measurement("wudao text, 2 workers", 100, 60, wall_s=3.0, cpu_s=5.0, notes=["n1"]),
    ]
    manifest = {"responses": 100, "distinct_pages": 9, "by_origin": {"x": 100},
                "shards": [{"file": "f", "responses": 100, "bytes": 2_000_000}]}
    report = throughput.render_table(rows, manifest, "python bench/throughput.py", ["a note"])
    table = [line for line in report.splitlines() if line.startswith("| ") and "docs in" not in line]
    assert table == [
        "| datatrove, 1 worker | 100 | 50 | 10.0 | 10.0 | 10.0 | 10.0 | 1.00x |",
        "| wudao text, 1 worker | 100 | 60 | 5.0 | 4.0 | 25.0 | 20.0 | 2.50x |",
        "| datatrove, 2 workers | 100 | 50 | 6.0 | 12.0 | 8.3 | 16.7 | 1.00x |",
        "| wudao text, 2 workers | 100 | 60 | 3.0 | 5.0 | 20.0 | 33.3 | 2.40x |",
    ]
    assert "python bench/throughput.py" in report and "- a note" in report and "- n1" in report


def test_ratio_is_na_without_a_datatrove_row_and_zero_cpu_is_safe():
    rows = [throughput.Measurement("wudao text, 1 worker", 10, 5, wall_s=0.0, cpu_s=0.0)]
    manifest = {"responses": 10, "distinct_pages": 1, "by_origin": {}, "shards": []}
    table = throughput.render_table(rows, manifest, "c", []).splitlines()
    line = [row for row in table if row.startswith("| wudao")][0]
    assert line == "| wudao text, 1 worker | 10 | 5 | 0.0 | 0.0 | 0.0 | 0.0 | n/a |"


def test_timed_run_counts_cpu_of_orphaned_grandchildren(tmp_path):
    throughput.become_subreaper()
    # The child starts a CPU-burning grandchild and exits at once; the grandchild is orphaned.
    burn = "import time\nt=time.process_time()\nwhile time.process_time()-t<0.6: pass\n"
    child = f"import subprocess,sys\nsubprocess.Popen([sys.executable,'-c',{burn!r}])\n"
    timing = throughput.timed_run([sys.executable, "-c", child], dict(), tmp_path / "log", timeout_s=60)
    assert timing.cpu_s >= 0.6


def test_timed_run_reports_failures_with_the_log(tmp_path):
    with pytest.raises(throughput.RunFailed, match="boom"):
        throughput.timed_run([sys.executable, "-c", "import sys; sys.stderr.write('boom'); sys.exit(3)"],
                             dict(), tmp_path / "log", timeout_s=60)


def test_median_by_cpu_picks_the_middle_run_and_lists_all():
    runs = [throughput.Measurement("x, 1 worker", 10, 5, wall_s=w, cpu_s=c) for w, c in [(9, 8.0), (3, 2.0), (5, 4.0)]]
    chosen = throughput.median_by_cpu(runs)
    assert (chosen.cpu_s, chosen.wall_s) == (4.0, 5)
    assert chosen.notes[0] == "median of 3 runs by CPU s; CPU s of all runs: 8.0, 2.0, 4.0; wall s: 9.0, 3.0, 5.0"
    two = [throughput.Measurement("y", 1, 1, wall_s=1, cpu_s=c) for c in (7.0, 6.0)]
    assert throughput.median_by_cpu(two).cpu_s == 6.0
    single = throughput.Measurement("z", 1, 1, wall_s=1, cpu_s=1)
    assert throughput.median_by_cpu([single]) is single and single.notes == []


DATATROVE_PYTHON = throughput.DATATROVE_VENV / "bin" / "python"


@pytest.mark.skipif(not DATATROVE_PYTHON.exists() or not throughput.BUNDLED_LID_MODEL.exists(),
                    reason="needs bench/.venv-datatrove (made by bench/throughput.py) and the bundled LID model")
def test_datatrove_language_filter_reads_chinese_articles_with_our_model(tmp_path, samples):
    # The 33 Chinese ground-truth articles: fed raw text, our model scored 31 of them below datatrove's 0.65.
    truth = samples / "web/html_groundtruth/magic-html-zh/article/base.zh-subset.json"
    script = f"""
import json, sys
from pathlib import Path
sys.path.insert(0, {str(throughput.BENCH)!r})
import datatrove_pipeline
from datatrove.data import Document
from datatrove.pipeline.filters import LanguageFilter
from datatrove_project_lid import ProjectModelLID
datatrove_pipeline.install_lid_model(Path({str(throughput.BUNDLED_LID_MODEL)!r}))
language_filter = LanguageFilter(languages=["en", "zh"])
language_filter.model = ProjectModelLID(["en", "zh"])
kept = unchanged = 0
texts = [entry["content"] for entry in json.load(open({str(truth)!r}, encoding="utf-8")).values()]
for i, text in enumerate(texts):
    doc = Document(text=text, id=str(i))
    kept += bool(language_filter.filter(doc)) and doc.metadata["language"] == "zh"
    unchanged += doc.text == text
print(json.dumps({{"docs": len(texts), "kept_as_zh": kept, "unchanged": unchanged}}))
"""
    env = dict(os.environ, HF_ASSETS_CACHE=str(tmp_path / "assets"), HF_HUB_OFFLINE="1")
    out = subprocess.run([str(DATATROVE_PYTHON), "-c", script], capture_output=True, text=True,
                         env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["docs"] == result["unchanged"] == 33
    assert result["kept_as_zh"] >= 30
    cached = list((tmp_path / "assets").rglob("*lid.176.bin*"))
    assert sorted(p.name.rsplit(".", 1)[-1] for p in cached) == ["bin", "completed"]


def test_runner_probe_counts_shared_chunks_once(monkeypatch):
    from types import SimpleNamespace

    from apache_beam.runners.portability.fn_api_runner import execution

    import runner_buffers

    first = execution.ListBuffer(None)
    first.append(b"x" * 100)
    first.append(b"y" * 20)
    copy = first.copy()          # what FnApiRunner hands a second consumer: the same chunks
    other = execution.ListBuffer(None)
    other.append(b"z" * 7)
    empty_queue = SimpleNamespace(_q=[])
    queued = SimpleNamespace(_q=[(("stage", 0), SimpleNamespace(data={"queued-input": copy}))])
    context = SimpleNamespace(pcoll_buffers={"a": first, "b": other},
                              queues=SimpleNamespace(ready_inputs=empty_queue, watermark_pending_inputs=queued))
    assert runner_buffers.held_buffers(context) == {"a": 120, "b": 7, "queued:queued-input": 0}
    assert runner_buffers.held_buffers(context, SimpleNamespace(data={"own": other})) == {
        "input:own": 7, "a": 120, "b": 0, "queued:queued-input": 0}


def test_runner_probe_reports_every_stage_of_a_real_run(monkeypatch):
    import io

    import apache_beam as beam
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner, fn_runner

    import runner_buffers

    monkeypatch.setattr(fn_runner.FnApiRunner, "_execute_bundle", fn_runner.FnApiRunner._execute_bundle)
    out = io.StringIO()
    runner_buffers.install_probe(out)
    with beam.Pipeline(runner=FnApiRunner()) as pipeline:
        (pipeline | beam.Create([(i % 3, "v" * 500) for i in range(3000)]) | "Group" >> beam.GroupByKey()
         | beam.MapTuple(lambda key, values: (key, len(list(values)))))
    lines = [line for line in out.getvalue().splitlines() if " held " in line]
    assert len(lines) >= 2 and any("Group/Read" in line for line in lines)
    # the grouping stage starts holding its input: 3,000 values of 500 bytes
    grouped = next(line for line in lines if "Group/Read" in line)
    assert 1.4 <= float(grouped.split(" held ")[1].split()[0]) < 2.0
    ends = [line for line in out.getvalue().splitlines() if " end: peak tree " in line]
    assert len(ends) == len(lines) and all(float(line.split("peak tree")[1].split()[0]) > 50 for line in ends)
