"""Main-text extraction quality and speed: ours (cleaners.extract) against trafilatura and resiliparse.

Ground truth, two places:
- ../shared/corpus-samples/web/html_groundtruth (`--samples`), the original three sets:
  English articles: scrapinghub/article-extraction-benchmark (`ground-truth.json`, {id: {articleBody}});
  Chinese articles and forums: opendatalab/magic-html (`base.zh-subset.json`, {id: {content}}).
- bench/data/extraction (`--fixtures`, built by bench/make_extraction_fixtures.py; sources and licences in its
  SOURCES.md): forum, Q&A and comment-thread pages in English and Chinese, and more Chinese articles,
  `truth.json` {page_id: {url, lang, type, text, set, ...}} and `html/<page_id>.html.gz`.
Pages are gzip HTML. Every extractor sees the same raw bytes in the same run, and the page's URL where it takes
one (ours and trafilatura; the pipeline has the WARC URL, and our thread detection uses it; resiliparse takes none).

Score: token-level precision/recall/F1 per page from multiset overlap of tokens (Chinese: every
non-space character; English: lowercased `\\w+` words), then the mean over pages; an empty output
scores 0. This is the article-extraction-benchmark's token F1, with characters for Chinese as in
magic-html's evaluation. Results are reported per set and per page type and language.

Columns: ours (`extract_html` and the pipeline's PageExtractor), trafilatura.extract with its defaults and with
`fast=True`, and resiliparse's `extract_plain_text(html, main_content=True)` (resiliparse 2.0.0, optional: it is
in no dependency list; without it that column is left out with a note). The trafilatura columns run trafilatura
as shipped (`trafilatura_as_shipped`: its own XPath rules and lxml.html's element lookup, not the compiled rules
and the C lookup ours installs).

Usage: python bench/extraction_quality.py [--samples DIR] [--fixtures DIR] [--out bench/results/extraction.md]
       [--repeat N] [--sets NAME,...] [--no-variants] [--pages-out FILE.tsv]
"""
from __future__ import annotations

import argparse
import gzip
import json
import re
import sys
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator
from urllib.parse import urlparse

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import trafilatura  # noqa: E402
from trafilatura import xpaths as trafilatura_xpaths  # noqa: E402

from cleaners.document import RawPage  # noqa: E402
from cleaners.extract import (DEFAULT_OPTIONS, ExtractResult, PageExtractor, UnparsableHTML,  # noqa: E402
                              extract_html, shipped_element_lookup)
from cleaners.xpath_rules import as_shipped  # noqa: E402

WORD = re.compile(r"\w+")
SPACE = re.compile(r"\s+")

# Page types of the 6 shared magic-html Chinese forum pages (id prefix -> type), by the rule in
# bench/data/extraction/SOURCES.md: zhidao.baidu.com and zhihu.com are Q&A, weibo.com a post with comments.
SHARED_FORUM_TYPES = {
    "2c983edd919e": "qa",        # zhidao.baidu.com
    "660f1afdd0b5": "qa",        # zhidao.baidu.com
    "044e68e44f3c": "qa",        # zhihu.com
    "177560436e1c": "comments",  # weibo.com
    "6db2e2d672d8": "forum",     # tieba.baidu.com
    "6897d6ef37e9": "forum",     # ruby-china.org
}
TYPE_ORDER = ("forum", "qa", "comments", "article")
TYPE_NAMES = {"forum": "forum threads", "qa": "Q&A", "comments": "posts with comments", "article": "articles"}


@dataclass(frozen=True)
class Page:
    id: str
    html: bytes
    gold: str
    lang: str  # "zh" or "en"
    type: str  # "forum", "qa", "comments", "article"
    set: str
    url: str | None
    site: str  # host name without "www."; the page id when the URL is unknown


def site_of(url: str | None, page_id: str) -> str:
    host = urlparse(url or "").hostname
    if not host:
        return page_id
    return host[4:] if host.startswith("www.") else host


