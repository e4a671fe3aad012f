"""bench/make_crawl.py: deterministic, hits the size, valid WARC for our reader, stated shares of duplicates/noise."""
from __future__ import annotations

import gzip
import hashlib
import sys
from collections import Counter
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import make_crawl  # noqa: E402
from pipelines.readers import iter_file  # noqa: E402
from pipelines.readers import RawPage  # noqa: E402


@pytest.fixture(scope="module")
def crawl(tmp_path_factory):
    out = tmp_path_factory.mktemp("crawl")
    return out, make_crawl.build_crawl(out, 3_000_000, seed=7, file_size=1_000_000)


def test_parse_size():
    assert make_crawl.parse_size("100MB") == 100_000_000
    assert make_crawl.parse_size("1.5GB") == 1_500_000_000
    assert make_crawl.parse_size("2KiB") == 2048
    for bad in ("", "12XB", "MB", "0MB", "-3MB"):
        with pytest.raises(ValueError):
            make_crawl.parse_size(bad)


def test_size_targeting_and_files(crawl):
    out, manifest = crawl
    files = sorted(out.glob("*.warc.gz"))
    assert [f.name for f in files] == [f["file"] for f in manifest["files"]] == [
        f"crawl-{k:05d}.warc.gz" for k in range(len(files))]
    sizes = [f.stat().st_size for f in files]
    assert sizes == [f["bytes"] for f in manifest["files"]]
    assert 3_000_000 <= sum(sizes) < 3_000_000 + 60_000        # overshoots by less than one page
    assert all(s >= 1_000_000 for s in sizes[:-1]) and len(files) == 3
    assert not list(out.glob("*.tmp"))
    assert manifest["uncompressed_bytes"] == sum(len(gzip.decompress(f.read_bytes())) for f in files)


def test_deterministic(crawl, tmp_path):
    out, manifest = crawl
    again = make_crawl.build_crawl(tmp_path, 3_000_000, seed=7, file_size=1_000_000)
    digest = lambda d: [hashlib.sha1(f.read_bytes()).hexdigest() for f in sorted(d.glob("*.warc.gz"))]  # noqa: E731
    assert digest(tmp_path) == digest(out)
    assert {k: v for k, v in again.items() if k != "seconds"} == {k: v for k, v in manifest.items() if k != "seconds"}
    other = make_crawl.build_crawl(tmp_path / "s8", 300_000, seed=8)
    assert digest(tmp_path / "s8")[0] != digest(out)[0]
    assert other["responses"] > 0


def _pages(out: Path) -> list[RawPage]:
    pages, skipped = [], Counter()
    for path in sorted(out.glob("*.warc.gz")):
        with open(path, "rb") as fh:
            for item in iter_file(fh, str(path)):
                if isinstance(item, RawPage):
                    pages.append(item)
                else:
                    skipped[item.reason] += 1
    assert not [r for r in skipped if r.startswith("damaged")], skipped
    return pages


def test_readable_by_our_reader(crawl):
    out, manifest = crawl
    pages = _pages(out)
    assert len(pages) == manifest["responses"] == sum(manifest["by_kind"].values())
    assert all(p.url.startswith("https://") for p in pages)


def test_duplicate_and_noise_shares(crawl):
    out, manifest = crawl
    counts, n = manifest["by_kind"], manifest["responses"]
    assert n > 150
    for kind, share in make_crawl.SHARES.items():      # binomial: 5 standard deviations
        assert abs(counts[kind] - share * n) <= 5 * (n * share * (1 - share)) ** 0.5 + 1, (kind, counts)
    bodies = Counter(hashlib.sha1(p.html).hexdigest() for p in _pages(out))
    # noise pages differ (per-page payload); exact duplicates repeat a body byte for byte under another URL
    assert sum(c - 1 for c in bodies.values()) == counts["exact_duplicate"]


def test_near_duplicate_changes_few_words():
    maker = make_crawl.PageMaker(make_crawl.load_ingredients())
    for seed in range(20):
        lang, _, article = maker.article(seed)
        _, _, near = maker.near_duplicate(seed, seed + 100)
        assert near.title == article.title and len(near.paragraphs) == len(article.paragraphs)
        a, b = "".join(article.paragraphs), "".join(near.paragraphs)
        assert a != b
        if lang == "en":
            assert sum(x != y for x, y in zip(" ".join(article.paragraphs).split(),
                                              " ".join(near.paragraphs).split())) <= 5
        else:
            assert abs(len(a) - len(b)) <= 5 * 2
    assert maker.article(1) == maker.article(1) and maker.article(1) != maker.article(2)
