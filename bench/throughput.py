"""Side-by-side throughput of `wudao text` and datatrove's FineWeb-style pipeline on the same WARC input.

    .venv/bin/python bench/throughput.py                 # 2000 docs, all four runs, writes the table
    .venv/bin/python bench/throughput.py --only datatrove  # just datatrove's two columns

Steps: (1) make bench/.venv-datatrove (python3 -m venv, pip install datatrove[processing]==0.10.1 plus the
few packages its WarcReader, JsonlWriter and English word splitter import; never the project's venv, since
datatrove pins trafilatura < 1.12); (2) write the input with bench/make_warc.py; (3) run datatrove with
LocalPipelineExecutor tasks=workers=1 and =2, and `wudao text` with Beam's FnApiRunner in-process and with
--direct_running_mode=multi_processing --direct_num_workers=2, each as a subprocess; (4) print a Markdown
table and write it to bench/results/throughput.md.

CPU time is user+system time of the whole process tree: this process makes itself a child subreaper
(Linux prctl PR_SET_CHILD_SUBREAPER), so workers that outlive their parent (datatrove's forkserver pool
and trafilatura sandbox, Beam's worker processes) are re-parented here and reaped, and their CPU time
lands in getrusage(RUSAGE_CHILDREN). docs/s per core = docs in / CPU seconds.
"""
from __future__ import annotations

import argparse
import ctypes
import gzip
import json
import os
import platform
import resource
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))
import make_warc  # noqa: E402  (sibling module; bench/ is not a package)

DATATROVE_VENV = BENCH / ".venv-datatrove"
#: datatrove[processing] alone cannot run this pipeline: WarcReader imports warcio, cchardet and magic
#: (datatrove's heavier [io] extra), JsonlWriter imports orjson, and the English word splitter used by the
#: Gopher/C4/FineWeb filters is spaCy's blank "en" (no model download); LanguageFilter resolves its model's
#: https URL through fsspec, which imports aiohttp even when the file is already cached. Versions: those
#: that resolved here. trafilatura 1.11 imports lxml.html.clean, which lxml 6 moved to lxml_html_clean: without
#: it every page dies in datatrove's extraction sandbox and is counted as a timeout.
DATATROVE_REQUIREMENTS = [
    "datatrove[processing]==0.10.1",
    "warcio==1.8.1",
    "faust-cchardet==3.2.0",
    "python-magic==0.4.27",
    "orjson==3.13.0",
    "spacy==3.8.18",
    "aiohttp==3.14.5",
    "lxml_html_clean==0.4.6",
    "jieba==0.42.1",          # datatrove's cmn_Hani word splitting (bench/minhash_signatures.py)
]
BUNDLED_LID_MODEL = REPO / "cleaners" / "data" / "lid" / "lid_zh_en.ftz"
PROJECT_PACKAGES = ["cleaners", "pipelines", "tokenizer", "shards"]
WORK = BENCH / "work"
RESULTS = BENCH / "results" / "throughput.md"
PR_SET_CHILD_SUBREAPER = 36
DATATROVE_SETUP_NOTES = [
    "datatrove runs its FineWeb recipe (examples/fineweb.py) without URLFilter and exclusion writers; "
    "Trafilatura(favour_precision=True, deduplicate=False): datatrove's default deduplicate=True blanks "
    "paragraphs it has seen before, which on this input of repeated pages emptied about half of them "
    "(see bench/datatrove_pipeline.py); trafilatura's default, used by the wudao side, is False",
    "the LID model is fed the normalised line it was trained on (first 2000 chars, lowercased, CJK characters "
    "split), as on the wudao side (bench/datatrove_project_lid.py); datatrove's threshold (0.65) and label "
    "handling are unchanged. Fed raw text, it scored almost every Chinese page below 0.65",
    "datatrove's Gopher/C4/FineWeb filters are English-configured (spaCy blank 'en' word splitting) and see "
    "the Chinese pages too; the wudao recipe routes rules per language, so docs kept differ by design",
    "docs in = WARC response records in the input, the same for both sides; docs/s per core = docs in / CPU s",
]


