"""Progress: per-process count files, their sum, the live line, and real runs whose totals match stats.json."""
from __future__ import annotations

import contextlib
import gzip
import io
import json
from collections import Counter
import multiprocessing
import os
import sys
import threading
from pathlib import Path

import pytest

from pipelines import progress


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def progress_dir(tmp_path, monkeypatch):
    folder = tmp_path / "progress"
    folder.mkdir()
    monkeypatch.setenv(progress.ENV, str(folder))
    return folder


def _child(counts: dict[str, int], times: int) -> None:
    for _ in range(times):
        progress.count(**counts)
    progress.flush()


def test_no_env_means_no_files(tmp_path, monkeypatch):
    monkeypatch.delenv(progress.ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    progress.count(records_read=3, kept=2, dropped=1)
    progress.flush()
    assert progress._current() is None
    assert os.listdir(tmp_path) == []


def test_processes_sum_to_exact_totals(progress_dir):
    progress.count(kept=5)  # the parent's own totals; forked children must not inherit them
    ctx = multiprocessing.get_context("fork")
    jobs = [({"records_read": 1, "kept": 1}, 40), ({"records_read": 1, "dropped": 1}, 25),
            ({"files_read": 1, "bytes_read": 1000}, 3)]
    procs = [ctx.Process(target=_child, args=job) for job in jobs]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0
    progress.flush()
    assert len(list(progress_dir.glob("*.json"))) == 4  # one file per process
    assert progress.read_totals(str(progress_dir)) == {"kept": 45, "records_read": 65, "dropped": 25,
                                                       "files_read": 3, "bytes_read": 3000}


def test_a_new_folder_starts_from_zero(tmp_path, monkeypatch):
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir(), second.mkdir()
    monkeypatch.setenv(progress.ENV, str(first))
    progress.count(kept=7)
    monkeypatch.setenv(progress.ENV, str(second))
    progress.count(kept=1)
    progress.flush()
    assert progress.read_totals(str(second)) == {"kept": 1}


def test_writes_are_throttled_until_flush(tmp_path):
    now = [100.0]
    reporter = progress.Reporter(str(tmp_path), interval=0.5, clock=lambda: now[0])
    on_disk = lambda: json.loads(Path(reporter.path).read_text())  # noqa: E731
    reporter.add({"kept": 1})  # the first count is written at once
    assert on_disk() == {"kept": 1}
    now[0] = 100.4
    reporter.add({"kept": 1})
    assert on_disk() == {"kept": 1}
    now[0] = 100.5
    reporter.add({"dropped": 1})
    assert on_disk() == {"kept": 2, "dropped": 1}
    now[0] = 100.6
    reporter.add({"kept": 3})
    assert on_disk() == {"kept": 2, "dropped": 1}
    reporter.flush()
    assert on_disk() == {"kept": 5, "dropped": 1}
    mtime = os.stat(reporter.path).st_mtime_ns
    os.utime(reporter.path, ns=(mtime - 10**9, mtime - 10**9))
    reporter.flush()  # nothing new: no rewrite
    assert os.stat(reporter.path).st_mtime_ns == mtime - 10**9


def test_files_are_replaced_whole(tmp_path, monkeypatch):
    seen = []
    real_replace = os.replace

    def checking_replace(src, dst):
        seen.append((json.loads(Path(src).read_text()), Path(dst).exists()))
        real_replace(src, dst)

    monkeypatch.setattr(progress.os, "replace", checking_replace)
    reporter = progress.Reporter(str(tmp_path), interval=0.0)
    reporter.add({"kept": 1})
    reporter.add({"kept": 1, "dropped": 2})
    assert seen == [({"kept": 1}, False), ({"kept": 2, "dropped": 2}, True)]
    assert sorted(os.listdir(tmp_path)) == [os.path.basename(reporter.path)]  # no temporary file left
    # a reader never counts a half-written temporary file, and skips a damaged one
    (tmp_path / "999-x.json.tmp").write_text('{"kept": 100')
    (tmp_path / "998-y.json").write_text("not json")
    (tmp_path / "997-z.json").write_text("[1, 2]")
    assert progress.read_totals(str(tmp_path)) == {"kept": 2, "dropped": 2}


def test_track_file_counts_records_and_bytes_by_position(progress_dir):
    stream = io.BytesIO(b"x" * 100)

    def records():
        for _ in range(3):
            yield stream.read(30)

    assert list(progress.track_file(records(), stream, 100)) == [b"x" * 30] * 3
    progress.flush()
    assert progress.read_totals(str(progress_dir)) == {"records_read": 3, "bytes_read": 100, "files_read": 1}


def test_track_file_counts_a_failed_file_as_read(progress_dir):
    stream = io.BytesIO(b"y" * 50)

    def records():
        yield stream.read(10)
        raise ValueError("reader bug")

    with pytest.raises(ValueError):
        list(progress.track_file(records(), stream, 50))
    progress.flush()
    assert progress.read_totals(str(progress_dir)) == {"records_read": 1, "bytes_read": 50, "files_read": 1}


def test_corpus_reader_counts_records_files_and_bytes(progress_dir, tmp_path):
    from apache_beam.io.filesystem import FileMetadata

    from pipelines.dedup.corpus import ReadCorpus

    good = tmp_path / "a.jsonl"
    good.write_text('{"content": "one"}\n\n{"content": "two"}\nnot json\n', encoding="utf-8")
    damaged = tmp_path / "b.jsonl.gz"
    lines = "".join(json.dumps({"content": f"line {i} {i * 7919 % 104729}"}) + "\n" for i in range(20000))
    damaged.write_bytes(gzip.compress(lines.encode())[:-20])   # a truncated gzip: its last lines are lost
    reader = ReadCorpus()
    outputs = []
    for path in (good, damaged):
        outputs += list(reader.process(FileMetadata(str(path), path.stat().st_size)))
    reader.finish_bundle()
    rejects = [o.value for o in outputs if getattr(o, "tag", None) == "rejects"]
    records = [o for o in outputs if isinstance(o, dict)]
    per_line = [r for r in rejects if r["reason"] == "bad-json"]
    assert len(per_line) == 1 and any(r["reason"].startswith("damaged:") for r in rejects)
    totals = progress.read_totals(str(progress_dir))
    # every line read counts once (the blank line is not a record); the damaged tail is not a record read;
    # every reject counts as dropped (pipelines.ledger feeds the live line)
    assert totals == {"files_read": 2, "bytes_read": good.stat().st_size + damaged.stat().st_size,
                      "records_read": len(records) + len(per_line), "dropped": len(rejects)}
    assert 2 + 1000 < len(records) < 2 + 20000


def test_describe_names_every_count():
    totals = {"files_read": 2, "bytes_read": 1_500_000, "records_read": 7, "kept": 4, "dropped": 3, "written": 4}
    assert progress.describe(totals, 3, 2_000_000) == \
        "files 2/3 | records 7 | kept 4 | dropped 3 | written 4 | 1.5/2.0 MB"
    assert progress.describe({}, 0, 0) == "files 0 | records 0 | kept 0 | dropped 0 | 0.0 MB"


def test_display_renders_summed_totals_to_a_terminal(tmp_path):
    for counts in ({"files_read": 1, "bytes_read": 1_000_000, "records_read": 5, "kept": 4, "dropped": 1},
                   {"files_read": 1, "bytes_read": 500_000, "records_read": 2, "dropped": 2}):
        progress.Reporter(str(tmp_path)).add(counts)
    stream = FakeTty()
    display = progress.Display(str(tmp_path), stream, files_total=3, bytes_total=2_000_000)
    assert display.update() == {"files_read": 2, "bytes_read": 1_500_000, "records_read": 7, "kept": 4,
                                "dropped": 3}
    display.close()
    last = stream.getvalue().rstrip("\n").split("\r")[-1]
    assert last.startswith("wudao: files 2/3 | records 7 | kept 4 | dropped 3 | 1.5/2.0 MB  75% read [")


def test_live_on_a_terminal_counts_and_cleans_up(tmp_path, monkeypatch):
    monkeypatch.delenv(progress.ENV, raising=False)
    monkeypatch.setattr(progress, "enabled", True)
    data = tmp_path / "in.txt"
    data.write_bytes(b"z" * 2_000_000)
    stream = FakeTty()
    with progress.live([str(data)], stream=stream) as handle:
        folder = os.environ[progress.ENV]
        assert handle.thread is not None and handle.thread.is_alive()
        progress.count(files_read=1, bytes_read=2_000_000, records_read=9, kept=6, dropped=3)
    assert handle.totals == {"files_read": 1, "bytes_read": 2_000_000, "records_read": 9, "kept": 6, "dropped": 3}
    assert not handle.thread.is_alive()
    assert progress.ENV not in os.environ and not os.path.exists(folder)
    assert "wudao: files 1/1 | records 9 | kept 6 | dropped 3 | 2.0/2.0 MB 100% read [" in stream.getvalue()


@pytest.mark.parametrize("stream, enabled, show", [(io.StringIO(), True, True), (FakeTty(), False, True),
                                                   (FakeTty(), True, False)])
def test_live_is_quiet_off_a_terminal_or_when_turned_off(monkeypatch, stream, enabled, show):
    monkeypatch.delenv(progress.ENV, raising=False)
    monkeypatch.setattr(progress, "enabled", enabled)
    threads = threading.active_count()
    with progress.live(["nothing-*"], stream=stream, show=show) as handle:
        assert progress.ENV not in os.environ
        assert threading.active_count() == threads
        progress.count(kept=1)
    assert handle.thread is None and handle.totals == {}
    assert stream.getvalue() == ""


def test_progress_errors_never_fail_the_run_but_run_errors_pass_through(monkeypatch):
    monkeypatch.delenv(progress.ENV, raising=False)
    monkeypatch.setattr(progress, "enabled", True)

    def broken(*args, **kwargs):
        raise RuntimeError("no display")

    monkeypatch.setattr(progress, "Display", broken)
    with progress.live(["nothing-*"], stream=FakeTty()) as handle:
        progress.count(kept=1)
    assert handle.totals == {} and progress.ENV not in os.environ
    with pytest.raises(KeyError), progress.live(["nothing-*"], stream=FakeTty()):
        raise KeyError("from the pipeline")
    assert progress.ENV not in os.environ


def test_the_pipeline_commands_take_no_progress():
    from pipelines.cli import build_parser

    parser = build_parser()
    for argv in (["text", "--input", "x", "--output", "y"], ["dedup", "--input", "x", "--output", "y"],
                 ["dialogue", "--input", "x", "--output", "y"], ["image-text", "--input", "x", "--output", "y"],
                 ["demo"]):
        assert parser.parse_args(argv).no_progress is False
        assert parser.parse_args([*argv, "--no-progress"]).no_progress is True


# -- real runs ------------------------------------------------------------------------------------------------


def _corpus(folder: Path) -> list[str]:
    rows = []
    for path in sorted((folder / "corpus").glob("part-*.jsonl.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            rows.extend(line for line in fh if line.strip())
    return sorted(rows)


def _run_on_a_terminal(monkeypatch, run, inputs: list[str], output: Path, beam_args: list[str]
                       ) -> tuple[dict, dict[str, int]]:
    """`run` (run_text, run_dialogue...) with a terminal stderr; returns stats and the progress line's totals."""
    handles = []
    real_live = progress.live

    @contextlib.contextmanager
    def spy(*args, **kwargs):
        with real_live(*args, **kwargs) as handle:
            handles.append(handle)
            yield handle

    monkeypatch.setattr(progress, "live", spy)
    monkeypatch.setattr(progress, "enabled", True)
    monkeypatch.setattr(sys, "stderr", FakeTty())
    stats = run(inputs, str(output), None, beam_args)
    monkeypatch.undo()  # the real stderr and live() again
    assert len(handles) == 1 and handles[0].display is not None
    return stats, handles[0].totals


def _expected(stats: dict, inputs: list[str], kept: int) -> dict[str, int]:
    """What the line must end with: files and bytes = the whole input; records = the read stage's in;
    dropped = every drop of every stage (`pipelines.ledger` counts them); `kept` as the test works it out."""
    stages = {s["stage"]: s for s in stats["stages"]}
    return {"files_read": len(inputs), "bytes_read": sum(os.path.getsize(p) for p in inputs),
            "records_read": stages["read"]["in"], "kept": kept, "dropped": stats["totals"]["dropped"]}


@pytest.mark.slow
@pytest.mark.parametrize("beam_args", [[], ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]],
                         ids=["in-process", "multi-processing"])
def test_text_run_progress_matches_stats(monkeypatch, tmp_path, beam_args):
    from cleaners.recipe import load_recipe
    from cleaners.runner import RecipeRunner
    from pipelines.run import run_text, sample_inputs

    stats, totals = _run_on_a_terminal(monkeypatch, run_text, sample_inputs(), tmp_path / "with", beam_args)
    recipe = RecipeRunner(load_recipe(None)).stages()  # read, extract, the recipe's steps
    dedup_dropped = sum(s["dropped"] for s in stats["stages"] if s["stage"] not in recipe)
    # kept = passed the recipe = written + dropped by the dedup stages after it
    assert totals == _expected(stats, sample_inputs(), kept=stats["totals"]["kept"] + dedup_dropped)
    assert dedup_dropped > 0 and totals["dropped"] > 0 and stats["totals"]["kept"] > 0
    assert progress.ENV not in os.environ
    if not beam_args:  # progress never changes outputs
        plain = run_text(sample_inputs(), str(tmp_path / "without"), None, [])
        assert plain["stages"] == stats["stages"]
        assert _corpus(tmp_path / "without") == _corpus(tmp_path / "with")


@pytest.mark.slow
def test_remote_runners_get_the_same_numbers_as_beam_counters(monkeypatch, tmp_path):
    """Without the progress folder (as on a remote worker) the progress counts and every ledger count of
    stats.json are Beam counters `wudao/...`, the one namespace."""
    import apache_beam as beam
    from apache_beam.metrics.metric import MetricsFilter

    from cleaners.recipe import load_recipe
    from pipelines.run import pipeline_options, sample_inputs
    from pipelines.text import build_text_pipeline

    monkeypatch.delenv(progress.ENV, raising=False)
    pipeline = beam.Pipeline(options=pipeline_options([]))
    inputs = sample_inputs()
    build_text_pipeline(pipeline, inputs, str(tmp_path), load_recipe(None))
    result = pipeline.run()
    result.wait_until_finish()
    assert {c.key.metric.namespace for c in result.metrics().query()["counters"]} == {"wudao"}
    counters: Counter = Counter()       # a counter is kept per step: sum each name over the steps
    for c in result.metrics().query(MetricsFilter().with_namespace("wudao"))["counters"]:
        counters[c.key.metric.name] += c.committed
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert counters["files_read"] == len(inputs)
    assert counters["bytes_read"] == sum(os.path.getsize(p) for p in inputs)
    assert counters["records_read"] == counters["read|in"] == stats["totals"]["records_in"]
    assert counters["dropped"] == sum(n for name, n in counters.items() if "|drop|" in name) \
        == stats["totals"]["dropped"]
    assert counters["write|out"] == stats["totals"]["kept"]
    for stage in stats["stages"]:
        for reason, n in stage["dropped_by_reason"].items():
            assert counters[f"{stage['stage']}|drop|{reason}"] == n


@pytest.mark.slow
def test_dialogue_run_progress_matches_stats(monkeypatch, tmp_path):
    from pipelines.run import run_dialogue, sample_inputs

    inputs = sample_inputs("dialogue_sample")
    stats, totals = _run_on_a_terminal(monkeypatch, run_dialogue, inputs, tmp_path / "out", [])
    scored = next(s for s in stats["stages"] if s["stage"] == "dialogue_quality")   # the last per-session stage
    assert totals == _expected(stats, inputs, kept=scored["out"])
    assert totals["dropped"] > 0


@pytest.mark.slow
def test_image_text_run_progress_matches_stats(monkeypatch, tmp_path):
    from pipelines.run import run_image_text, sample_inputs

    inputs = [p for p in sample_inputs("image_sample") if p.endswith((".parquet", ".tar"))]  # images inside
    stats, totals = _run_on_a_terminal(monkeypatch, run_image_text, inputs, tmp_path / "out", [])
    written = totals.pop("written")
    image = next(s for s in stats["stages"] if s["stage"] == "image")
    assert totals == _expected(stats, inputs, kept=image["out"])
    assert written == stats["totals"]["kept"] > 0
