"""`wudao report RUN_DIR`: RUN_DIR/report.html, one self-contained page (inline CSS, plots as embedded PNGs, no
external URL) about a text, dialogue or image-text run.

It reads only what the run already wrote, never the corpus: stats.json (the ledger and its histograms, see
`cleaners.histogram`), rejects/ (streamed once, for duplicate cluster sizes) and a shards manifest.json.
Sections: totals, funnel, drops by reason, lengths before/after, language mix, domains (records per dataType, and
tokens per label from the manifest), scores, duplicate clusters,
tokens per split; each plot has a table of its numbers under it, and a section without data says so in one line.
"""
from __future__ import annotations

import html
import json
import re
import zlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from cleaners.histogram import CHAR_LABELS, COSINE_LABELS, SCORE_LABELS
from pipelines.report_plots import bar_chart

REPORT = "report.html"
TOP_REASONS = 8  # drop reasons shown per stage; the rest are summed as "other"
CLUSTER_EDGES = (2, 3, 4, 5, 6, 11, 101, 1001)
CLUSTER_LABELS = ("2", "3", "4", "5", "6-10", "11-100", "101-1000", "1001+")
DUPLICATE = re.compile(r"^[\w.:-]*duplicate-of:(?P<target>.+)$")  # exact-/minhash-/url-/phash-duplicate-of


class ReportError(ValueError):
    """The folder cannot be reported on: no stats.json, one that is not a run's, or a bad shards folder."""


@dataclass
class Section:
    id: str
    title: str
    header: list[str] = field(default_factory=list)
    rows: list[list[Any]] = field(default_factory=list)
    image: str | None = None      # PNG data URI
    alt: str = ""
    empty: str | None = None      # said in one line instead of a plot and a table when there is no data
    note: str = ""


# --- inputs --------------------------------------------------------------------------------------------------------

