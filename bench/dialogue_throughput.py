#!/usr/bin/env python
"""Dialogue pipeline: sessions per second per core and what each rule keeps, on the real dialogue samples.

    .venv/bin/python bench/dialogue_throughput.py [--samples ../shared/corpus-samples] [--workers 1]

Runs `wudao dialogue` (in-process FnApiRunner, or multi_processing with --workers 2) over every file in
corpus-samples/dialogue (LCCC toy JSON and TSV, KdConv, ChatAlpaca), measures wall and CPU time of the whole
process tree, and reports from stats.json: sessions in and kept, per stage kept fraction, and per utterance rule
how many utterances it dropped or edited. Writes bench/results/dialogue.md.

The same-run reference is the floor under any cleaning: a Beam pipeline on the same runner that reads the same
files with the same reader (`ReadDialogues`) and writes every session as a JSONL.gz record (`session_to_record`),
with no rule, stage or dedup between (`--floor OUT` runs just that, in its own process). The ratio says what the
whole cleaning costs on top of reading and writing.
"""
from __future__ import annotations

import argparse
import gzip
import json
import resource
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent


def dialogue_inputs(samples: Path) -> list[str]:
    return sorted(str(p) for p in (samples / "dialogue").rglob("*") if p.is_file() and p.suffix != ".md")


def run(samples: Path, workers: int, out: Path) -> tuple[dict, float, float]:
    cmd = [sys.executable, "-m", "pipelines.cli", "dialogue", "--output", str(out)]
    for path in dialogue_inputs(samples):
        cmd += ["--input", path]
    if workers > 1:
        cmd += ["--direct_running_mode=multi_processing", f"--direct_num_workers={workers}"]
    wall, cpu = timed(cmd)
    return json.loads((out / "stats.json").read_text()), wall, cpu


def timed(cmd: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds (user + system of the child and its children) of running `cmd`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.time()
    subprocess.run(cmd, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    wall = time.time() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def run_floor_pipeline(samples: Path, out: Path, workers: int) -> None:
    """The reference: read the dialogue files and write every session, nothing between (this process)."""
    import apache_beam as beam

    from pipelines.dialogue import ReadDialogues, session_to_record
    from pipelines.inputs import MatchInputs
    from pipelines.run import pipeline_options
    from pipelines.sinks import to_json_line

    args = ["--runner", "FnApiRunner"]
    if workers > 1:
        args += ["--direct_running_mode=multi_processing", f"--direct_num_workers={workers}"]
    with beam.Pipeline(options=pipeline_options(args)) as pipeline:
        _ = (pipeline
             | "Inputs" >> beam.Create(dialogue_inputs(samples))
             | "Match" >> MatchInputs()
             | "SpreadFiles" >> beam.Reshuffle()
             | "Read" >> beam.ParDo(ReadDialogues()).with_outputs("posts", "rejects", "counts", main="sessions")
             ).sessions \
            | "ToRecords" >> beam.Map(session_to_record) | "Json" >> beam.Map(to_json_line) \
            | "Write" >> beam.io.WriteToText(str(out / "part"), file_name_suffix=".jsonl.gz")


def report(stats: dict, wall: float, cpu: float, floor: tuple[int, float, float], command: str) -> str:
    totals = stats["totals"]
    read = next(s for s in stats["stages"] if s["stage"] == "read")
    sessions = read["out"]
    floor_sessions, floor_wall, floor_cpu = floor
    lines = ["# Dialogue pipeline on the real dialogue samples", "", "```", command, "```", "",
             "| run | sessions read | written | wall s | CPU s | sessions/s per core | ratio (per core) |",
             "|---|---:|---:|---:|---:|---:|---:|",
             f"| reference: read and write only (same reader and runner, no cleaning) | {floor_sessions} | "
             f"{floor_sessions} | {floor_wall:.1f} | {floor_cpu:.1f} | {floor_sessions / floor_cpu:.0f} | 1.00x |",
             f"| `wudao dialogue`, default recipe | {sessions} | {totals['kept']} | {wall:.1f} | {cpu:.1f} | "
             f"{sessions / cpu:.0f} | {(sessions / cpu) / (floor_sessions / floor_cpu):.2f}x |", "",
             "Per stage (kept fraction = out / (in + created)):", "",
             "| stage | in | created | out | dropped | kept fraction | top drop reasons |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for s in stats["stages"]:
        total = s["in"] + s.get("created", 0)
        top = ", ".join(f"{r} {n}" for r, n in list(s["dropped_by_reason"].items())[:4])
        lines.append(f"| {s['stage']} | {s['in']} | {s.get('created', 0)} | {s['out']} | {s['dropped']} | "
                     f"{s['out'] / total if total else 1:.3f} | {top} |")
    rules = [(s["stage"], k, v) for s in stats["stages"] for k, v in (s.get("counts") or {}).items()]
    if rules:
        lines += ["", "Utterance-level counts (per rule):", "", "| stage | rule | utterances |", "|---|---|---:|"]
        lines += [f"| {stage} | {k} | {v} |" for stage, k, v in sorted(rules, key=lambda r: -r[2])]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", default=str(REPO.parent / "shared" / "corpus-samples"))
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--results", default=str(BENCH / "results" / "dialogue.md"))
    parser.add_argument("--floor", help=argparse.SUPPRESS)  # internal: run only the reference pipeline into DIR
    args = parser.parse_args(argv)
    if args.floor:
        run_floor_pipeline(Path(args.samples), Path(args.floor), args.workers)
        return 0
    floor_out = BENCH / "work" / "dialogue-floor"
    shutil.rmtree(floor_out, ignore_errors=True)
    floor_wall, floor_cpu = timed([sys.executable, str(Path(__file__).resolve()), "--samples", args.samples,
                                   "--workers", str(args.workers), "--floor", str(floor_out)])
    floor_sessions = sum(1 for part in floor_out.glob("part-*.jsonl.gz") for _ in gzip.open(part, "rt"))
    out = BENCH / "work" / "dialogue"
    stats, wall, cpu = run(Path(args.samples), args.workers, out)
    command = shlex.join([".venv/bin/python", "bench/dialogue_throughput.py",
                          *(argv if argv is not None else sys.argv[1:])])
    text = report(stats, wall, cpu, (floor_sessions, floor_wall, floor_cpu), command)
    Path(args.results).write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
