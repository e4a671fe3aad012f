"""Build the benchmark input: gzip WARC shards made only of real pages from the corpus samples.

Sources (see corpus-samples/web/SOURCES.md for licences):
  * html_groundtruth/article-extraction-benchmark: 120 English news/blog pages;
  * html_groundtruth/magic-html-zh: 33 Chinese articles and 6 Chinese forum pages;
  * warc/dolma/sample-0000.warc.gz: 22 real `response` records from a 2024 browser crawl
    (HTTP headers kept byte for byte, including chunked transfer encoding).

The HTML pages are wrapped as WARC/1.0 `response` records with HTTP/1.1 headers, as Common Crawl writes
them (one gzip member per record, `WARC-Identified-Payload-Type: text/html`; the charset goes into the
HTTP Content-Type only when the page declares one in a <meta> tag, as real servers often omit it).
The pool of real pages is repeated, reshuffled each pass with a fixed seed, until `docs` response
records exist; copies after the first get a varied URL (`?bench_copy=N`) and a fresh WARC-Record-ID,
their payload is unchanged (so a dedup stage, which neither benchmarked pipeline runs, would collapse them).
Records are dealt round-robin to `shards` files so that a 2-worker run has work for both workers
(both datatrove and Beam parallelize over whole gzip files).

Run as a script: python bench/make_warc.py OUT_DIR --docs 2000 --shards 4
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import random
import re
import uuid
from dataclasses import dataclass
from pathlib import Path

DEFAULT_SAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "corpus-samples"
WARC_DATE = "2024-05-01T00:00:00Z"   # fixed, so the same parameters give byte-identical shards
MANIFEST = "manifest.json"
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_:.-]+)""", re.IGNORECASE)


@dataclass(frozen=True)
class SourcePage:
    """One real page: the URL it was fetched from and the HTTP message (status line, headers, body)."""

    url: str
    http_block: bytes
    origin: str          # "article-extraction-benchmark", "magic-html-zh", or "dolma-warc"


def http_response_block(html: bytes) -> bytes:
    """An HTTP/1.1 200 response carrying `html`, with the page's own <meta> charset if it has one."""
    match = _META_CHARSET.search(html[:8192])
    content_type = "text/html"
    if match:
        content_type += "; charset=" + match.group(1).decode("ascii").lower()
    head = (
        "HTTP/1.1 200 OK\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(html)}\r\n"
        "\r\n"
    )
    return head.encode("ascii") + html


