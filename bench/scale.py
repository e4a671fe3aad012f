"""How `wudao text` scales from 100 MB to 1 GB of WARC: documents/s, MB/s and peak memory per input size.

    python bench/scale.py --sizes 100MB,300MB,1GB      # writes bench/results/scale.md

For each size: `bench/make_crawl.py` writes the crawl into bench/work/scale/crawl-SIZE (reused when its
manifest matches), then `python -m pipelines.cli text --input 'DIR/*.warc.gz' --output OUT
--direct_running_mode=multi_processing --direct_num_workers=2` runs under `dedup_scaling.measure`: wall
time, CPU of the whole process tree (rusage of a wrapper process), peak RSS of the tree (VmRSS of every
descendant summed, polled every 0.2 s), and the peaks of the runner process and of the largest worker.
Goal (issue 8): throughput flat and peak memory at most 1.5x from the smallest size to the largest.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
import dedup_scaling  # noqa: E402  (process-tree measurement)
import make_crawl  # noqa: E402
from throughput import cpu_model  # noqa: E402

REPO = BENCH.parent
WORK = BENCH / "work" / "scale"
RESULTS = BENCH / "results" / "scale.md"
MODE = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]


def crawl_for(size_text: str, seed: int) -> tuple[Path, dict]:
    """The crawl of this size, generated unless an identical one is already in bench/work/scale."""
    size, folder = make_crawl.parse_size(size_text), WORK / f"crawl-{size_text}"
    manifest_path = folder / "manifest.json"
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text("utf-8"))
        if manifest["params"]["size"] == size and manifest["params"]["seed"] == seed and all(
                (folder / f["file"]).exists() and (folder / f["file"]).stat().st_size == f["bytes"]
                for f in manifest["files"]):
            return folder, manifest
    shutil.rmtree(folder, ignore_errors=True)
    return folder, make_crawl.build_crawl(folder, size, seed)


def run_size(size_text: str, seed: int, python: str, config: str | None = None) -> dict:
    """Generate (or reuse) the crawl, run `wudao text` on it, return one row of figures."""
    folder, manifest = crawl_for(size_text, seed)
    out = WORK / f"out-{size_text}"
    shutil.rmtree(out, ignore_errors=True)
    cmd = [python, "-m", "pipelines.cli", "text", "--input", str(folder / "*.warc.gz"), "--output", str(out), *MODE,
           "--no-progress", *(["--config", config] if config else [])]
    m = dedup_scaling.measure(cmd, size_text, manifest["responses"], WORK / f"run-{size_text}.log", timeout_s=7200)
    if m.returncode != 0:
        raise SystemExit(f"wudao text failed on {size_text} (exit {m.returncode}); "
                         f"log: {WORK / f'run-{size_text}.log'}")
    stats = json.loads((out / "stats.json").read_text("utf-8"))
    cpu = max(m.cpu_s, m.polled_cpu_s)
    return {"size": size_text, "responses": manifest["responses"], "mb": manifest["bytes"] / 1e6,
            "raw_mb": manifest["uncompressed_bytes"] / 1e6, "kept": stats.get("totals", {}).get("kept"),
            "wall_s": m.wall_s, "cpu_s": cpu, "docs_per_s": manifest["responses"] / m.wall_s,
            "mb_per_s": manifest["bytes"] / 1e6 / m.wall_s,
            "raw_mb_per_s": manifest["uncompressed_bytes"] / 1e6 / m.wall_s,
            "docs_per_cpu_s": manifest["responses"] / cpu, "peak_tree_mb": m.peak_tree_rss_mb,
            "runner_mb": m.runner_rss_mb, "worker_mb": m.worker_rss_mb, "by_kind": manifest["by_kind"],
            "drops": {s.get("stage"): s.get("dropped") for s in stats.get("stages", []) if s.get("dropped")}}


def render(rows: list[dict], command: str) -> str:
    """The Markdown report: one row per size, then ratios against the first size."""
    lines = ["# Scale: `wudao text` from 100 MB to 1 GB of WARC", "",
             f"Machine: {os.cpu_count()} cores, {cpu_model()}, Python {platform.python_version()}. "
             f"Input: `bench/make_crawl.py` (shares: {make_crawl.SHARES}); mode: `{' '.join(MODE)}`.", "",
             "| size | responses | kept | WARC MB (gz / raw) | wall s | CPU s | docs/s | MB/s (gz / raw) "
             "| docs/CPU s | peak RSS tree MB | runner MB | largest worker MB |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['size']} | {r['responses']} | {r['kept']} | {r['mb']:.0f} / {r['raw_mb']:.0f} "
                     f"| {r['wall_s']:.0f} | {r['cpu_s']:.0f} | {r['docs_per_s']:.1f} "
                     f"| {r['mb_per_s']:.2f} / {r['raw_mb_per_s']:.2f} | {r['docs_per_cpu_s']:.1f} "
                     f"| {r['peak_tree_mb']:.0f} | {r['runner_mb']:.0f} | {r['worker_mb']:.0f} |")
    base = rows[0]
    lines += ["", f"Ratios against {base['size']} (goal: docs/s about 1.0, peak RSS at most 1.5):", "",
              "| size | input ratio | docs/s ratio | docs/CPU s ratio | peak RSS tree ratio | runner RSS ratio |",
              "|---|---:|---:|---:|---:|---:|"]
    for r in rows[1:]:
        lines.append(f"| {r['size']} / {base['size']} | {r['mb'] / base['mb']:.2f} "
                     f"| {r['docs_per_s'] / base['docs_per_s']:.2f} "
                     f"| {r['docs_per_cpu_s'] / base['docs_per_cpu_s']:.2f} "
                     f"| {r['peak_tree_mb'] / base['peak_tree_mb']:.2f} | {r['runner_mb'] / base['runner_mb']:.2f} |")
    lines += ["", "Rerun:", "", "```", command, "```", ""]
    for r in rows:
        lines.append(f"- {r['size']}: records by kind {r['by_kind']}; dropped by stage {r['drops']}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100MB,300MB,1GB")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--config", help="recipe YAML merged over the default (e.g. read: {split_bytes: 0})")
    args = parser.parse_args(argv)
    WORK.mkdir(parents=True, exist_ok=True)
    rows = []
    for size in args.sizes.split(","):
        rows.append(run_size(size.strip(), args.seed, args.python, args.config))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    command = shlex.join(["python", "bench/scale.py", *(argv if argv is not None else sys.argv[1:])])
    report = render(rows, command)
    print(report)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(report, "utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
