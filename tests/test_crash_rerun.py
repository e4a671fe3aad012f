"""Crash-safe reruns: a `wudao text` run killed with SIGKILL while it writes, then started again with the same
command, ends with exactly the records of an uninterrupted run; no partial file ever has a final name, stats.json
(the completion marker) exists only when every output is complete, and the rerun leaves no temporary files."""
from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipelines.run import sample_inputs

REPO = Path(__file__).resolve().parents[1]
MODES = {"in_process": [], "multi_processing": ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]}


def _command(out: Path, mode: str) -> list[str]:
    inputs = [arg for path in sample_inputs() for arg in ("--input", path)]
    return [sys.executable, "-m", "pipelines.cli", "text", *inputs, "--output", str(out), *MODES[mode],
            "--no-progress"]


def _start(out: Path, mode: str) -> subprocess.Popen:
    return subprocess.Popen(_command(out, mode), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # its own process group: SIGKILL reaches the Beam workers too


def _run(out: Path, mode: str) -> None:
    done = subprocess.run(_command(out, mode), cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


def _records(folder: Path) -> list[str]:
    """Every JSON line of every final part file, sorted; a truncated gzip raises (a partial file)."""
    lines = []
    for part in sorted(folder.glob("part-*")):
        with gzip.open(part, "rt", encoding="utf-8") as fh:
            lines += fh.read().splitlines()
    return sorted(lines)


def _outputs(out: Path) -> dict:
    stats = json.loads((out / "stats.json").read_text("utf-8"))
    for volatile in ("inputs", "output", "wall_seconds"):
        stats.pop(volatile, None)
    return {"corpus": _records(out / "corpus"), "rejects": _records(out / "rejects"), "stats": stats}


def _leftovers(out: Path) -> list[str]:
    return sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.name.endswith(".tmp") or "beam-temp" in p.name)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("reference")
    _run(out, "in_process")
    assert _leftovers(out) == []
    return _outputs(out)


def _kill_when(out: Path, mode: str, ready, timeout: float = 300) -> str:
    """Start a run, SIGKILL its whole process group as soon as `ready(out)` holds; returns what was seen."""
    proc = _start(out, mode)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            seen = ready(out)
            if seen:
                os.killpg(proc.pid, signal.SIGKILL)
                return seen
            if proc.poll() is not None:
                pytest.fail(f"the run ended (exit {proc.returncode}) before the kill point")
            time.sleep(0.005)
        pytest.fail("kill point never reached")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _writing_corpus(out: Path) -> str:
    """Beam's temporary files for the corpus exist: the sink is in the middle of writing."""
    return "beam-temp" if list((out / "corpus").glob("beam-temp-*/*")) else ""


def _first_final_part(out: Path) -> str:
    """Finalisation has begun: a part file has its final name."""
    return "final-part" if list((out / "corpus").glob("part-*")) or list((out / "rejects").glob("part-*")) else ""


def _assert_no_partial_final_files(out: Path, reference: dict) -> None:
    _records(out / "corpus"), _records(out / "rejects")  # every final file decompresses to its end
    if (out / "stats.json").exists():  # the marker promises a complete run
        assert _outputs(out) == reference


@pytest.mark.slow
@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("kill_point", [_writing_corpus, _first_final_part], ids=["mid-write", "mid-finalize"])
def test_killed_run_then_rerun_equals_uninterrupted(tmp_path, reference, mode, kill_point):
    out = tmp_path / "out"
    assert _kill_when(out, mode, kill_point)
    _assert_no_partial_final_files(out, reference)
    _run(out, mode)
    assert _outputs(out) == reference
    assert _leftovers(out) == []


@pytest.mark.slow
def test_rerun_over_a_crashed_runs_debris(tmp_path, reference):
    """What a crash can leave, planted by hand: a stale marker's temp, a truncated part under a temporary name,
    Beam temp folders, an extra final part from a run with more shards. The rerun must not mix any of it in."""
    out = tmp_path / "out"
    for sub in ("corpus/beam-temp-part-0123", "rejects/beam-temp-part-4567"):
        (out / sub).mkdir(parents=True)
        (out / sub / "0a1b2c").write_bytes(gzip.compress(b'{"id": "ghost"}\n')[:20])
    (out / "corpus" / "part-00007-of-00008.jsonl.gz").write_bytes(gzip.compress(b'{"id": "stale"}\n'))
    (out / "stats.json.tmp").write_text("{", "utf-8")
    _run(out, "in_process")
    assert _outputs(out) == reference
    assert _leftovers(out) == []


@pytest.mark.parametrize("kind", ["text", "image-text"])
def test_stats_marker_waits_for_every_sink(tmp_path, kind):
    """In the graph, WriteStats reads the finalised file names of every sink as side inputs, so no runner can
    write stats.json before all outputs have their final names."""
    import apache_beam as beam

    from cleaners.recipe import load_recipe
    from pipelines.image_text import build_image_text_pipeline
    from pipelines.text import build_text_pipeline

    pipeline = beam.Pipeline()
    if kind == "text":
        build_text_pipeline(pipeline, ["in/*.warc.gz"], str(tmp_path), load_recipe(None))
        sinks = {"WriteCorpus", "WriteRejects"}
    else:
        build_image_text_pipeline(pipeline, ["in/*.csv"], str(tmp_path), load_recipe(kind="image_text"))
        sinks = {"WriteIndex", "WriteRejects"}
    stats = [t for t in pipeline.transforms_stack[0].parts if t.full_label == "WriteStats"]
    assert len(stats) == 1
    side_producers = {si.pvalue.producer.full_label.split("/")[0] for si in stats[0].side_inputs}
    assert side_producers == sinks
    finalizers = {si.pvalue.producer.full_label for si in stats[0].side_inputs if si.pvalue.producer.full_label
                  .startswith("Write") and "Finalize" in si.pvalue.producer.full_label}
    assert finalizers == {f"{s}/Write/WriteImpl/FinalizeWrite" for s in sinks if s != "WriteIndex"}