def warc_record(headers: list[tuple[str, str]], block: bytes) -> bytes:
    """One WARC/1.0 record (headers, a computed Content-Length, the block, and the two CRLFs)."""
    lines = ["WARC/1.0"] + [f"{name}: {value}" for name, value in headers if name.lower() != "content-length"]
    lines.append(f"Content-Length: {len(block)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + block + b"\r\n\r\n"


def response_record(url: str, http_block: bytes, record_id: str, extra: list[tuple[str, str]] = ()) -> bytes:
    headers = [
        ("WARC-Type", "response"),
        ("WARC-Record-ID", f"<urn:uuid:{record_id}>"),
        ("WARC-Date", WARC_DATE),
        ("WARC-Target-URI", url),
        ("Content-Type", "application/http; msgtype=response"),
        ("WARC-Block-Digest", "sha1:" + hashlib.sha1(http_block).hexdigest()),
        *extra,
    ]
    return warc_record(headers, http_block)


def warcinfo_record(shard: int, record_id: str) -> bytes:
    body = (f"software: wudao-corpora bench/make_warc.py\r\nformat: WARC File Format 1.0\r\n"
            f"description: throughput benchmark input, shard {shard}\r\n").encode("utf-8")
    return warc_record([
        ("WARC-Type", "warcinfo"),
        ("WARC-Record-ID", f"<urn:uuid:{record_id}>"),
        ("WARC-Date", WARC_DATE),
        ("Content-Type", "application/warc-fields"),
    ], body)


def read_warc_records(path: Path) -> list[tuple[dict[str, str], bytes]]:
    """All records of a (gzip) WARC as (headers, block). Strict: a malformed record raises ValueError."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        stream = io.BufferedReader(fh)
        records = []
        while True:
            line = stream.readline()
            if not line:
                return records
            if not line.strip():
                continue
            if not line.startswith(b"WARC/"):
                raise ValueError(f"{path}: expected a WARC version line, got {line[:40]!r}")
            headers: dict[str, str] = {}
            for raw in iter(stream.readline, b""):
                if raw in (b"\r\n", b"\n"):
                    break
                name, sep, value = raw.decode("utf-8", "replace").partition(":")
                if not sep:
                    raise ValueError(f"{path}: bad WARC header line {raw[:60]!r}")
                headers[name.strip()] = value.strip()
            try:
                length = int(headers["Content-Length"])
            except (KeyError, ValueError) as exc:
                raise ValueError(f"{path}: record without a valid Content-Length") from exc
            block = stream.read(length)
            if len(block) != length:
                raise ValueError(f"{path}: truncated record ({len(block)} of {length} bytes)")
            records.append((headers, block))


def load_source_pages(samples: Path) -> list[SourcePage]:
    """Every real page the benchmark draws from, in a fixed order."""
    web = samples / "web"
    if not web.is_dir():
        raise FileNotFoundError(f"corpus samples not found at {samples} (expected a web/ folder)")
    pages: list[SourcePage] = []
    groups = [
        ("article-extraction-benchmark", web / "html_groundtruth/article-extraction-benchmark/ground-truth.json",
         web / "html_groundtruth/article-extraction-benchmark/html"),
        ("magic-html-zh", web / "html_groundtruth/magic-html-zh/article/base.zh-subset.json",
         web / "html_groundtruth/magic-html-zh/article/htmls"),
        ("magic-html-zh", web / "html_groundtruth/magic-html-zh/forum/base.zh-subset.json",
         web / "html_groundtruth/magic-html-zh/forum/htmls"),
    ]
    for origin, truth_file, html_dir in groups:
        truth = json.loads(truth_file.read_text("utf-8"))
        for html_path in sorted(html_dir.glob("*.html.gz")):
            page_id = html_path.name.split(".", 1)[0]
            url = truth.get(page_id, {}).get("url") or f"https://{origin}.invalid/{page_id}"
            pages.append(SourcePage(url, http_response_block(gzip.decompress(html_path.read_bytes())), origin))
    for headers, block in read_warc_records(web / "warc/dolma/sample-0000.warc.gz"):
        if headers.get("WARC-Type") == "response":
            url = headers.get("WARC-Target-URI", "").strip("<>")
            pages.append(SourcePage(url, block, "dolma-warc"))
    return pages


def copy_url(url: str, copy: int) -> str:
    """The URL of the `copy`-th repetition of a page: the original for copy 0, else a query parameter added."""
    if copy == 0:
        return url
    base, _, fragment = url.partition("#")
    joiner = "&" if "?" in base else "?"
    return f"{base}{joiner}bench_copy={copy}" + (f"#{fragment}" if fragment else "")


def plan_records(pages: list[SourcePage], docs: int, seed: int) -> list[tuple[SourcePage, int]]:
    """(page, copy number) for each of the `docs` records: whole reshuffled passes over the pool."""
    if docs < 1:
        raise ValueError("docs must be at least 1")
    if not pages:
        raise ValueError("no source pages")
    rng = random.Random(seed)
    plan: list[tuple[SourcePage, int]] = []
    copy = 0
    while len(plan) < docs:
        order = list(pages)
        rng.shuffle(order)
        plan.extend((page, copy) for page in order[: docs - len(plan)])
        copy += 1
    return plan


def build_input(out_dir: Path, docs: int = 2000, shards: int = 4, seed: int = 0,
                samples: Path = DEFAULT_SAMPLES) -> dict:
    """Write `shards` WARC.gz files with `docs` response records in all, plus manifest.json; return the manifest.

    An existing manifest with the same parameters and intact shards is reused (a rerun costs nothing).
    """
    if shards < 1:
        raise ValueError("shards must be at least 1")
    out_dir = Path(out_dir)
    params = {"docs": docs, "shards": shards, "seed": seed}
    manifest_path = out_dir / MANIFEST
    if manifest_path.exists():
        old = json.loads(manifest_path.read_text("utf-8"))
        if old.get("params") == params and all(
                (out_dir / s["file"]).exists() and (out_dir / s["file"]).stat().st_size == s["bytes"]
                for s in old["shards"]):
            return old
    out_dir.mkdir(parents=True, exist_ok=True)
    plan = plan_records(load_source_pages(samples), docs, seed)
    ids = random.Random(seed + 1)
    shard_info = []
    for shard in range(shards):
        name = f"bench-{shard:05d}.warc.gz"
        records = plan[shard::shards]
        tmp = out_dir / (name + ".tmp")
        with open(tmp, "wb") as fh:
            fh.write(gzip.compress(warcinfo_record(shard, str(uuid.UUID(int=ids.getrandbits(128)))), mtime=0))
            for page, copy in records:
                record_id = str(uuid.UUID(int=ids.getrandbits(128)))
                extra = [("WARC-Identified-Payload-Type", "text/html")] if page.origin != "dolma-warc" else []
                fh.write(gzip.compress(response_record(copy_url(page.url, copy), page.http_block, record_id, extra),
                                       mtime=0))
        os.replace(tmp, out_dir / name)
        shard_info.append({"file": name, "responses": len(records), "bytes": (out_dir / name).stat().st_size})
    origins: dict[str, int] = {}
    for page, _ in plan:
        origins[page.origin] = origins.get(page.origin, 0) + 1
    manifest = {"params": params, "responses": len(plan), "distinct_pages": len({p.url for p, _ in plan}),
                "by_origin": dict(sorted(origins.items())), "shards": shard_info}
    tmp = manifest_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n", "utf-8")
    os.replace(tmp, manifest_path)
    return manifest


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--docs", type=int, default=2000, help="response records in all (default 2000)")
    parser.add_argument("--shards", type=int, default=4, help="WARC.gz files to deal them into (default 4)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--samples", type=Path, default=DEFAULT_SAMPLES)
    args = parser.parse_args(argv)
    print(json.dumps(build_input(args.out_dir, args.docs, args.shards, args.seed, args.samples), indent=2))


if __name__ == "__main__":
    main()
