#!/usr/bin/env python
"""Dialogue pipeline: sessions per second per core and what each rule keeps, on the real dialogue samples.

    .venv/bin/python bench/dialogue_throughput.py [--samples ../shared/corpus-samples] [--workers 1]

Runs `wudao dialogue` (in-process FnApiRunner, or multi_processing with --workers 2) over every file in
corpus-samples/dialogue (LCCC toy JSON and TSV, KdConv, ChatAlpaca), measures wall and CPU time of the whole
process tree, and reports from stats.json: sessions in and kept, per stage kept fraction, and per utterance rule
how many utterances it dropped or edited. Writes bench/results/dialogue.md.
"""
from __future__ import annotations

import argparse
import json
import resource
import shlex
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent


def run(samples: Path, workers: int, out: Path) -> tuple[dict, float, float]:
    inputs = sorted(str(p) for p in (samples / "dialogue").rglob("*") if p.is_file() and p.suffix != ".md")
    cmd = [sys.executable, "-m", "pipelines.cli", "dialogue", "--output", str(out)]
    for path in inputs:
        cmd += ["--input", path]
    if workers > 1:
        cmd += ["--direct_running_mode=multi_processing", f"--direct_num_workers={workers}"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.time()
    subprocess.run(cmd, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    wall = time.time() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return json.loads((out / "stats.json").read_text()), wall, cpu


def report(stats: dict, wall: float, cpu: float, command: str) -> str:
    totals = stats["totals"]
    read = next(s for s in stats["stages"] if s["stage"] == "read")
    sessions = read["out"]
    lines = ["# Dialogue pipeline on the real dialogue samples", "", "```", command, "```", "",
             "| sessions read | kept | wall s | CPU s | sessions/s per core |", "|---:|---:|---:|---:|---:|",
             f"| {sessions} | {totals['kept']} | {wall:.1f} | {cpu:.1f} | {sessions / cpu:.0f} |", "",
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
    args = parser.parse_args(argv)
    out = BENCH / "work" / "dialogue"
    stats, wall, cpu = run(Path(args.samples), args.workers, out)
    command = shlex.join([".venv/bin/python", "bench/dialogue_throughput.py",
                          *(argv if argv is not None else sys.argv[1:])])
    text = report(stats, wall, cpu, command)
    Path(args.results).write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
