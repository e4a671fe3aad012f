"""The text, dedup, dialogue and image-text pipelines through Beam's PortableRunner give exactly the outputs of the
in-process runner.

PortableRunner is the path Flink and Spark take: the pipeline goes out as a Runner API proto to a job service
(Beam's own Python one here), DoFns and coders cross process boundaries pickled, and the SDK workers are started
by an external worker pool (`--environment_type=EXTERNAL`) in another working directory, so nothing may depend on
the submitting process's memory, environment or cwd. Every path is absolute. The worker pool starts workers as a
bare `python`, so the virtualenv's bin goes first on its PATH.

Compared: corpus and rejects records (as sorted lists), stats.json (minus `output`, the one field that names the
run's own folder), the image shards byte for byte with their index, and the Beam counters the runs report.
"""
from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Callable

import pytest

from pipelines.cli import main
from pipelines.run import run_dedup, run_image_text, run_text, sample_inputs

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
#: the bin folder of the interpreter running the tests (the virtualenv's, not the resolved base interpreter's)
PYTHON_BIN = Path(sys.executable).parent
START_DEADLINE_S = 90.0
STOP_TIMEOUT_S = 15.0


# ----------------------------------------------------------------------------------------- job service + pool

def _free_ports(n: int) -> list[int]:
    """`n` distinct ports the kernel says are free now (all bound at once, then released)."""
    sockets = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("localhost", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("localhost", port), timeout=1.0):
            return True
    except OSError:
        return False


def _tail(path: Path, chars: int = 6000) -> str:
    try:
        return path.read_text("utf-8", errors="replace")[-chars:]
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the service's process group (it and the SDK workers and helpers it started), then SIGKILL."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pass
    try:  # the group's stragglers (workers the pool started) go too, even after the leader exited
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if proc.poll() is None:
        proc.wait(STOP_TIMEOUT_S)


class Services:
    """A running job service and worker pool: their logs, the worker pool's cwd, and the pipeline flags."""

    def __init__(self, root: Path, job_port: int, pool_port: int):
        self.root, self.job_port, self.pool_port = root, job_port, pool_port
        self.job_log, self.pool_log = root / "job_service.log", root / "worker_pool.log"
        self.pool_cwd = root / "worker_cwd"
        self.args = ["--runner=PortableRunner", f"--job_endpoint=localhost:{job_port}",
                     "--environment_type=EXTERNAL", f"--environment_config=localhost:{pool_port}",
                     "--sdk_worker_parallelism=1"]

    def workers_started(self) -> int:
        return self.pool_log.read_text("utf-8", errors="replace").count("Starting worker with command")

    def logs(self) -> str:
        return (f"--- job service (port {self.job_port}) log tail:\n{_tail(self.job_log)}\n"
                f"--- worker pool (port {self.pool_port}) log tail:\n{_tail(self.pool_log)}")