def tokens(text: str, lang: str) -> Counter[str]:
    if lang == "en":
        return Counter(WORD.findall(text.lower()))
    return Counter(SPACE.sub("", text))


def prf(predicted: str, gold: str, lang: str) -> tuple[float, float, float]:
    pred, ref = tokens(predicted, lang), tokens(gold, lang)
    overlap = sum((pred & ref).values())
    if overlap == 0:
        return 0.0, 0.0, 0.0
    precision, recall = overlap / sum(pred.values()), overlap / sum(ref.values())
    return precision, recall, 2 * precision * recall / (precision + recall)


def load_shared_sets(root: Path) -> tuple[dict[str, list[Page]], list[str]]:
    """The original sets: {set name: [Page]}, only pages that have both HTML and truth; notes for missing sets."""
    sets, notes = {}, []
    specs = [
        ("English articles", "en", root / "article-extraction-benchmark/ground-truth.json",
         root / "article-extraction-benchmark/html", "articleBody"),
        ("Chinese articles", "zh", root / "magic-html-zh/article/base.zh-subset.json",
         root / "magic-html-zh/article/htmls", "content"),
        ("Chinese forums", "zh", root / "magic-html-zh/forum/base.zh-subset.json",
         root / "magic-html-zh/forum/htmls", "content"),
    ]
    for name, lang, truth_path, html_dir, field in specs:
        if not truth_path.exists():
            notes.append(f"set {name!r} skipped: {truth_path} not found")
            continue
        truth = json.loads(truth_path.read_text("utf-8"))
        pages = []
        for path in sorted(html_dir.glob("*.html.gz")):
            page_id = path.name[: -len(".html.gz")]
            if page_id in truth:
                type_ = SHARED_FORUM_TYPES.get(page_id[:12], "forum") if name == "Chinese forums" else "article"
                url = truth[page_id].get("url") or None
                pages.append(Page(page_id, gzip.decompress(path.read_bytes()), truth[page_id][field], lang, type_,
                                  name, url, site_of(url, page_id)))
        sets[name] = pages
    return sets, notes


def load_fixture_sets(root: Path) -> tuple[dict[str, list[Page]], list[str]]:
    """bench/data/extraction: {set name: [Page]} in page-id order."""
    truth_path = root / "truth.json"
    if not truth_path.exists():
        return {}, [f"fixtures skipped: {truth_path} not found"]
    truth = json.loads(truth_path.read_text("utf-8"))
    sets: dict[str, list[Page]] = {}
    for page_id in sorted(truth):
        entry = truth[page_id]
        html = gzip.decompress((root / "html" / f"{page_id}.html.gz").read_bytes())
        sets.setdefault(entry["set"], []).append(
            Page(page_id, html, entry["text"], entry["lang"], entry["type"], entry["set"], entry.get("url") or None,
                 site_of(entry.get("url"), page_id)))
    return dict(sorted(sets.items())), []


def load_sets(root: Path, fixtures: Path | None = None) -> dict[str, list[Page]]:
    sets, _ = load_shared_sets(root)
    if fixtures is not None:
        sets.update(load_fixture_sets(fixtures)[0])
    return sets


Extractor = Callable[[bytes, "str | None"], str]  # (raw HTML bytes, page URL or None) -> main text


@contextmanager
def trafilatura_as_shipped() -> Iterator[None]:
    """trafilatura as shipped for the block: its own XPath rules, not the compiled ones `cleaners.extract` installs,
    and lxml.html's own element lookup in its parser, not `cleaners.extract.ELEMENT_LOOKUP`."""
    with shipped_element_lookup(), as_shipped(trafilatura_xpaths):
        yield


def trafilatura_default(html: bytes, url: str | None = None) -> str:
    with trafilatura_as_shipped():
        return trafilatura.extract(html, url=url) or ""


def trafilatura_fast(html: bytes, url: str | None = None) -> str:
    with trafilatura_as_shipped():
        return trafilatura.extract(html, url=url, fast=True) or ""


