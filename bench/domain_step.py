#!/usr/bin/env python
"""Cost of the `domain` step (source type + topic classifier) per document, next to the rest of `wudao text`.

    .venv/bin/python bench/domain_step.py [--repeat 5] [--samples ../shared/corpus-samples]

Input: the 159 real pages of `web/html_groundtruth` in the shared samples (120 English news/blog pages, 39
Chinese article and forum pages), through the default recipe in one process (one core). Measured in the same run,
interleaved, median of `--repeat` rounds:
- the recipe's per-document work before the domain step: extraction, normalization, PII, language ID, filters
  (`StepRunner` over `ExtractStep` and the default steps, less `domain`);
- the `domain` step on the documents that reach it, with the topic model (the default) and without it
  (`topic: false`: source type alone);
- the `language` step on the same documents: the other fastText model of the recipe, as a reference.
Its share is the domain step's time over the whole recipe's (the rest plus domain) per document. Beam's own
overhead and the dedup stages are left out of the whole, so the share is an upper bound. Results go to stdout
and `bench/results/domain.md`.
"""
from __future__ import annotations

import argparse
import copy
import gzip
import json
import statistics
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))

from cleaners.document import RawPage  # noqa: E402
from cleaners.recipe import build_step, build_steps, load_recipe  # noqa: E402
from cleaners.runner import ExtractStep, StepRunner  # noqa: E402


def load_pages(samples: Path) -> list[RawPage]:
    root = samples / "web" / "html_groundtruth"
    sets = [(root / "article-extraction-benchmark" / "ground-truth.json", root / "article-extraction-benchmark/html"),
            (root / "magic-html-zh/article/base.zh-subset.json", root / "magic-html-zh/article/htmls"),
            (root / "magic-html-zh/forum/base.zh-subset.json", root / "magic-html-zh/forum/htmls")]
    pages = []
    for truth_path, folder in sets:
        truth = json.loads(truth_path.read_text("utf-8"))
        for path in sorted(folder.glob("*.html.gz")):
            url = truth.get(path.name[: -len(".html.gz")], {}).get("url", "")
            pages.append(RawPage(key=path.name, source=str(path), url=url, html=gzip.decompress(path.read_bytes())))
    return pages


def timed(runner: StepRunner, records: list) -> tuple[float, list]:
    kept = []
    start = time.perf_counter()
    for record in records:
        kept.extend(runner.run(copy.deepcopy(record)).kept)
    return time.perf_counter() - start, kept


def copy_cost(records: list) -> float:
    start = time.perf_counter()
    for record in records:
        copy.deepcopy(record)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", default=str(REPO.parent / "shared" / "corpus-samples"))
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--results", default=str(BENCH / "results" / "domain.md"))
    args = parser.parse_args(argv)

    config = load_recipe()
    config["steps"] = [s for s in config["steps"] if not (isinstance(s, dict) and "domain" in s or s == "domain")]
    rest = StepRunner([ExtractStep(**(config.get("extract") or {})), *build_steps(config)])
    columns = {"domain (source type + topic)": StepRunner([build_step("domain", {})]),
               "domain, topic: false (source type only)": StepRunner([build_step("domain", {"topic": False})]),
               "language (fastText LID), reference": StepRunner([build_step("language", {})])}
    pages = load_pages(Path(args.samples))
    _, docs = timed(rest, pages)                                 # warm-up, and the documents that reach `domain`
    for runner in columns.values():
        timed(runner, docs)
    times: dict[str, list[float]] = {"rest of the recipe": [], **{name: [] for name in columns}}
    for _ in range(args.repeat):
        times["rest of the recipe"].append(timed(rest, pages)[0] - copy_cost(pages))
        for name, runner in columns.items():
            times[name].append(timed(runner, docs)[0] - copy_cost(docs))
    median = {name: statistics.median(values) for name, values in times.items()}
    per_doc_rest = median["rest of the recipe"] / len(docs)
    lines = [f"# `domain` step cost (`python bench/domain_step.py --repeat {args.repeat}`)", "",
             f"{len(pages)} real pages in, {len(docs)} documents reach the domain step; wall time of one process "
             f"(extraction runs in its child process), median of {args.repeat} interleaved rounds.", "",
             "| work | ms per document | documents/s per core | share of the recipe's time per document |",
             "|---|---|---|---|"]
    lines.append(f"| rest of the recipe (extract ... quality) | {per_doc_rest * 1e3:.2f} | {1 / per_doc_rest:,.0f} | |")
    for name in columns:
        per_doc = median[name] / len(docs)
        share = per_doc / (per_doc_rest + per_doc)
        lines.append(f"| {name} | {per_doc * 1e3:.3f} | {1 / per_doc:,.0f} | {share:.2%} |")
    report = "\n".join(lines) + "\n"
    print(report)
    Path(args.results).write_text(report, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