@pytest.fixture(scope="module")
def services(tmp_path_factory) -> Services:
    root = tmp_path_factory.mktemp("portable_services")
    job_port, pool_port = _free_ports(2)
    svc = Services(root, job_port, pool_port)
    svc.pool_cwd.mkdir()
    (root / "job_cwd").mkdir()
    env = {k: v for k, v in os.environ.items() if k != "WUDAO_PROGRESS_DIR"}
    env["PATH"] = f"{PYTHON_BIN}{os.pathsep}{env.get('PATH', '')}"   # the pool runs workers as a bare `python`
    env["PYTHONUNBUFFERED"] = "1"
    with ExitStack() as stack:
        procs = []
        for name, argv, cwd, log in (
                ("job service", ["apache_beam.runners.portability.local_job_service_main", "--port", str(job_port)],
                 root / "job_cwd", svc.job_log),
                ("worker pool", ["apache_beam.runners.worker.worker_pool_main", "--service_port", str(pool_port)],
                 svc.pool_cwd, svc.pool_log)):
            out = stack.enter_context(open(log, "wb"))
            proc = subprocess.Popen([sys.executable, "-m", *argv], cwd=cwd, env=env, stdout=out,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
            stack.callback(_stop, proc)   # registered at once: stopped at teardown whatever happens below
            procs.append((name, proc))
        deadline = time.monotonic() + START_DEADLINE_S
        waiting = {"job service": job_port, "worker pool": pool_port}
        while waiting:
            for name, proc in procs:
                if proc.poll() is not None:
                    pytest.fail(f"the {name} exited with status {proc.returncode} before accepting connections\n"
                                f"{svc.logs()}")
            waiting = {name: port for name, port in waiting.items() if not _accepts(port)}
            if waiting and time.monotonic() > deadline:
                pytest.fail(f"not accepting connections after {START_DEADLINE_S:.0f} s: "
                            f"{', '.join(f'{n} on port {p}' for n, p in waiting.items())}\n{svc.logs()}")
            if waiting:
                time.sleep(0.2)
        yield svc


# ------------------------------------------------------------------------------------------- running and reading

@pytest.fixture
def results(monkeypatch) -> list:
    """The PipelineResult of every pipeline run in the test, in order (the CLI's `with beam.Pipeline()` drops it)."""
    import apache_beam as beam

    captured: list = []
    original = beam.Pipeline.run

    def run(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        if not any(r is result for r in captured):
            captured.append(result)
        return result

    monkeypatch.setattr(beam.Pipeline, "run", run)
    return captured


def _counters(result) -> dict[str, int]:
    """`namespace/name` -> committed value summed over steps (attempted where a runner commits none)."""
    totals: dict[str, int] = {}
    for c in result.metrics().query()["counters"]:
        value = c.committed if c.committed is not None else c.attempted
        key = f"{c.key.metric.namespace}/{c.key.metric.name}"
        totals[key] = totals.get(key, 0) + (value or 0)
    return totals


def _rows(folder: Path) -> list[str]:
    """Every record of folder/part-*.jsonl.gz as canonical JSON, sorted."""
    rows = []
    for path in sorted(folder.glob("part-*.jsonl.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            rows += [json.dumps(json.loads(line), sort_keys=True, ensure_ascii=False) for line in fh if line.strip()]
    return sorted(rows)


def _stats(out: Path) -> dict[str, Any]:
    stats = json.loads((out / "stats.json").read_text("utf-8"))
    assert stats.pop("output") == str(out)
    return stats


def _run_both(run: Callable[[str, list[str]], Any], tmp: Path, services: Services, results: list):
    """`run(output, beam_args)` in process and through PortableRunner; outputs, stats and counters of both."""
    reference, portable = tmp / "in_process", tmp / "portable"
    run(str(reference), [])
    started = services.workers_started()
    try:
        run(str(portable), services.args)
    except Exception as exc:
        raise AssertionError(f"the portable run failed: {exc}\n{services.logs()}") from exc
    assert len(results) == 2, results
    assert services.workers_started() > started, f"the worker pool started no SDK worker\n{services.logs()}"
    assert os.listdir(services.pool_cwd) == [], "a worker wrote into its working directory"
    return reference, portable, _counters(results[0]), _counters(results[1])


def _assert_same_records(reference: Path, portable: Path) -> None:
    for folder in ("corpus", "rejects"):
        expected, got = _rows(reference / folder), _rows(portable / folder)
        assert got == expected, f"{folder}/ differs: {len(expected)} records in process, {len(got)} portable"
    assert _stats(portable) == _stats(reference)


# ----------------------------------------------------------------------------------------------------- the tests

def test_text(services, results, tmp_path):
    inputs = sample_inputs()
    config = tmp_path / "recipe.yaml"
    config.write_text("read: {split_bytes: 40000}\n", encoding="utf-8")   # the 126 KB WARC is read as 4 splits
    reference, portable, counters_ref, counters = _run_both(
        lambda out, args: run_text(inputs, out, str(config), args), tmp_path, services, results)
    _assert_same_records(reference, portable)
    stats = _stats(reference)
    assert stats["totals"]["kept"] > 0 and stats["totals"]["dropped"] > 0
    assert any(s["dropped"] for s in stats["stages"] if s["stage"].endswith("_dedup"))   # the shuffles did work
    assert counters == counters_ref
    assert counters["wudao/files_read"] == len(inputs)
    assert counters["wudao/bytes_read"] == sum(os.path.getsize(p) for p in inputs)
    read = next(s for s in stats["stages"] if s["stage"] == "read")
    assert counters["wudao/records_read"] == counters["wudao/read|in"] == read["in"] == stats["totals"]["records_in"]


def _dedup_input(path: Path) -> None:
    """The sample corpus (pages.jsonl.gz) plus exact copies, near copies, a url duplicate, a footer line repeated
    in more documents than `lines.min_docs`, and broken lines: every dedup stage has something to drop."""
    with gzip.open(REPO / "pipelines" / "data" / "sample" / "pages.jsonl.gz", "rt", encoding="utf-8") as fh:
        pages = []
        for line in fh:
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict) and len(row.get("content") or "") > 200:
                pages.append(row)
    assert len(pages) >= 4
    rows: list[Any] = []
    footer = "本站所有文章版权归原作者所有，转载请注明出处。"
    for i, page in enumerate(pages):
        rows.append({**page, "id": f"copy-{i}", "url": f"https://mirror.example/{i}"})       # exact copy
        near = page["content"]
        cut = len(near) // 2
        rows.append({**page, "id": f"near-{i}", "url": f"https://near.example/{i}",
                     "content": near[:cut] + "啊" + near[cut + 1:]})                          # one character changed
    rows.append({"id": "url-old", "url": "https://news.example/a?utm_source=feed", "date": "2001-01-01",
                 "content": "An old capture of a page that was later rewritten from top to bottom."})
    rows.append({"id": "url-new", "url": "https://news.example/a", "date": "2024-01-01",
                 "content": "The newest capture of the same address, with entirely different words in it."})
    people = ["小明", "王老师", "李医生", "张师傅"]
    doings = ["喜欢在周末去公园散步看书", "每天早上六点起床跑步", "正在研究怎样种出更甜的西瓜"]
    for i, (who, what) in enumerate((p, d) for p in people for d in doings):   # 12 documents, one footer
        rows.append({"id": f"footer-{i}", "text": f"{who}{what}。\n{footer}"})
    rows += ["{broken", {"title": "no text"}]
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        for row in rows:
            fh.write((row if isinstance(row, str) else json.dumps(row, ensure_ascii=False)) + "\n")


def test_dedup(services, results, tmp_path):
    extra = tmp_path / "inputs" / "more.jsonl.gz"
    extra.parent.mkdir()
    _dedup_input(extra)
    inputs = [str(REPO / "pipelines" / "data" / "sample" / "pages.jsonl.gz"), str(extra)]
    reference, portable, counters_ref, counters = _run_both(
        lambda out, args: run_dedup(inputs, out, None, None, args), tmp_path, services, results)
    _assert_same_records(reference, portable)
    stats = _stats(reference)
    dropped = {s["stage"]: s["dropped"] for s in stats["stages"]}
    assert dropped["read"] and dropped["exact_dedup"] and dropped["minhash_dedup"], stats["stages"]
    assert dropped["url_dedup"], stats["stages"]
    line = next(s for s in stats["stages"] if s["stage"] == "line_dedup")
    assert line["dropped"] or line.get("counts"), line   # the footer went from the documents that had it
    assert counters == counters_ref
    assert counters["wudao/files_read"] == len(inputs)


def test_dialogue(services, results, tmp_path, capsys):
    """Through the command line, as the README says: `wudao dialogue --input ... --output DIR <portable flags>`."""
    inputs = sample_inputs("dialogue_sample")
    argv = ["dialogue", *[arg for path in inputs for arg in ("--input", path)]]
    reference, portable, counters_ref, counters = _run_both(
        lambda out, args: main([*argv, "--output", out, *args]), tmp_path, services, results)
    assert f"corpus:  {portable / 'corpus'}" in capsys.readouterr().out
    _assert_same_records(reference, portable)
    stats = _stats(reference)
    assert stats["totals"]["kept"] > 0 and stats["totals"]["dropped"] > 0
    assert counters == counters_ref
    assert counters["wudao/files_read"] == len(inputs)
    assert counters["wudao/bytes_read"] == sum(os.path.getsize(p) for p in inputs)


def _shards(out: Path) -> dict[str, Any]:
    """images/: every tar's members (name, bytes) in order, and shards.json."""
    shards: dict[str, Any] = {}
    for path in sorted((out / "images").glob("*.tar")):
        with tarfile.open(path) as tar:
            shards[path.name] = [(m.name, tar.extractfile(m).read()) for m in tar]
    shards["shards.json"] = json.loads((out / "images" / "shards.json").read_text("utf-8"))
    return shards


def test_image_text(services, results, tmp_path):
    from pipelines.image_demo import localized_url_list, sample_dir, serve_folder

    sample = sample_dir()
    config = tmp_path / "recipe.yaml"
    config.write_text("download: {threads: 4, timeout: 5, retries: 0}\noutput: {shard_size_bytes: 100000}\n",
                      encoding="utf-8")
    with serve_folder(os.path.join(sample, "served")) as base_url:   # one server (one port) for both runs
        urls = localized_url_list(sample, base_url, str(tmp_path / "inputs" / "urls.tsv"))
        inputs = [os.path.join(sample, "shapes-000.tar"), os.path.join(sample, "photos.parquet"), urls]
        reference, portable, counters_ref, counters = _run_both(
            lambda out, args: run_image_text(inputs, out, str(config), args), tmp_path, services, results)
    _assert_same_records(reference, portable)   # rejects/ and stats.json (no corpus/ here)
    shards = _shards(reference)
    assert len(shards) >= 3, list(shards)      # at least two tars and the index
    assert _shards(portable) == shards
    assert sorted(p.name for p in (portable / "images").iterdir()) == sorted(shards)
    stats = _stats(reference)
    assert shards["shards.json"]["samples"] == stats["totals"]["kept"] > 0
    assert counters == counters_ref
    assert counters["wudao/written"] == stats["totals"]["kept"]
    assert sum(n for key, n in counters.items() if key.endswith("/shards-written")) == len(shards) - 1


def test_relative_paths_mean_the_submitters_cwd(services, tmp_path, monkeypatch):
    """`wudao text --input page.html --output out` from some folder, the workers elsewhere (runs last: it may leave
    files in the worker pool's cwd, removed here)."""
    (tmp_path / "page.html").write_bytes((REPO / "pipelines" / "data" / "sample" / "standalone-page.html").read_bytes())
    monkeypatch.chdir(tmp_path)
    try:
        assert main(["text", "--input", "page.html", "--output", "out", *services.args]) == 0
        assert (tmp_path / "out" / "stats.json").is_file()
        assert os.listdir(services.pool_cwd) == []
    finally:
        for name in os.listdir(services.pool_cwd):
            path = services.pool_cwd / name
            shutil.rmtree(path) if path.is_dir() else path.unlink()