def ours_with_shipped_rules(html: bytes, url: str | None = None) -> str:
    """Ours with trafilatura's own XPath rules: what `cleaners.xpath_rules` saves (the same output)."""
    with as_shipped(trafilatura_xpaths):
        return ours_extract_html(html, url)


def resiliparse_runner() -> tuple[str, Extractor] | str:
    """(label, function) for resiliparse's main-content extraction, or why it is unavailable."""
    try:
        from importlib.metadata import version

        from resiliparse.extract.html2text import extract_plain_text
        from resiliparse.parse.encoding import bytes_to_str, detect_encoding
    except ImportError as exc:
        return f"resiliparse is not installed ({exc}); install it with `.venv/bin/pip install resiliparse==2.0.0`"

    def run(html: bytes, url: str | None = None) -> str:  # takes no URL
        return extract_plain_text(bytes_to_str(html, detect_encoding(html)), main_content=True) or ""

    return f"resiliparse {version('resiliparse')} (main_content=True)", run


def ours_extract_html(html: bytes, url: str | None = None, **options) -> str:
    try:
        result = extract_html(html, url, **options)
    except UnparsableHTML:
        return ""
    return result.text if result else ""


def pipeline_runner(extractor: PageExtractor) -> Extractor:
    def run(html: bytes, url: str | None = None) -> str:
        doc = extractor.process(RawPage(key="bench", source="bench", url=url or "", html=html))
        return "" if isinstance(doc, str) else doc.text
    return run


def mean_scores(scores: list[tuple[float, float, float]], outputs: list[str]) -> dict[str, float]:
    n = len(scores)
    return {"P": sum(s[0] for s in scores) / n, "R": sum(s[1] for s in scores) / n,
            "F1": sum(s[2] for s in scores) / n, "empty": sum(1 for out in outputs if not out.strip())}


def score(outputs: list[str], pages: list[Page]) -> dict[str, float]:
    return mean_scores([prf(out, page.gold, page.lang) for out, page in zip(outputs, pages)], outputs)


@dataclass
class Run:
    """Outputs and fastest pass time per (extractor label, set name)."""
    outputs: dict[tuple[str, str], list[str]]
    seconds: dict[tuple[str, str], float]


def run_interleaved(extractors: list[tuple[str, Extractor]], sets: dict[str, list[Page]],
                    repeat: int) -> Run:
    """Passes of the extractors alternate round by round and the fastest pass counts, so load from other jobs on
    a shared machine hits every extractor alike. Outputs are those of the last pass (extraction is deterministic)."""
    best: dict[tuple[str, str], float] = {}
    outputs: dict[tuple[str, str], list[str]] = {}
    for _ in range(repeat):
        for label, fn in extractors:
            for name, pages in sets.items():
                start = time.perf_counter()
                outputs[label, name] = [fn(page.html, page.url) for page in pages]
                elapsed = time.perf_counter() - start
                best[label, name] = min(best.get((label, name), elapsed), elapsed)
    return Run(outputs, best)


def set_rows(run: Run, labels: list[str], sets: dict[str, list[Page]]) -> list[tuple[str, str, dict]]:
    rows = []
    for label in labels:
        for name, pages in sets.items():
            metrics = score(run.outputs[label, name], pages)
            metrics["docs_s"] = len(pages) / run.seconds[label, name]
            rows.append((label, name, metrics))
    return rows


def measure_interleaved(extractors: list[tuple[str, Extractor]], sets: dict[str, list[Page]],
                        repeat: int) -> list[tuple[str, str, dict]]:
    """Rows (label, set, metrics), see run_interleaved."""
    return set_rows(run_interleaved(extractors, sets, repeat), [label for label, _ in extractors], sets)


def docs_per_second(run: Run, label: str, sets: dict[str, list[Page]]) -> float:
    """All pages over the sum of the fastest pass of each set."""
    return sum(len(p) for p in sets.values()) / sum(run.seconds[label, name] for name in sets)


