"""How time and peak memory of `wudao dedup` (all stages on) grow from 10k to 100k documents.

    python bench/dedup_scaling.py                                   # about 15 minutes on 2 cores
    python bench/dedup_scaling.py --sizes 10000 30000 --modes multi

Corpora (the near-duplicate benchmark's generator, bench/near_duplicates.py): half English, half Chinese,
1,000-2,000 characters (English) or 350-700 (Chinese, about 1-2 KB of UTF-8), built from real sentences, from
500 sites whose pages carry the site's footer line half the time. Of the documents, 5% are exact copies of a
recent one under another URL, 3% re-captures of a recent URL with a few edits and a later date, 10% near
duplicates (0.2-2% of words or characters edited, under a new URL); the rest are new. That is about 18%
removable: raw crawls are dirtier than C4 after its cleaning, where Lee et al. 2022 ("Deduplicating Training
Data Makes Language Models Better") still found 1.7-3% near duplicates.

Each run is measured from outside: wall time; CPU time of the whole process tree (getrusage(RUSAGE_CHILDREN)
of a wrapper process that only runs the command, so every reaped descendant counts); peak RSS of the tree (the
sum of VmRSS over the command and all its descendants, polled from /proc every 0.2 s; pages shared between
processes count once per process); and the largest single process's peak (ru_maxrss of the wrapper's children).
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import shlex
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

sys.path.insert(0, str(Path(__file__).resolve().parent))
import near_duplicates as nd  # noqa: E402

REPO = nd.REPO
WORK = REPO / "bench" / "work" / "dedup_scaling"
RESULTS = REPO / "bench" / "results" / "dedup_scaling.md"

SCALING_CHARS = {"en": (1000, 2000), "zh": (350, 700)}
#: Fractions of documents that copy a recent one: exact copy, URL re-capture, near duplicate.
DUPLICATE_MIX = {"exact": 0.05, "recapture": 0.03, "near": 0.10}
NEAR_EDIT_RATE = (0.002, 0.02)       # share of tokens edited in a near duplicate
RECAPTURE_EDIT_RATE = 0.005
SITES = 500
RECENT = 2000                        # documents per language a duplicate may copy (memory stays flat)
MODES = {"multi": ["--direct_running_mode=multi_processing", "--direct_num_workers=2"], "inprocess": []}


def footer(site: int, lang: str) -> str:
    """The boilerplate line of a site (line dedup's target: it repeats on every page of the site that has it)."""
    if lang == "zh":
        return f"版权所有 © 2009-2023 站点{site}网 保留所有权利 未经许可不得转载 京ICP备{100000 + site}号"  # noqa: E501
    return f"Copyright © 2009-2023 Site {site} Media Group. All rights reserved. Privacy Policy | Terms of Use"


def scaling_records(n_docs: int, seed: int, languages: dict[str, nd.Language]) -> Iterator[dict]:
    """`n_docs` corpus records (id, content, lang, title, url, date), deterministic for a seed. Only the last
    RECENT new documents per language are held, so generation memory does not grow with n_docs."""
    rng = random.Random(seed)
    recent: dict[str, deque] = {lang: deque(maxlen=RECENT) for lang in languages}
    kinds, weights = zip(*DUPLICATE_MIX.items(), ("new", 1.0 - sum(DUPLICATE_MIX.values())))
    for i in range(n_docs):
        lang = "en" if rng.random() < 0.5 else "zh"
        language = languages[lang]
        kind = rng.choices(kinds, weights)[0] if recent[lang] else "new"
        date = f"2023-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T00:00:00Z"
        if kind == "new":
            site = rng.randrange(SITES)
            sentences = nd.compose_base(language, rng, SCALING_CHARS[lang])
            recent[lang].append((sentences, site, i))
            content = nd.render(sentences, lang)
            url = f"https://site{site}.example/{lang}/{i}"
        else:
            sentences, site, source = recent[lang][rng.randrange(len(recent[lang]))]
            tokens = sum(map(len, sentences))
            url = f"https://site{site}.example/{lang}/{i}"
            if kind == "exact":
                content = nd.render(sentences, lang)
                url = f"https://mirror{rng.randrange(SITES)}.example/{lang}/{source}"
            elif kind == "recapture":
                edits = max(1, round(RECAPTURE_EDIT_RATE * tokens))
                content = nd.render(nd.apply_edits(sentences, edits, rng.randrange(2**63), language.vocabulary), lang)
                url = f"https://site{site}.example/{lang}/{source}"
                date = f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T00:00:00Z"
            else:
                edits = max(1, round(rng.uniform(*NEAR_EDIT_RATE) * tokens))
                content = nd.render(nd.apply_edits(sentences, edits, rng.randrange(2**63), language.vocabulary), lang)
        if site % 2 == 0:
            content += "\n" + footer(site, lang)
        yield {"id": nd.doc_id(f"scale-{seed}-{i}"), "content": content, "lang": lang, "title": "", "url": url,
               "date": date, "kind": kind}


def write_corpus(n_docs: int, seed: int, languages: dict[str, nd.Language], folder: Path, shards: int = 8
                 ) -> dict[str, int]:
    """Write the corpus as `shards` JSONL.gz files; returns counts by kind and the bytes of text."""
    folder.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {"text_bytes": 0}
    handles = [gzip.open(folder / f"part-{k:05d}.jsonl.gz", "wt", encoding="utf-8", compresslevel=1)
               for k in range(shards)]
    try:
        for i, record in enumerate(scaling_records(n_docs, seed, languages)):
            counts[record["kind"]] = counts.get(record["kind"], 0) + 1
            counts["text_bytes"] += len(record["content"].encode("utf-8"))
            del record["kind"]
            handles[i % shards].write(json.dumps(record, ensure_ascii=False) + "\n")
    finally:
        for handle in handles:
            handle.close()
    return counts


# ----------------------------------------------------------------------------------------------- measuring

_WRAPPER = ("import json, resource, subprocess, sys\n"
            "rc = subprocess.call(sys.argv[2:])\n"
            "u = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
            "open(sys.argv[1], 'w').write(json.dumps({'cpu_s': u.ru_utime + u.ru_stime, 'maxrss_kb': u.ru_maxrss}))\n"
            "sys.exit(rc)\n")


def descendants(root: int) -> list[int]:
    """`root` and every process below it, from the parent ids in /proc/*/stat."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    stat = fh.read()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def _parent(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return int(fh.read().rsplit(")", 1)[1].split()[1])
    except OSError:
        return None


def cpu_ticks(pids: list[int]) -> dict[int, int]:
    """Own utime + stime of each process in clock ticks, from /proc/<pid>/stat (children's not included, so a
    tree's sum counts each process once; time after the last poll of a process is missed)."""
    out = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[pid] = int(fields[11]) + int(fields[12])      # utime, stime
    return out


def rss_by_pid(pids: list[int]) -> dict[int, int]:
    """Resident bytes of each process still alive."""
    page = os.sysconf("SC_PAGE_SIZE")
    out = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/statm") as fh:
                out[pid] = int(fh.read().split()[1]) * page
        except (OSError, IndexError, ValueError):
            continue
    return out


def rss_bytes(pids: list[int]) -> int:
    return sum(rss_by_pid(pids).values())


@dataclass
class Measurement:
    label: str
    docs: int
    wall_s: float
    cpu_s: float
    peak_tree_rss_mb: float
    max_process_rss_mb: float
    returncode: int
    polled_cpu_s: float = 0.0
    runner_rss_mb: float = 0.0        # peak of the command's process: with FnApiRunner, the runner and its shuffles
    worker_rss_mb: float = 0.0        # peak of any one process below it (multi_processing SDK workers)
    stats: dict = field(default_factory=dict)

    @property
    def docs_per_s(self) -> float:
        return self.docs / self.wall_s

    @property
    def docs_per_cpu_s(self) -> float:
        cpu = max(self.cpu_s, self.polled_cpu_s)
        return self.docs / cpu if cpu else 0.0


def measure(cmd: list[str], label: str, docs: int, log: Path, poll_s: float = 0.2, timeout_s: float = 1800
            ) -> Measurement:
    """Run `cmd` under the rusage wrapper and poll the tree's RSS until it ends."""
    usage = log.with_suffix(".rusage.json")
    with open(log, "w") as out:
        started = time.time()
        proc = subprocess.Popen([sys.executable, "-c", _WRAPPER, str(usage), *cmd], cwd=REPO, stdout=out,
                                stderr=subprocess.STDOUT)
        peak, ticks, per_pid, command_pid = 0, {}, {}, None
        while proc.poll() is None:
            tree = descendants(proc.pid)
            sizes = rss_by_pid(tree)
            peak = max(peak, sum(sizes.values()))
            for pid, size in sizes.items():
                per_pid[pid] = max(per_pid.get(pid, 0), size)
            ticks.update(cpu_ticks(tree))
            children = [pid for pid in tree if pid != proc.pid and _parent(pid) == proc.pid]
            command_pid = children[0] if children else command_pid     # the wrapper's only child: the command
            if time.time() - started > timeout_s:
                proc.kill()
                break
            time.sleep(poll_s)
        proc.wait()
        wall = time.time() - started
    rusage = json.loads(usage.read_text()) if usage.exists() else {"cpu_s": 0.0, "maxrss_kb": 0}
    others = [size for pid, size in per_pid.items() if pid not in (proc.pid, command_pid)]
    return Measurement(label, docs, wall, rusage["cpu_s"], peak / 2**20, rusage["maxrss_kb"] / 1024,
                       proc.returncode, polled_cpu_s=sum(ticks.values()) / os.sysconf("SC_CLK_TCK"),
                       runner_rss_mb=per_pid.get(command_pid, 0) / 2**20, worker_rss_mb=max(others, default=0) / 2**20)


def stage_drops(stats: dict) -> dict[str, int]:
    """{stage: dropped} from a stats.json (whatever stages it lists)."""
    return {s.get("stage", s.get("name", "?")): int(s.get("dropped", 0)) for s in stats.get("stages", [])}


def _ratio(b: float, a: float) -> str:
    return f"{b / a:.2f}" if a else "-"


def render_report(rows: list[Measurement], corpora: dict[int, dict], command: str, notes: list[str]) -> str:
    lines = ["# `wudao dedup` from 10k to 100k documents (all stages)", "", "```", command, "```", "",
             "| run | docs | text MB | wall s | docs/s | CPU s (rusage / polled) | docs per CPU s "
             "| peak RSS, process tree MB "
             "| largest process MB | runner process MB | largest worker MB | kept | dropped by stage |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for m in rows:
        totals = m.stats.get("totals", {})
        drops = ", ".join(f"{k} {v}" for k, v in stage_drops(m.stats).items() if v) or "-"
        status = "" if m.returncode == 0 else f" (FAILED rc {m.returncode})"
        lines.append(f"| {m.label}{status} | {m.docs} | {corpora[m.docs]['text_bytes'] / 1e6:.1f} | {m.wall_s:.1f} "
                     f"| {m.docs_per_s:.0f} | {m.cpu_s:.1f} / {m.polled_cpu_s:.1f} | {m.docs_per_cpu_s:.0f} "
                     f"| {m.peak_tree_rss_mb:.0f} "
                     f"| {m.max_process_rss_mb:.0f} | {m.runner_rss_mb:.0f} | {m.worker_rss_mb:.0f} "
                     f"| {totals.get('kept', '?')} | {drops} |")
    lines += ["", "Growth from the smallest to the largest corpus, per mode (linear time would be the docs ratio):",
              "", "| mode | docs ratio | wall ratio | CPU ratio | peak tree RSS ratio | largest process RSS ratio "
              "| runner RSS ratio | largest worker RSS ratio |",
              "|---|---|---|---|---|---|---|---|"]
    for mode in sorted({m.label for m in rows}):
        ok = sorted((m for m in rows if m.label == mode and m.returncode == 0), key=lambda m: m.docs)
        if len(ok) >= 2:
            a, b = ok[0], ok[-1]
            lines.append(f"| {mode} | {b.docs / a.docs:.1f} | {b.wall_s / a.wall_s:.2f} | {b.cpu_s / a.cpu_s:.2f} "
                         f"| {b.peak_tree_rss_mb / a.peak_tree_rss_mb:.2f} "
                         f"| {b.max_process_rss_mb / a.max_process_rss_mb:.2f} "
                         f"| {_ratio(b.runner_rss_mb, a.runner_rss_mb)} | {_ratio(b.worker_rss_mb, a.worker_rss_mb)} |")
    lines += ["", "Notes:", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 30_000, 100_000])
    parser.add_argument("--modes", nargs="+", choices=sorted(MODES), default=["multi", "inprocess"])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--samples", type=Path, default=nd.SAMPLES)
    parser.add_argument("--work", type=Path, default=WORK)
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--timeout", type=float, default=1800, help="per run, seconds")
    args = parser.parse_args(argv)

    languages = {lang: nd.Language.from_samples(args.samples, lang) for lang in ("en", "zh")}
    corpora, rows = {}, []
    for size in args.sizes:
        folder = args.work / f"input-{size}"
        started = time.time()
        corpora[size] = write_corpus(size, args.seed, languages, folder)
        print(f"{size} docs generated in {time.time() - started:.0f} s: {corpora[size]}", flush=True)
        for mode in args.modes:
            output = args.work / f"out-{size}-{mode}"
            cmd = [sys.executable, "-m", "pipelines.cli", "dedup", "--input", str(folder / "*.jsonl.gz"),
                   "--output", str(output), *MODES[mode]]
            m = measure(cmd, mode, size, args.work / f"run-{size}-{mode}.log", timeout_s=args.timeout)
            stats_path = output / "stats.json"
            m.stats = json.loads(stats_path.read_text()) if m.returncode == 0 and stats_path.exists() else {}
            rows.append(m)
            print(f"{mode} {size}: {m.wall_s:.1f} s wall, {m.cpu_s:.1f} / {m.polled_cpu_s:.1f} s CPU, "
                  f"peak tree {m.peak_tree_rss_mb:.0f} MB, largest process {m.max_process_rss_mb:.0f} MB "
                  f"(runner {m.runner_rss_mb:.0f}, worker {m.worker_rss_mb:.0f}), rc {m.returncode}", flush=True)
    shown = "python bench/dedup_scaling.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    shown += "\n# each run: python -m pipelines.cli dedup --input 'bench/work/dedup_scaling/input-N/*.jsonl.gz' " \
             "--output DIR [" + " ".join(MODES["multi"]) + "]"
    mix = {size: {k: v for k, v in c.items() if k != "text_bytes"} for size, c in corpora.items()}
    notes = [f"Corpus mix (seed {args.seed}): {mix}; 8 JSONL.gz shards per corpus; default recipe "
             "(exact, URL, line dedup with min_docs 10, MinHash at 0.8).",
             "CPU s: user + system of the whole process tree, two ways: getrusage(RUSAGE_CHILDREN) of the wrapper "
             "(descendants count only once reaped by their parent) and the sum of each process's own utime + stime "
             "polled from /proc (misses at most the last 0.2 s of each process); docs per CPU s uses the larger. "
             "Peak tree RSS: sum of "
             "VmRSS over the command and its descendants, polled every 0.2 s. Largest process: ru_maxrss.",
             f"Machine: {os.cpu_count()} cores, shared with other work while measuring; wall times are noisy, "
             "CPU times less so.",
             "Where the memory is: FnApiRunner keeps the data of every shuffle (GroupByKey) in buffers of the "
             "runner, the command's own process, and hands a stage's input to a worker in large bundles, so the "
             "runner's and the workers' peaks here include what Beam's shuffles hold; a distributed runner "
             "(Dataflow, Flink, Spark) keeps that in its shuffle service or on disk instead."]
    report = render_report(rows, corpora, shown, notes)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(report, encoding="utf-8")
    print(report)
    return 0 if all(m.returncode == 0 for m in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