@dataclass
class Measurement:
    """One benchmarked run: documents in and kept, wall and CPU seconds of its whole process tree."""

    label: str
    docs_in: int
    docs_kept: int
    wall_s: float
    cpu_s: float
    notes: list[str] = field(default_factory=list)

    @property
    def docs_per_cpu_s(self) -> float:
        return self.docs_in / self.cpu_s if self.cpu_s > 0 else 0.0

    @property
    def docs_per_wall_s(self) -> float:
        return self.docs_in / self.wall_s if self.wall_s > 0 else 0.0


class RunFailed(RuntimeError):
    """A benchmarked command exited non-zero; the message carries the tail of its output."""


def become_subreaper() -> bool:
    """Adopt orphaned descendants so their CPU time is counted; False where the OS cannot (non-Linux)."""
    if platform.system() != "Linux":
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def reap_orphans(deadline_s: float = 30.0) -> int:
    """Wait for adopted descendants still running after the main child exited; return how many."""
    reaped = 0
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return reaped
        if pid == 0:
            time.sleep(0.05)
        else:
            reaped += 1
    return reaped


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def machine_busy_cpu_s() -> float | None:
    """CPU seconds all processes on the machine have used since boot (/proc/stat), None off Linux."""
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            fields = [int(x) for x in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


@dataclass
class Timing:
    stdout: str
    wall_s: float
    cpu_s: float                 # the command and all its descendants
    foreign_cpu_s: float | None  # everything else on the machine during the run (other jobs inflate wall time)


def timed_run(cmd: list[str], env: dict[str, str], log_path: Path, timeout_s: float) -> Timing:
    """Run `cmd` to completion, stderr to `log_path`; its wall time and the CPU time of its whole tree."""
    cpu_before, busy_before = children_cpu_s(), machine_busy_cpu_s()
    started = time.perf_counter()
    with open(log_path, "w", encoding="utf-8") as log:
        try:
            proc = subprocess.run(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=log,
                                  text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired as exc:
            raise RunFailed(f"timed out after {timeout_s:.0f} s: {shlex.join(cmd)} (log: {log_path})") from exc
    wall = time.perf_counter() - started
    reap_orphans()
    cpu = children_cpu_s() - cpu_before
    busy_after = machine_busy_cpu_s()
    foreign = None if busy_before is None or busy_after is None else max(0.0, busy_after - busy_before - cpu)
    if proc.returncode != 0:
        tail = log_path.read_text("utf-8", "replace")[-3000:]
        raise RunFailed(f"exit {proc.returncode}: {shlex.join(cmd)}\n--- {log_path} (tail) ---\n{tail}")
    return Timing(proc.stdout, wall, cpu, foreign)


def ensure_datatrove_venv(venv: Path = DATATROVE_VENV) -> Path:
    """The datatrove venv's python, creating the venv and installing DATATROVE_REQUIREMENTS if needed."""
    python = venv / "bin" / "python"
    marker = venv / ".bench-requirements"
    wanted = "\n".join(DATATROVE_REQUIREMENTS) + "\n"
    if python.exists() and marker.exists() and marker.read_text("utf-8") == wanted:
        return python
    print(f"creating {venv} (python3 -m venv; pip install {' '.join(DATATROVE_REQUIREMENTS)})", file=sys.stderr)
    subprocess.run([shutil.which("python3") or "python3", "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", *DATATROVE_REQUIREMENTS], check=True)
    marker.write_text(wanted, "utf-8")
    return python


def train_dev_lid_model(path: Path, samples: Path) -> Path:
    """A throwaway zh/en fastText model from the corpus samples, for when the bundled one is missing.

    Only for developing the benchmark: numbers taken with it are marked in the table's notes.
    """
    import fasttext

    lines = []
    for jsonl in sorted((samples / "en_text").glob("*.jsonl")):
        for row in jsonl.read_text("utf-8").splitlines():
            for para in json.loads(row).get("text", "").split("\n"):
                if len(para.split()) >= 5:
                    lines.append("__label__en " + " ".join(para.split()))
    for row in (samples / "zh_text" / "thucnews_titles" / "test.txt").read_text("utf-8").splitlines():
        title = row.split("\t", 1)[0].strip()
        if title:
            lines.append("__label__zh " + title)
    path.parent.mkdir(parents=True, exist_ok=True)
    train_file = path.with_suffix(".train.txt")
    train_file.write_text("\n".join(lines) + "\n", "utf-8")
    model = fasttext.train_supervised(str(train_file), dim=16, minn=1, maxn=3, epoch=5, wordNgrams=1,
                                      bucket=200000, thread=1, seed=0, verbose=0)
    model.save_model(str(path))
    return path


def count_jsonl_gz_records(folder: Path) -> int:
    """Lines in every *.jsonl.gz under `folder` (rejects excluded)."""
    total = 0
    for part in sorted(folder.rglob("*.jsonl.gz")):
        if "reject" in str(part.relative_to(folder)):
            continue
        with gzip.open(part, "rb") as fh:
            total += sum(1 for line in fh if line.strip())
    return total


def _label(side: str, workers: int) -> str:
    return f"{side}, {workers} worker{'s' if workers > 1 else ''}"


def _timing_notes(timing: Timing) -> list[str]:
    if timing.foreign_cpu_s is None:
        return []
    return [f"other processes on the machine used {timing.foreign_cpu_s:.1f} CPU s during this run "
            f"({timing.foreign_cpu_s / timing.wall_s:.2f} cores on average): wall figures are inflated by that much"]


def run_datatrove(python: Path, input_dir: Path, docs_in: int, workers: int, lid_model: Path, languages: str,
                  timeout_s: float) -> Measurement:
    """datatrove with LocalPipelineExecutor(tasks=workers, workers=workers)."""
    out, logs = WORK / f"out-datatrove-{workers}w", WORK / f"logs-datatrove-{workers}w"
    env = dict(os.environ, HF_ASSETS_CACHE=str(WORK / "datatrove-assets"), HF_HUB_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false")
    cmd = [str(python), str(BENCH / "datatrove_pipeline.py"), "--input", str(input_dir), "--output", str(out),
           "--logs", str(logs), "--lid-model", str(lid_model), "--languages", languages,
           "--tasks", str(workers), "--workers", str(workers)]
    timing = timed_run(cmd, env, WORK / f"datatrove-{workers}w.log", timeout_s)
    summary = json.loads(timing.stdout.strip().splitlines()[-1])
    kept = count_jsonl_gz_records(out)
    notes = _timing_notes(timing) + [f"{s['name']}: {s['stats']}" for s in summary["steps"]]
    if kept != summary["docs_written"]:
        notes.append(f"output has {kept} records, datatrove's writer counted {summary['docs_written']}")
    return Measurement(_label("datatrove", workers), docs_in, kept, timing.wall_s, timing.cpu_s, notes)


def run_ours(python: str, input_dir: Path, docs_in: int, workers: int, timeout_s: float) -> Measurement:
    """`wudao text` on Beam's FnApiRunner: in-process for 1 worker, multi_processing for more."""
    out = WORK / f"out-wudao-{workers}w"
    shutil.rmtree(out, ignore_errors=True)
    cmd = [python, "-m", "pipelines.cli", "text", "--input", str(input_dir / "*.warc.gz"), "--output", str(out),
           "--runner", "FnApiRunner"]
    if workers > 1:
        cmd += ["--direct_running_mode=multi_processing", f"--direct_num_workers={workers}"]
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    # byte-compiled, as `make install` leaves the project and pip leaves datatrove's venv (where
    # PYTHONDONTWRITEBYTECODE is set, every process would otherwise compile the project's modules anew)
    subprocess.run([python, "-m", "compileall", "-q", *PROJECT_PACKAGES], cwd=REPO, env=env, check=True,
                   stdout=subprocess.DEVNULL)
    timing = timed_run(cmd, env, WORK / f"wudao-{workers}w.log", timeout_s)
    kept = count_jsonl_gz_records(out / "corpus")
    notes = _timing_notes(timing)
    stats_path = out / "stats.json"
    if stats_path.exists():
        stats = json.loads(stats_path.read_text("utf-8"))
        totals = stats.get("totals", {})
        notes.append(f"stats.json totals: {totals}")
        for stage in stats.get("stages", []):
            if stage.get("dropped"):
                notes.append(f"{stage.get('stage')}: {stage.get('dropped_by_reason')}")
        if totals.get("kept") is not None and int(totals["kept"]) != kept:
            notes.append(f"output has {kept} records, stats.json says kept={totals['kept']}")
    else:
        notes.append(f"no stats.json in {out}")
    return Measurement(_label("wudao text", workers), docs_in, kept, timing.wall_s, timing.cpu_s, notes)


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what `platform` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def package_versions(python: str | Path, names: list[str]) -> str:
    """'name version, ...' as installed for `python`; 'unknown' where it cannot tell."""
    code = ("import importlib.metadata as m, sys\n"
            "for n in sys.argv[1:]:\n"
            "    try: print(n, m.version(n))\n"
            "    except m.PackageNotFoundError: print(n, 'missing')\n")
    try:
        out = subprocess.run([str(python), "-c", code, *names], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return ", ".join(out.stdout.split("\n")[:len(names)]) if out.returncode == 0 else "unknown"


def median_by_cpu(results: list[Measurement]) -> Measurement:
    """The run with the median CPU time (the lower middle one for an even count), noting all runs' times."""
    ordered = sorted(results, key=lambda m: m.cpu_s)
    chosen = ordered[(len(ordered) - 1) // 2]
    if len(results) > 1:
        chosen.notes.insert(0, f"median of {len(results)} runs by CPU s; CPU s of all runs: "
                               + ", ".join(f"{m.cpu_s:.1f}" for m in results)
                               + "; wall s: " + ", ".join(f"{m.wall_s:.1f}" for m in results))
    return chosen


def render_table(rows: list[Measurement], manifest: dict, command: str, notes: list[str],
                 machine: str | None = None) -> str:
    """The Markdown report: one row per run, ratios against datatrove with the same worker count."""
    baseline = {row.label.split(", ")[1]: row for row in rows if row.label.startswith("datatrove")}
    lines = [
        "# Throughput: `wudao text` vs datatrove (FineWeb-style pipeline)",
        "",
        f"Input: {manifest['responses']} WARC response records ({manifest['distinct_pages']} distinct real pages: "
        + ", ".join(f"{n} {k}" for k, n in manifest["by_origin"].items())
        + f") in {len(manifest['shards'])} WARC.gz files, {sum(s['bytes'] for s in manifest['shards']) / 1e6:.1f} MB.",
        f"Machine: {machine or f'{os.cpu_count()} cores'}.",
        "",
        "| run | docs in | docs kept | wall s | CPU s | docs/s per core | wall docs/s "
        "| ratio vs datatrove (per core) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        base = baseline.get(row.label.split(", ")[1])
        ratio = (f"{row.docs_per_cpu_s / base.docs_per_cpu_s:.2f}x"
                 if base is not None and base.docs_per_cpu_s > 0 else "n/a")
        lines.append(f"| {row.label} | {row.docs_in} | {row.docs_kept} | {row.wall_s:.1f} | {row.cpu_s:.1f} | "
                     f"{row.docs_per_cpu_s:.1f} | {row.docs_per_wall_s:.1f} | {ratio} |")
    lines += ["", "Rerun:", "", "```", command, "```", ""]
    if notes:
        lines += ["Notes:", ""] + [f"- {note}" for note in notes] + [""]
    for row in rows:
        if row.notes:
            lines += [f"{row.label}:", ""] + [f"- {note}" for note in row.notes] + [""]
    return "\n".join(lines)


def resolve_lid_model(given: Path | None, samples: Path) -> tuple[Path, str | None]:
    """The fastText model both sides use, and a note when it is a throwaway development model."""
    if given is not None:
        if not given.is_file():
            raise SystemExit(f"--lid-model {given} does not exist")
        return given, None
    if BUNDLED_LID_MODEL.is_file():
        return BUNDLED_LID_MODEL, None
    dev = WORK / "dev-lid.ftz"
    if not dev.exists():
        train_dev_lid_model(dev, samples)
    return dev, (f"{BUNDLED_LID_MODEL.relative_to(REPO)} did not exist yet: datatrove's LanguageFilter used a "
                 "throwaway zh/en model trained on the corpus samples (bench/work/dev-lid.ftz)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=2000, help="WARC response records in the input (default 2000)")
    parser.add_argument("--shards", type=int, default=4, help="WARC.gz files the input is split into (default 4)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--python", default=sys.executable,
                        help="interpreter of the project's venv, runs `-m pipelines.cli text` (default: this one)")
    parser.add_argument("--lid-model", type=Path, default=None,
                        help="fastText LID model for datatrove's LanguageFilter "
                             f"(default {BUNDLED_LID_MODEL.relative_to(REPO)})")
    parser.add_argument("--languages", default="en,zh", help="languages datatrove's LanguageFilter keeps")
    parser.add_argument("--repeat", type=int, default=1, help="runs per column; the table shows the median (default 1)")
    parser.add_argument("--only", choices=["datatrove", "wudao"], help="run one side only")
    parser.add_argument("--samples", type=Path, default=make_warc.DEFAULT_SAMPLES)
    parser.add_argument("--timeout", type=float, default=900, help="seconds allowed per run (default 900)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="Markdown file to write")
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.docs < 1 or args.shards < 1:
        parser.error("--repeat, --docs and --shards must be at least 1")

    WORK.mkdir(parents=True, exist_ok=True)
    notes = []
    if not become_subreaper():
        notes.append("could not become a child subreaper: CPU time of orphaned worker processes may be missing")
    manifest = make_warc.build_input(WORK / "input", args.docs, args.shards, args.seed, args.samples)
    input_dir = WORK / "input"
    dt_python = lid_model = None
    if args.only != "wudao":
        dt_python = ensure_datatrove_venv()
        lid_model, lid_note = resolve_lid_model(args.lid_model, args.samples)
        notes += [lid_note] if lid_note else []
        notes.append(f"datatrove's LanguageFilter ran fastText model {lid_model.name} (installed where datatrove "
                     "caches lid.176.bin, which cannot be downloaded here), keeping " + args.languages)
        notes += DATATROVE_SETUP_NOTES
    runs: dict[str, list[Measurement]] = {}
    failures: list[str] = []
    for _ in range(args.repeat):   # repeats interleave, so slow drifts in machine load hit every column alike
        for workers in (1, 2):
            batch = []
            if dt_python is not None:
                batch.append(lambda: run_datatrove(dt_python, input_dir, manifest["responses"], workers, lid_model,
                                                   args.languages, args.timeout))
            if args.only != "datatrove":
                batch.append(lambda: run_ours(args.python, input_dir, manifest["responses"], workers, args.timeout))
            for run in batch:
                try:
                    result = run()
                except RunFailed as exc:   # report it and go on: the other columns are still worth having
                    print(f"FAILED: {exc}", file=sys.stderr)
                    failures.append(str(exc).splitlines()[0])
                    continue
                runs.setdefault(result.label, []).append(result)
                print(f"done: {result.label}: {result.wall_s:.1f} s wall, {result.cpu_s:.1f} s CPU", file=sys.stderr)
    rows = [median_by_cpu(results) for results in runs.values()]
    command = shlex.join([".venv/bin/python", "bench/throughput.py", *(argv if argv is not None else sys.argv[1:])])
    versions = []
    if dt_python is not None:
        versions.append(
            "datatrove side: "
            f"{package_versions(dt_python, ['datatrove', 'trafilatura', 'spacy', 'fasttext-numpy2-wheel'])}")
    if args.only != "datatrove":
        versions.append("wudao side: "
                        f"{package_versions(args.python, ['apache-beam', 'trafilatura', 'fasttext-numpy2'])}")
    notes = versions + notes + [f"FAILED run: {failure}" for failure in failures]
    machine = f"{os.cpu_count()} cores, {cpu_model()}, {platform.system()}, Python {platform.python_version()}"
    report = render_table(rows, manifest, command, notes, machine)
    print(report)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(report, "utf-8")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