def page_scores(run: Run, label: str, sets: dict[str, list[Page]]) -> list[tuple[Page, str, tuple]]:
    return [(page, out, prf(out, page.gold, page.lang))
            for name, pages in sets.items() for page, out in zip(pages, run.outputs[label, name])]


def groups(sets: dict[str, list[Page]]) -> list[tuple[str, Callable[[Page], bool]]]:
    """(row name, page filter): each page type and language present, then summary rows."""
    present = {(p.type, p.lang) for pages in sets.values() for p in pages}
    known = [t for t in TYPE_ORDER if any(t == typ for typ, _ in present)]
    known += sorted({typ for typ, _ in present} - set(TYPE_ORDER))
    rows: list[tuple[str, Callable[[Page], bool]]] = []
    for type_ in known:
        for lang in ("en", "zh"):
            if (type_, lang) in present:
                rows.append((f"{TYPE_NAMES.get(type_, type_)}, {lang}",
                             lambda p, t=type_, lg=lang: p.type == t and p.lang == lg))
    discussion = ("forum", "qa", "comments")
    for lang in ("en", "zh"):
        if any(t in discussion and lg == lang for t, lg in present):
            rows.append((f"**all forum + Q&A + comments, {lang}**",
                         lambda p, lg=lang: p.type in discussion and p.lang == lg))
    rows.append(("**all pages**", lambda p: True))
    return rows


def type_table(run: Run, labels: list[str], sets: dict[str, list[Page]]) -> tuple[str, str]:
    """(F1 table, precision/recall table) per page type and language; a docs/s row closes the first."""
    scored = {label: page_scores(run, label, sets) for label in labels}
    head = "| pages (type, language) | n | sites | " + " | ".join(labels) + " |"
    rule = "|---|---:|---:|" + "---:|" * len(labels)
    f1_lines, pr_lines = [head, rule], [head, rule]
    for name, keep in groups(sets):
        chosen = {label: [(p, o, s) for p, o, s in scored[label] if keep(p)] for label in labels}
        first = chosen[labels[0]]
        sites = len({p.site for p, _, _ in first})
        means = {label: mean_scores([s for _, _, s in chosen[label]], [o for _, o, _ in chosen[label]])
                 for label in labels}
        top = max(m["F1"] for m in means.values())
        cells = [f"**{m['F1']:.3f}**" if m["F1"] == top else f"{m['F1']:.3f}" for m in means.values()]
        f1_lines.append(f"| {name} | {len(first)} | {sites} | " + " | ".join(cells) + " |")
        pr_lines.append(f"| {name} | {len(first)} | {sites} | "
                        + " | ".join(f"{m['P']:.3f} / {m['R']:.3f}" for m in means.values()) + " |")
    f1_lines.append("| docs/s (all pages, one process) | | | "
                    + " | ".join(f"{docs_per_second(run, label, sets):.1f}" for label in labels) + " |")
    return "\n".join(f1_lines), "\n".join(pr_lines)


def _no_extraction(html: str, url: str | None, **options) -> ExtractResult:
    return ExtractResult(title="", text="x")


def round_trip_ms(sets: dict[str, list[Page]], repeat: int) -> tuple[float, float]:
    """(ms per page spent only on the child-process round trip, mean page size in KB): the page's bytes sent and
    decoded in the child, as the pipeline does, with a no-op extraction function there; all pages, fastest of
    `repeat` passes."""
    pages = [page.html for items in sets.values() for page in items]
    extractor = PageExtractor(timeout_s=10, extract_fn=_no_extraction)
    extractor.setup()
    try:
        extractor.extract(pages[0], None)  # child started and warm
        best = float("inf")
        for _ in range(repeat):
            start = time.perf_counter()
            for html in pages:
                extractor.extract(html, None)
            best = min(best, time.perf_counter() - start)
    finally:
        extractor.teardown()
    return 1000 * best / len(pages), sum(len(p) for p in pages) / len(pages) / 1024


