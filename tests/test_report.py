"""`wudao report`: the ledger's histograms against the corpus, report.html's plots and tables against stats.json,
rejects/ and the shards manifest, bad run folders, and every plot loading in headless Chromium."""
from __future__ import annotations

import base64
import gzip
import json
import os
import re
import shutil
import subprocess
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import pytest

from cleaners.histogram import CHAR_LABELS, SCORE_LABELS, category_bucket, chars_bucket, score_bucket
from pipelines.cli import main
from pipelines.run import run_text, sample_inputs
from pipelines.ledger import build_stats, dumps
from pipelines.report import TOP_REASONS, cluster_bucket, duplicate_clusters, write_report

PLOTTED = ["funnel", "drops", "lengths", "languages", "domains", "scores", "duplicates", "tokens"]


# --- a real run of the text pipeline on the embedded sample, with shards ---------------------------------------------

@pytest.fixture(scope="module")
def run(tmp_path_factory) -> SimpleNamespace:
    """The sample crawl through `run_text`, a tokenizer and shards, then `wudao report` (10-20 s: tests using it
    are marked slow)."""
    from pipelines.shards_job import write_shards
    from pipelines.tokenizer_job import train_tokenizer

    root = tmp_path_factory.mktemp("report")
    text, tok, shards = root / "text", root / "tok", root / "shards"
    stats = run_text(sample_inputs(), str(text), None, [])
    corpus = str(text / "corpus" / "part-*.jsonl.gz")
    train_tokenizer([corpus], str(tok), vocab_size=2000, beam_args=[])
    manifest = write_shards([corpus], str(tok), str(shards), shard_size_bytes=64_000, val_fraction=0.1, beam_args=[])
    assert main(["report", str(text), "--shards", str(shards)]) == 0
    page = (text / "report.html").read_text(encoding="utf-8")
    return SimpleNamespace(dir=text, stats=stats, manifest=manifest, shards=shards, page=page,
                           corpus=read_jsonl_gz(text / "corpus"), rejects=read_jsonl_gz(text / "rejects"),
                           sections=parse_report(page))