def load_stats(run_dir: str) -> dict[str, Any]:
    """RUN_DIR/stats.json, checked for the fields the report uses; ReportError when missing or malformed."""
    path = FileSystems.join(run_dir, "stats.json")
    if not FileSystems.exists(path):
        raise ReportError(f"no stats.json in {run_dir}: not the output folder of a finished wudao run")
    try:
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as fh:
            stats = json.loads(fh.read().decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ReportError(f"{path} is not valid JSON ({exc})") from None
    problem = _stats_problem(stats)
    if problem:
        raise ReportError(f"{path} is not a wudao stats.json: {problem}")
    return stats


def _stats_problem(stats: Any) -> str | None:
    if not isinstance(stats, dict):
        return "not a JSON object"
    totals, stages = stats.get("totals"), stats.get("stages")
    if not isinstance(totals, dict) or not _ints(totals, "records_in", "kept", "dropped"):
        return "totals lacks records_in, kept or dropped"
    if not isinstance(stages, list):
        return "stages is not a list"
    for stage in stages:
        if not (isinstance(stage, dict) and isinstance(stage.get("stage"), str)
                and _ints(stage, "in", "out", "dropped") and _ints({"created": 0, **stage}, "created")
                and isinstance(stage.get("dropped_by_reason"), dict) and _ints(stage["dropped_by_reason"])):
            return f"bad stage entry {json.dumps(stage)[:80]}"
    hists = stats.get("histograms", {})
    if not (isinstance(hists, dict) and all(isinstance(names, dict) and all(
            isinstance(buckets, dict) and _ints(buckets) for buckets in names.values()) for names in hists.values())):
        return "histograms is not {stage: {name: {bucket: count}}}"
    return None


def _ints(entry: dict[str, Any], *keys: str) -> bool:
    """Whether `entry[key]` is an int for each key (every key when none is named)."""
    return all(isinstance(entry.get(k), int) and not isinstance(entry.get(k), bool) for k in keys or entry)


def duplicate_clusters(run_dir: str) -> tuple[dict[str, dict[int, int]], int]:
    """Streams RUN_DIR/rejects/part-*: {stage: {cluster size: clusters}} for `*-duplicate-of:<id>` drops (a cluster
    is the kept record plus the records dropped as its duplicates), and how many lines or files were unreadable
    (a damaged file counts once, after the lines read before the damage)."""
    pattern = FileSystems.join(run_dir, "rejects", "part-*")
    paths = sorted(m.path for result in FileSystems.match([pattern]) for m in result.metadata_list)
    duplicates: Counter = Counter()  # (stage, kept id) -> records dropped as its duplicates
    bad = 0
    for path in paths:
        try:
            for row in _reject_rows(path):
                if row is None:
                    bad += 1
                elif match := DUPLICATE.match(row["reason"]):
                    duplicates[(row["stage"], match["target"])] += 1
        except (OSError, EOFError, zlib.error):  # a truncated or corrupt .gz
            bad += 1
    sizes: dict[str, Counter] = {}
    for (stage, _), n in duplicates.items():
        sizes.setdefault(stage, Counter())[n + 1] += 1
    return {stage: dict(sorted(c.items())) for stage, c in sorted(sizes.items())}, bad


def _reject_rows(path: str):
    """{"stage", "reason"} per line of one rejects file (None for a line that is not a reject row)."""
    with FileSystems.open(path) as fh:  # compression from the name: .gz is gunzipped while streaming
        for line in iter(fh.readline, b""):
            try:
                row = json.loads(line)
            except ValueError:
                row = None
            if isinstance(row, dict) and isinstance(row.get("reason"), str):
                yield {"stage": str(row.get("stage", "")), "reason": row["reason"]}
            else:
                yield None


def cluster_bucket(size: int) -> str:
    return next(label for edge, label in zip(reversed(CLUSTER_EDGES), reversed(CLUSTER_LABELS)) if size >= edge)


def token_counts(run_dir: str, shards_dir: str | None) -> tuple[dict[str, dict[str, int]] | None, dict[str, int]]:
    """{split: {shards, samples, tokens}} from `shards_dir` (or RUN_DIR/shards) manifest.json (None without one),
    and its tokens per domain label ({} when the manifest does not count them)."""
    from shards.manifest import read_manifest

    manifest = read_manifest(shards_dir or FileSystems.join(run_dir, "shards"))
    if manifest is None:
        if shards_dir:
            raise ReportError(f"{shards_dir}: no readable manifest.json (not a `wudao shards` output folder)")
        return None, {}
    splits: dict[str, dict[str, int]] = {}
    for entry in manifest["shards"]:
        if not (isinstance(entry, dict) and _ints(entry, "samples", "tokens")):
            raise ReportError(f"bad shard entry in the manifest: {json.dumps(entry)[:80]}")
        split = splits.setdefault(str(entry.get("split", "?")), {"shards": 0, "samples": 0, "tokens": 0})
        split["shards"] += 1
        split["samples"] += entry["samples"]
        split["tokens"] += entry["tokens"]
    labels = manifest.get("tokens_per_label")
    labels = labels if isinstance(labels, dict) and _ints(labels) else {}
    return dict(sorted(splits.items())), labels


# --- sections ------------------------------------------------------------------------------------------------------

def totals_section(stats: dict[str, Any]) -> Section:
    totals = stats["totals"]
    rows = [["records in", totals["records_in"]], ["kept", totals["kept"]], ["dropped", totals["dropped"]]]
    if totals.get("created"):
        rows.append(["created by stages", totals["created"]])
    note = f"output format: {stats['format']}" if stats.get("format") else ""
    return Section("totals", "Totals", ["", "records"], rows, note=note)


def funnel_section(stats: dict[str, Any]) -> Section:
    stages = stats["stages"]
    if not stages:
        return Section("funnel", "Records through the stages", empty="No stage saw a record.")
    created = any(s.get("created") for s in stages)
    header = ["stage", "in", *(["created"] if created else []), "out", "dropped"]
    rows = [[s["stage"], s["in"], *([s.get("created", 0)] if created else []), s["out"], s["dropped"]] for s in stages]
    names = [s["stage"] for s in stages]
    image = bar_chart(names, {"in": [s["in"] for s in stages], "out": [s["out"] for s in stages]},
                      "Records in and out per stage", "records", horizontal=True)
    return Section("funnel", "Records through the stages", header, rows, image,
                   "Funnel: records in and out of each stage, in pipeline order")


def drops_section(stats: dict[str, Any], top: int = TOP_REASONS) -> Section:
    rows = []
    for stage in stats["stages"]:
        reasons = sorted(stage["dropped_by_reason"].items(), key=lambda kv: (-kv[1], kv[0]))
        rows += [[stage["stage"], reason, n] for reason, n in reasons[:top]]
        if len(reasons) > top:
            rows.append([stage["stage"], f"other ({len(reasons) - top} reasons)", sum(n for _, n in reasons[top:])])
    if not rows:
        return Section("drops", "Drops by reason", empty="No record was dropped.")
    image = bar_chart([f"{stage}: {reason}" for stage, reason, _ in rows], {"dropped": [n for *_, n in rows]},
                      f"Dropped records by stage and reason (top {top} per stage)", "records", horizontal=True)
    return Section("drops", "Drops by reason", ["stage", "reason", "dropped"], rows, image,
                   "Dropped records per stage and reason")


def _span(labels: tuple[str, ...], *hists: dict[str, int]) -> list[str]:
    """The labels from the first to the last bucket any histogram fills (empty buckets inside stay)."""
    filled = [i for i, label in enumerate(labels) if any(h.get(label) for h in hists)]
    return list(labels[filled[0]:filled[-1] + 1]) if filled else []


def lengths_section(histograms: dict[str, Any]) -> Section:
    series = {name: hist for name, hist in (("before (extracted)", histograms.get("extract", {}).get("chars")),
                                            ("after (written)", histograms.get("write", {}).get("chars"))) if hist}
    if not series:
        return Section("lengths", "Document length", empty="stats.json has no length histograms "
                       "(the run is older than the histograms in the ledger).")
    labels = _span(CHAR_LABELS, *series.values())
    rows = [[label, *(hist.get(label, 0) for hist in series.values())] for label in labels]
    image = bar_chart(labels, {name: [hist.get(label, 0) for label in labels] for name, hist in series.items()},
                      "Document length", "documents", "characters")
    note = "" if len(series) == 2 else "Only lengths at the write are counted for this kind of run."
    return Section("lengths", "Document length", ["characters", *series], rows, image,
                   "Histogram of document lengths in characters, " + " and ".join(series), note=note)


def languages_section(histograms: dict[str, Any]) -> Section:
    langs = histograms.get("write", {}).get("lang")
    if not langs:
        return Section("languages", "Language mix", empty="stats.json has no language counts of the kept records.")
    total = sum(langs.values())
    rows = [[lang, n, f"{n / total:.1%}"] for lang, n in langs.items()]
    image = bar_chart(list(langs), {"records": list(langs.values())}, "Kept records by language", "records",
                      "language")
    return Section("languages", "Language mix", ["language", "records", "share"], rows, image,
                   "Kept records per language")


def domains_section(histograms: dict[str, Any], labels: dict[str, int] | None) -> Section:
    """Kept records per WuDao `dataType` (stats.json), and tokens per label when a shards manifest counts them.
    The plot names labels in English (the default font has no Chinese glyphs); the table keeps them as written."""
    from cleaners.domain import english_name

    kinds = histograms.get("write", {}).get("dataType")
    if not kinds:
        return Section("domains", "Domains (dataType)", empty="stats.json has no dataType counts of the kept records.")
    total = sum(kinds.values())
    header = ["dataType", "records", "share"] + (["tokens in shards"] if labels else [])
    rows = [[kind, n, f"{n / total:.1%}"] + ([labels.get(kind, 0)] if labels else []) for kind, n in kinds.items()]
    image = bar_chart([english_name(kind) for kind in kinds], {"records": list(kinds.values())},
                      "Kept records by dataType", "records", "dataType")
    return Section("domains", "Domains (dataType)", header, rows, image, "Kept records per WuDao domain label")


def scores_section(histograms: dict[str, Any]) -> Section:
    scores = {name.split(":", 1)[1]: hist for name, hist in histograms.get("write", {}).items()
              if name.startswith("score:") and hist}
    if not scores:
        return Section("scores", "Quality scores", empty="The kept records carry no scores.")
    labels = _span(SCORE_LABELS, *scores.values())
    rows = [[label, *(hist.get(label, 0) for hist in scores.values())] for label in labels]
    image = bar_chart(labels, {name: [hist.get(label, 0) for label in labels] for name, hist in scores.items()},
                      "Score distributions of the kept records", "records", "score")
    return Section("scores", "Quality scores", ["score", *scores], rows, image,
                   "Histogram of the kept records' scores: " + ", ".join(scores))


def alignment_section(stats: dict[str, Any], histograms: dict[str, Any]) -> Section:
    """Image-text runs: the alignment scores of the scored pairs, their strength tiers and caption kinds."""
    scores = histograms.get("alignment", {}).get("alignment_score")
    if not scores:
        return Section("alignment", "Image-text alignment", empty="No alignment stage in this run.")
    labels = _span(COSINE_LABELS, scores)
    rows = [[label, scores.get(label, 0)] for label in labels]
    image = bar_chart(labels, {"pairs": [scores.get(label, 0) for label in labels]},
                      "Alignment scores (cosine) of the scored pairs", "pairs", "score")
    stage = next((s for s in stats.get("stages", []) if s.get("stage") == "alignment"), {})
    tiers = {name.split(":", 1)[1]: n for name, n in (stage.get("counts") or {}).items() if name.startswith("tier:")}
    kinds = histograms.get("caption_length", {}).get("caption_kind") or {}
    note = ("Kept pairs by strength / caption kind: " + ", ".join(f"{t} {n}" for t, n in sorted(tiers.items()))
            + ". Captions by kind: " + (", ".join(f"{k} {n}" for k, n in kinds.items()) or "none") + ".")
    return Section("alignment", "Image-text alignment", ["score", "pairs"], rows, image,
                   "Histogram of the alignment scores", note=note)


def duplicates_section(clusters: dict[str, dict[int, int]], bad_lines: int) -> Section:
    bad = f" {bad_lines} unreadable lines or damaged files in rejects/ were skipped." if bad_lines else ""
    if not clusters:
        return Section("duplicates", "Duplicate clusters",
                       empty="No record was dropped as a duplicate of another." + bad)
    bucketed = {stage: Counter() for stage in clusters}
    for stage, sizes in clusters.items():
        for size, n in sizes.items():
            bucketed[stage][cluster_bucket(size)] += n
    labels = list(CLUSTER_LABELS[:max(4, len(_span(CLUSTER_LABELS, *bucketed.values())))])  # at least 2 to 5
    rows = [[stage, label, counts[label]] for stage, counts in bucketed.items() for label in labels if counts[label]]
    image = bar_chart(labels, {stage: [counts[label] for label in labels] for stage, counts in bucketed.items()},
                      "Duplicate clusters by size (kept record + its duplicates)", "clusters",
                      "records in the cluster")
    note = "; ".join(f"{stage}: clusters {sum(sizes.values())}, duplicates dropped "
                     f"{sum((s - 1) * n for s, n in sizes.items())}, largest {max(sizes)}"
                     for stage, sizes in clusters.items()) + "." + bad
    return Section("duplicates", "Duplicate clusters", ["stage", "cluster size", "clusters"], rows, image,
                   "Histogram of duplicate cluster sizes per dedup stage", note=note)


def tokens_section(splits: dict[str, dict[str, int]] | None) -> Section:
    if not splits:
        return Section("tokens", "Tokens per split", empty="No shards manifest (give --shards DIR, or keep the "
                       "shards in RUN_DIR/shards).")
    rows = [[split, c["shards"], c["samples"], c["tokens"]] for split, c in splits.items()]
    image = bar_chart(list(splits), {"tokens": [c["tokens"] for c in splits.values()]}, "Tokens per split",
                      "tokens", "split")
    return Section("tokens", "Tokens per split", ["split", "shards", "samples", "tokens"], rows, image,
                   "Tokens per split in the shards")


def build_sections(stats: dict[str, Any], clusters: dict[str, dict[int, int]], bad_lines: int,
                   splits: dict[str, dict[str, int]] | None, labels: dict[str, int] | None = None) -> list[Section]:
    histograms = stats.get("histograms") or {}
    image_text = any(s.get("stage") == "caption_length" for s in stats.get("stages", []))
    return [totals_section(stats), funnel_section(stats), drops_section(stats), lengths_section(histograms),
            languages_section(histograms), domains_section(histograms, labels), scores_section(histograms),
            *([alignment_section(stats, histograms)] if image_text else []), duplicates_section(clusters, bad_lines),
            tokens_section(splits)]


# --- HTML ----------------------------------------------------------------------------------------------------------

CSS = """
body { font-family: sans-serif; margin: 2em auto; max-width: 60em; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; border-bottom: 1px solid #ccc; padding-bottom: .2em; }
section { margin-bottom: 2.5em; }
img { max-width: 100%; display: block; margin: .5em 0; }
table.numbers { border-collapse: collapse; font-size: .9em; }
table.numbers th, table.numbers td { border: 1px solid #ddd; padding: .2em .6em; }
table.numbers td.n { text-align: right; font-variant-numeric: tabular-nums; }
p.empty, p.note, p.meta { color: #555; }
"""


def _cell(value: Any) -> str:
    if isinstance(value, int):
        return f'<td class="n">{value:,}</td>'
    return f"<td>{html.escape(str(value))}</td>"


def render_section(section: Section) -> str:
    parts = [f'<section id="{section.id}">', f"<h2>{html.escape(section.title)}</h2>"]
    if section.empty is not None:
        parts.append(f'<p class="empty">{html.escape(section.empty)}</p>')
    else:
        if section.image:
            parts.append(f'<img src="{section.image}" alt="{html.escape(section.alt)}">')
        parts.append('<table class="numbers"><thead><tr>'
                     + "".join(f"<th>{html.escape(h)}</th>" for h in section.header) + "</tr></thead><tbody>")
        parts += ["<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in section.rows]
        parts.append("</tbody></table>")
    if section.note:
        parts.append(f'<p class="note">{html.escape(section.note)}</p>')
    parts.append("</section>")
    return "\n".join(parts)


def render_html(run_dir: str, sections: list[Section]) -> str:
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>wudao report: {html.escape(run_dir)}</title>", f"<style>{CSS}</style></head><body>",
        "<h1>wudao report</h1>", f'<p class="meta">run folder: {html.escape(run_dir)}</p>',
        *(render_section(s) for s in sections), "</body></html>", ""])


def write_report(run_dir: str, shards_dir: str | None = None) -> str:
    """Write RUN_DIR/report.html (atomically: temporary name, then rename) and return its path."""
    stats = load_stats(run_dir)
    splits, labels = token_counts(run_dir, shards_dir)
    clusters, bad_lines = duplicate_clusters(run_dir)
    page = render_html(run_dir, build_sections(stats, clusters, bad_lines, splits, labels))
    final = FileSystems.join(run_dir, REPORT)
    tmp = final + ".tmp"
    with FileSystems.create(tmp) as fh:
        fh.write(page.encode("utf-8"))
    if FileSystems.exists(final):
        FileSystems.delete([final])
    FileSystems.rename([tmp], [final])
    return final