def table(rows: list[tuple[str, str, dict]], set_sizes: dict[str, int]) -> str:
    lines = ["| extractor | set (pages) | precision | recall | F1 | docs/s | empty outputs |",
             "|---|---|---|---|---|---|---|"]
    for extractor, set_name, m in rows:
        lines.append(f"| {extractor} | {set_name} ({set_sizes[set_name]}) | {m['P']:.3f} | {m['R']:.3f} | "
                     f"**{m['F1']:.3f}** | {m['docs_s']:.1f} | {m['empty']} |")
    return "\n".join(lines)


def set_summary(sets: dict[str, list[Page]]) -> str:
    lines = ["| set | pages | types | languages |", "|---|---:|---|---|"]
    for name, pages in sets.items():
        types = Counter(p.type for p in pages)
        langs = Counter(p.lang for p in pages)
        lines.append(f"| {name} | {len(pages)} | " + ", ".join(f"{t} {n}" for t, n in sorted(types.items()))
                     + " | " + ", ".join(f"{lg} {n}" for lg, n in sorted(langs.items())) + " |")
    return "\n".join(lines)


def write_page_scores(path: Path, run: Run, labels: list[str], sets: dict[str, list[Page]]) -> None:
    """One line per page and extractor: scores and output size, no timings, so reruns give the same file."""
    lines = ["page\tset\ttype\tlang\textractor\tprecision\trecall\tf1\toutput_chars"]
    for label in labels:
        for page, out, (p, r, f) in page_scores(run, label, sets):
            lines.append(f"{page.id}\t{page.set}\t{page.type}\t{page.lang}\t{label}\t{p:.4f}\t{r:.4f}\t{f:.4f}\t"
                         f"{len(out)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", "utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=Path,
                        default=REPO.parent / "shared/corpus-samples/web/html_groundtruth")
    parser.add_argument("--fixtures", type=Path, default=REPO / "bench/data/extraction",
                        help="folder with truth.json and html/ (bench/make_extraction_fixtures.py)")
    parser.add_argument("--out", type=Path, default=REPO / "bench/results/extraction.md")
    parser.add_argument("--repeat", type=int, default=3,
                        help="interleaved timing passes per extractor (fastest counts)")
    parser.add_argument("--sets", default="", help="comma-separated set names to keep (default: all)")
    parser.add_argument("--no-variants", action="store_true", help="skip the table of our setting variants")
    parser.add_argument("--pages-out", type=Path,
                        help="also write per-page scores of the main columns (TSV, no timings)")
    args = parser.parse_args()

    sets, notes = load_shared_sets(args.samples)
    fixture_sets, fixture_notes = load_fixture_sets(args.fixtures)
    sets.update(fixture_sets)
    notes += fixture_notes
    if args.sets:
        wanted = [s.strip() for s in args.sets.split(",") if s.strip()]
        unknown = [s for s in wanted if s not in sets]
        if unknown:
            parser.error(f"unknown set(s) {unknown}; known: {list(sets)}")
        sets = {name: sets[name] for name in wanted}
    if not sets:
        parser.error("no ground-truth pages found (see --samples and --fixtures)")
    sizes = {name: len(pages) for name, pages in sets.items()}

    ours_label, traf_label, fast_label = ("ours: extract_html", "trafilatura.extract (defaults)",
                                          "trafilatura.extract(fast=True)")
    compared = [(ours_label, ours_extract_html), (traf_label, trafilatura_default), (fast_label, trafilatura_fast)]
    resiliparse = resiliparse_runner()
    if isinstance(resiliparse, str):
        notes.append(f"resiliparse column left out: {resiliparse}")
    else:
        compared.append(resiliparse)

    in_process = PageExtractor(timeout_s=0)
    isolated = PageExtractor(timeout_s=10)
    isolated.setup()
    pipeline = [
        ("ours: PageExtractor, in-process (timeout_s=0)", pipeline_runner(in_process)),
        ("ours: PageExtractor, child process (timeout_s=10)", pipeline_runner(isolated)),
    ]
    variants = [
        ("extract_html, favor_precision=False", lambda h, u: ours_extract_html(h, u, favor_precision=False)),
        ("extract_html, include_comments=True", lambda h, u: ours_extract_html(h, u, include_comments=True)),
        ("extract_html, include_tables=False", lambda h, u: ours_extract_html(h, u, include_tables=False)),
        ("extract_html, fast=True", lambda h, u: ours_extract_html(h, u, fast=True)),
        ("extract_html, confident_chars=None (fallback comparison on every page)",
         lambda h, u: ours_extract_html(h, u, confident_chars=None)),
        ("extract_html, threads=False", lambda h, u: ours_extract_html(h, u, threads=False)),
        ("extract_html, recall_retry_chars=0 (balanced pass only when precision mode finds nothing)",
         lambda h, u: ours_extract_html(h, u, recall_retry_chars=0)),
        ("extract_html with trafilatura's own XPath rules (cleaners.xpath_rules not installed)",
         ours_with_shipped_rules),
        ("extract_html, favor_recall=True, favor_precision=False",
         lambda h, u: ours_extract_html(h, u, favor_recall=True, favor_precision=False)),
    ]
    main_rows = compared + pipeline
    labels = [label for label, _ in compared]
    try:
        run = run_interleaved(main_rows, sets, args.repeat)
        variant_rows = [] if args.no_variants else measure_interleaved(variants, sets, 1)
    finally:
        isolated.teardown()
    rows = set_rows(run, [label for label, _ in main_rows], sets)

    overhead = docs_per_second(run, pipeline[0][0], sets) / docs_per_second(run, pipeline[1][0], sets) - 1
    trip_ms, page_kb = round_trip_ms(sets, args.repeat)
    default_ms = 1000 / docs_per_second(run, traf_label, sets)
    f1_table, pr_table = type_table(run, labels, sets)
    command = "python bench/extraction_quality.py " + " ".join(sys.argv[1:])
    report = [
        "# Main-text extraction: quality and speed",
        "",
        f"Command: `{command.strip()}` (from the repository root, venv python; trafilatura "
        f"{trafilatura.__version__}; 2-core machine shared with other jobs, so docs/s are noisy: "
        "compare rows of one run only).",
        f"Ours = `extract_html` defaults {DEFAULT_OPTIONS}. Token F1 per page (Chinese by character, "
        "English by lowercased word), mean over pages. docs/s: fastest of "
        f"{args.repeat} interleaved passes, one process, including each extractor's decoding of the raw bytes.",
        *(f"Note: {note}." for note in notes),
        "",
        "## Sets",
        "",
        set_summary(sets),
        "",
        "## F1 by page type and language (all sets together; best per row in bold)",
        "",
        f1_table,
        "",
        "Precision / recall of the same rows:",
        "",
        pr_table,
        "",
        "## Per set",
        "",
        table(rows, sizes),
        "",
        f"Time-limit overhead (PageExtractor with its child process vs in-process, all pages): "
        f"{overhead * 100:+.1f}% time per page (within run-to-run noise on this shared machine). "
        f"The round trip alone (the page's bytes decoded in the child, no-op extraction there, mean page "
        f"{page_kb:.0f} KB): {trip_ms:.2f} ms per page, against {default_ms:.1f} ms per page for trafilatura's "
        f"defaults ({100 * trip_ms / default_ms:.1f}%).",
        "",
    ]
    if variant_rows:
        report += ["## Variants of our settings evaluated in the same run (one timing pass)", "",
                   table(variant_rows, sizes), ""]
    text = "\n".join(report)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, "utf-8")
    if args.pages_out:
        write_page_scores(args.pages_out, run, labels, sets)


if __name__ == "__main__":
    main()