def read_jsonl_gz(folder: Path) -> list[dict]:
    rows = []
    for path in sorted(folder.glob("part-*.jsonl.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            rows += [json.loads(line) for line in fh if line.strip()]
    return rows


class ReportParser(HTMLParser):
    """Per <section id>: its <img> attributes, table header and rows (numbers as ints), and `p.empty` text."""

    def __init__(self):
        super().__init__()
        self.sections: dict[str, dict] = {}
        self.current: dict | None = None
        self.cell: list[str] | None = None
        self.numeric = False
        self.in_empty = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section":
            self.current = self.sections[attrs["id"]] = {"imgs": [], "header": [], "rows": [], "empty": ""}
        elif tag == "img":
            self.current["imgs"].append(attrs)
        elif tag == "tr":
            self.current["rows"].append([])
        elif tag in ("td", "th"):
            self.cell = []
            self.numeric = attrs.get("class") == "n"
        elif tag == "p" and attrs.get("class") == "empty":
            self.in_empty = True

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self.cell is not None:
            text = "".join(self.cell)
            self.current["rows"][-1].append(int(text.replace(",", "")) if self.numeric else text)
            self.cell = None
        elif tag == "p":
            self.in_empty = False
        elif tag == "thead":
            self.current["header"] = self.current["rows"].pop()

    def handle_data(self, data):
        if self.cell is not None:
            self.cell.append(data)
        elif self.in_empty:
            self.current["empty"] += data


def parse_report(page: str) -> dict[str, dict]:
    parser = ReportParser()
    parser.feed(page)
    return parser.sections


# --- the histograms in stats.json ------------------------------------------------------------------------------------

def test_bucket_edges():
    assert [chars_bucket(n) for n in (0, 49, 50, 99, 100, 999, 1000, 99_999, 100_000, 10**9)] == [
        "0-49", "0-49", "50-99", "50-99", "100-199", "500-999", "1000-1999", "50000-99999", "100000+", "100000+"]
    assert len(CHAR_LABELS) == 12 and len(SCORE_LABELS) == 10
    assert [score_bucket(v) for v in (0.0, 0.0999, 0.1, 0.3, 0.7, 0.95, 1.0, 1.0000001, -0.2)] == [
        "0.0-0.1", "0.0-0.1", "0.1-0.2", "0.3-0.4", "0.7-0.8", "0.9-1.0", "0.9-1.0", "0.9-1.0", "0.0-0.1"]
    assert [score_bucket(v) for v in (float("nan"), float("inf"), "0.5", None, True)] == [None] * 5
    assert [category_bucket(v) for v in ("zh", "", None, "a|b")] == ["zh", "unknown", "unknown", "a/b"]


@pytest.mark.slow
def test_write_histograms_equal_a_recount_of_the_corpus(run):
    chars, langs, kinds, scores = Counter(), Counter(), Counter(), {}
    for record in run.corpus:
        chars[chars_bucket(len(record["content"]))] += 1
        langs[category_bucket(record["lang"])] += 1
        kinds[category_bucket(record["dataType"])] += 1
        for name, value in record["scores"].items():
            scores.setdefault(f"score:{name}", Counter())[score_bucket(value)] += 1
    written = run.stats["histograms"]["write"]
    assert written == {"chars": dict(chars), "lang": dict(langs), "dataType": dict(kinds),
                       **{k: dict(v) for k, v in scores.items()}}
    assert list(written["chars"]) == [label for label in CHAR_LABELS if label in chars]  # stable bucket order
    kept = run.stats["totals"]["kept"]
    assert sum(written["chars"].values()) == sum(written["lang"].values()) == kept == len(run.corpus) > 0
    assert sum(written["score:lang"].values()) == kept


@pytest.mark.slow
def test_extract_histogram_counts_every_extracted_page(run):
    extract = next(s for s in run.stats["stages"] if s["stage"] == "extract")
    before = run.stats["histograms"]["extract"]["chars"]
    assert sum(before.values()) == extract["out"] > 0
    assert set(before) <= set(CHAR_LABELS)
    assert set(run.stats["histograms"]) == {"extract", "domain", "write"}
    domain = next(s for s in run.stats["stages"] if s["stage"] == "domain")     # records per dataType label
    assert sum(run.stats["histograms"]["domain"]["dataType"].values()) == domain["in"] > 0


# --- report.html -------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_report_is_self_contained_with_one_image_per_plot(run):
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", run.page, re.I)
    assert "<link" not in run.page and "<script" not in run.page
    assert list(run.sections) == ["totals", *PLOTTED]
    assert run.sections["totals"]["imgs"] == []
    for name in PLOTTED:
        imgs = run.sections[name]["imgs"]
        assert len(imgs) == 1, name
        assert imgs[0]["alt"].strip(), name
        prefix = "data:image/png;base64,"
        assert imgs[0]["src"].startswith(prefix)
        assert base64.b64decode(imgs[0]["src"][len(prefix):]).startswith(b"\x89PNG\r\n\x1a\n")
    assert run.page.count("<img") == len(PLOTTED)


@pytest.mark.slow
def test_totals_funnel_and_drops_tables_match_stats(run):
    stats, sections = run.stats, run.sections
    totals = stats["totals"]
    assert sections["totals"]["rows"] == [["records in", totals["records_in"]], ["kept", totals["kept"]],
                                          ["dropped", totals["dropped"]]]
    assert sections["funnel"]["header"] == ["stage", "in", "out", "dropped"]
    assert sections["funnel"]["rows"] == [[s["stage"], s["in"], s["out"], s["dropped"]] for s in stats["stages"]]
    expected = []
    for stage in stats["stages"]:
        reasons = sorted(stage["dropped_by_reason"].items(), key=lambda kv: (-kv[1], kv[0]))
        expected += [[stage["stage"], reason, n] for reason, n in reasons[:TOP_REASONS]]
        if len(reasons) > TOP_REASONS:
            expected.append([stage["stage"], f"other ({len(reasons) - TOP_REASONS} reasons)",
                             sum(n for _, n in reasons[TOP_REASONS:])])
    assert sections["drops"]["rows"] == expected
    assert sum(row[2] for row in expected) == totals["dropped"]
    assert any(row[1].startswith("other (") for row in expected)  # the sample's read stage has > TOP_REASONS


@pytest.mark.slow
def test_histogram_tables_match_stats(run):
    hist, sections = run.stats["histograms"], run.sections
    before, after = hist["extract"]["chars"], hist["write"]["chars"]
    assert sections["lengths"]["header"] == ["characters", "before (extracted)", "after (written)"]
    rows = sections["lengths"]["rows"]
    assert {row[0]: row[1] for row in rows if row[1]} == before
    assert {row[0]: row[2] for row in rows if row[2]} == after
    first, last = CHAR_LABELS.index(rows[0][0]), CHAR_LABELS.index(rows[-1][0])
    assert [row[0] for row in rows] == list(CHAR_LABELS[first:last + 1])  # contiguous, in bucket order
    assert sum(rows[0][1:]) > 0 and sum(rows[-1][1:]) > 0  # from the first filled bucket to the last
    kept = run.stats["totals"]["kept"]
    assert sections["languages"]["rows"] == [[lang, n, f"{n / kept:.1%}"] for lang, n in hist["write"]["lang"].items()]
    assert sections["scores"]["header"] == ["score", "lang"]
    kinds = hist["write"]["dataType"]                      # records per dataType, and tokens per label in shards
    assert sections["domains"]["header"] == ["dataType", "records", "share", "tokens in shards"]
    assert sections["domains"]["rows"] == [[kind, n, f"{n / kept:.1%}", run.manifest["tokens_per_label"].get(kind, 0)]
                                           for kind, n in kinds.items()]
    assert sum(row[3] for row in sections["domains"]["rows"]) == sum(run.manifest["tokens_per_label"].values()) > 0
    assert {row[0]: row[1] for row in sections["scores"]["rows"] if row[1]} == hist["write"]["score:lang"]


@pytest.mark.slow
def test_duplicate_clusters_match_a_recount_of_rejects(run):
    per_target = Counter()
    for row in run.rejects:
        head, sep, target = row["reason"].partition("-of:")
        if sep and head.endswith("duplicate"):
            per_target[(row["stage"], target)] += 1
    sizes: dict[str, Counter] = {}
    for (stage, _), n in per_target.items():
        sizes.setdefault(stage, Counter())[n + 1] += 1
    assert per_target, "the sample has exact and near duplicates"
    assert duplicate_clusters(str(run.dir)) == ({s: dict(c) for s, c in sizes.items()}, 0)
    bucketed = Counter()
    for stage, counts in sizes.items():
        for size, n in counts.items():
            bucketed[(stage, cluster_bucket(size))] += n
    assert {(stage, size): n for stage, size, n in run.sections["duplicates"]["rows"]} == bucketed
    dropped = {s["stage"]: s["dropped"] for s in run.stats["stages"]}
    for stage, counts in sizes.items():  # a cluster of k records dropped k - 1 of them
        assert sum((k - 1) * n for k, n in counts.items()) == dropped[stage]


@pytest.mark.slow
def test_token_table_matches_the_manifest(run):
    expected = {}
    for entry in run.manifest["shards"]:
        split = expected.setdefault(entry["split"], [entry["split"], 0, 0, 0])
        split[1] += 1
        split[2] += entry["samples"]
        split[3] += entry["tokens"]
    assert run.sections["tokens"]["header"] == ["split", "shards", "samples", "tokens"]
    assert run.sections["tokens"]["rows"] == [expected[k] for k in sorted(expected)]
    assert {row[0] for row in run.sections["tokens"]["rows"]} == {"train", "val"}


@pytest.mark.slow
def test_shards_in_the_run_folder_are_found_and_missing_ones_said(run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run.dir, copy)
    sections = parse_report(Path(write_report(str(copy))).read_text(encoding="utf-8"))
    assert sections["tokens"]["imgs"] == [] and "No shards manifest" in sections["tokens"]["empty"]
    shutil.copytree(run.shards, copy / "shards")
    sections = parse_report(Path(write_report(str(copy))).read_text(encoding="utf-8"))
    assert sections["tokens"]["rows"] == run.sections["tokens"]["rows"]


# --- small hand-made run folders --------------------------------------------------------------------------------------

def write_run(folder: Path, counts: dict[str, int], stage_order: list[str], rejects: list[str] | None = None) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "stats.json").write_text(dumps(build_stats(counts, stage_order)), encoding="utf-8")
    if rejects is not None:
        (folder / "rejects").mkdir()
        with gzip.open(folder / "rejects" / "part-00000-of-00001.jsonl.gz", "wt", encoding="utf-8") as fh:
            fh.write("".join(line + "\n" for line in rejects))
    return str(folder)


def test_sections_without_data_say_so_in_one_line(tmp_path):
    run_dir = write_run(tmp_path / "bare", {"read|in": 2, "read|out": 2, "write|in": 2, "write|out": 2},
                        ["read", "write"])
    sections = parse_report(Path(write_report(run_dir)).read_text(encoding="utf-8"))
    assert len(sections["funnel"]["imgs"]) == 1
    for name in ("drops", "lengths", "languages", "domains", "scores", "duplicates", "tokens"):
        assert sections[name]["imgs"] == [] and sections[name]["rows"] == [], name
        assert sections[name]["empty"].strip() and "\n" not in sections[name]["empty"].strip(), name


def test_dialogue_and_image_text_shapes(tmp_path):
    # a dialogue run: a stage that creates records, lengths only at the write, no scores
    counts = {"read|in": 2, "read|out": 2, "split|in": 2, "split|created": 1, "split|out": 3,
              "write|in": 3, "write|out": 3, "write|hist|chars|0-49": 3, "write|hist|lang|zh": 3}
    page = Path(write_report(write_run(tmp_path / "dlg", counts, ["read", "split", "write"]))).read_text("utf-8")
    sections = parse_report(page)
    assert sections["funnel"]["header"] == ["stage", "in", "created", "out", "dropped"]
    assert sections["funnel"]["rows"][1] == ["split", 2, 1, 3, 0]
    assert sections["totals"]["rows"][-1] == ["created by stages", 1]
    assert sections["lengths"]["header"] == ["characters", "after (written)"]
    assert sections["lengths"]["rows"] == [["0-49", 3]]
    assert sections["languages"]["rows"] == [["zh", 3, "100.0%"]]
    assert "no scores" in sections["scores"]["empty"]


def test_image_text_alignment_section(tmp_path):
    counts = {"read|in": 3, "read|out": 3, "write|in": 3, "write|out": 3,
              "caption_length|in": 3, "caption_length|out": 3, "caption_length|hist|caption_kind|alt": 2,
              "caption_length|hist|caption_kind|description": 1, "alignment|in": 3, "alignment|out": 3,
              "alignment|hist|alignment_score|-0.1-0.0": 1, "alignment|hist|alignment_score|0.3-0.4": 2,
              "alignment|count|tier:strong/alt": 2, "alignment|count|tier:weak/description": 1}
    page = Path(write_report(write_run(tmp_path / "img", counts, ["read", "caption_length", "alignment", "write"]))
                ).read_text("utf-8")
    section = parse_report(page)["alignment"]
    assert section["rows"] == [["-0.1-0.0", 1], ["0.0-0.1", 0], ["0.1-0.2", 0], ["0.2-0.3", 0], ["0.3-0.4", 2]]
    assert len(section["imgs"]) == 1
    assert "strong/alt 2, weak/description 1" in page and "alt 2, description 1" in page
    bare_counts = {"read|in": 1, "read|out": 1, "caption_length|in": 1, "caption_length|out": 1, "write|in": 1,
                   "write|out": 1}
    bare = parse_report(Path(write_report(write_run(tmp_path / "bare", bare_counts,
                                                    ["read", "caption_length", "write"]))).read_text("utf-8"))
    assert "No alignment stage" in bare["alignment"]["empty"]


def test_rejects_with_chains_and_bad_lines(tmp_path):
    rows = [{"stage": "phash", "reason": f"phash-duplicate-of:K{i % 2}"} for i in range(5)]  # K0: 3, K1: 2
    rows += [{"stage": "exact_dedup", "reason": "exact-duplicate-of:A"}, {"stage": "read", "reason": "request"}]
    lines = [json.dumps(r) for r in rows] + ["not json", "[1, 2]", '{"reason": 5}']
    run_dir = write_run(tmp_path / "img", {"read|in": 1, "read|out": 1, "write|in": 1, "write|out": 1},
                        ["read", "write"], lines)
    assert duplicate_clusters(run_dir) == ({"exact_dedup": {2: 1}, "phash": {3: 1, 4: 1}}, 3)
    # a truncated part: the lines before the damage count, the damage counts once, nothing raises
    whole = gzip.compress("".join(json.dumps({"stage": "exact_dedup", "reason": f"exact-duplicate-of:{t}"}) + "\n"
                                  for t in "BB" + "x" * 4000).encode())
    (Path(run_dir) / "rejects" / "part-00001-of-00002.jsonl.gz").write_bytes(whole[:len(whole) // 2])
    clusters, bad = duplicate_clusters(run_dir)
    assert clusters["exact_dedup"][3] == 1 and bad == 4  # B: kept + 2 duplicates
    assert "4 unreadable lines or damaged files in rejects/ were skipped" in Path(write_report(run_dir)).read_text()
    (Path(run_dir) / "rejects" / "part-00001-of-00002.jsonl.gz").unlink()
    sections = parse_report(Path(write_report(run_dir)).read_text(encoding="utf-8"))
    assert sections["duplicates"]["rows"] == [["exact_dedup", "2", 1], ["phash", "3", 1], ["phash", "4", 1]]
    assert [cluster_bucket(n) for n in (2, 5, 6, 10, 11, 100, 101, 1000, 1001, 10**7)] == [
        "2", "5", "6-10", "6-10", "11-100", "11-100", "101-1000", "101-1000", "1001+", "1001+"]


@pytest.mark.parametrize("content, message", [
    (None, "no stats.json"),
    ("{not json", "not valid JSON"),
    ('{"totals": 1, "stages": []}', "totals lacks"),
    ('{"totals": {"records_in": 1, "kept": 1, "dropped": 0}, "stages": [{"stage": "x"}]}', "bad stage entry"),
    ('{"totals": {"records_in": 1, "kept": 1, "dropped": 0}, "stages": [], "histograms": {"w": 3}}', "histograms"),
])
def test_bad_run_dir_is_a_clear_error(tmp_path, capsys, content, message):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    if content is not None:
        (run_dir / "stats.json").write_text(content, encoding="utf-8")
    assert main(["report", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("wudao report: ") and message in err and "Traceback" not in err
    assert not (run_dir / "report.html").exists()


def test_bad_shards_folder_is_a_clear_error(tmp_path, capsys):
    run_dir = write_run(tmp_path / "run", {"read|in": 1, "read|out": 1, "write|in": 1, "write|out": 1},
                        ["read", "write"])
    assert main(["report", run_dir, "--shards", str(tmp_path / "nowhere")]) == 2
    assert "no readable manifest.json" in capsys.readouterr().err


# --- rendering in a real browser ----------------------------------------------------------------------------------

IMAGE_CHECK = """<script>
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (img) { return img.complete && img.naturalWidth > 0; }).length;
  var p = document.createElement("p");
  p.id = "img-check";
  p.textContent = ok + "/" + imgs.length;
  document.body.appendChild(p);
});
</script>
"""


@pytest.fixture(scope="module")
def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        message = "chromium not installed (Debian: apt-get install chromium; .ci/run installs it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def loaded_images(chromium: str, page: str, folder: Path) -> tuple[int, int]:
    """(images loaded, images) when `page` plus the check script is rendered headless from a file:// URL."""
    copy = folder / "report-check.html"
    copy.write_text(page.replace("</body>", IMAGE_CHECK + "</body>"), encoding="utf-8")
    result = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000",
         f"--user-data-dir={folder / 'profile'}", "--dump-dom", copy.as_uri()],
        capture_output=True, text=True, timeout=120)
    found = re.search(r'id="img-check">(\d+)/(\d+)<', result.stdout)
    assert found, f"chromium rendered no check (rc {result.returncode}): {result.stderr[-2000:]}"
    return int(found[1]), int(found[2])


@pytest.mark.slow
def test_every_plot_loads_in_headless_chromium(run, chromium, tmp_path):
    assert loaded_images(chromium, run.page, tmp_path) == (len(PLOTTED), len(PLOTTED))
    # the check itself can fail: one image with broken PNG bytes is not counted as loaded
    broken = re.sub(r"base64,[A-Za-z0-9+/]{40}", "base64," + "A" * 40, run.page, count=1)
    assert broken != run.page
    assert loaded_images(chromium, broken, tmp_path) == (len(PLOTTED) - 1, len(PLOTTED))
