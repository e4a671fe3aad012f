"""Make a synthetic web crawl of any size, as gzip WARC files, from the embedded sample's ingredients.

    python bench/make_crawl.py --size 100MB --output DIR [--seed 0] [--file-size 50MB]

Pages are rendered with the sample's own site templates (`scripts/build_sample.py`: header, nav menu,
article, sidebar, footer) from the sentences of `scripts/sample_text/` (zh and en articles, other languages,
spam). Each page also carries the weight a real page has outside its text: an inline stylesheet and an
inline script with a base64 payload (tracking pixel, bundled state), about 40 KB of HTML and 14 KB of
gzip per page, close to Common Crawl's average. Shares of the response records (SHARES):

  * 70% distinct articles: sentences of one language recombined at random into 4-9 paragraphs;
  * 10% exact duplicates: an earlier article again under another URL (a mirror host);
  * 8% near duplicates: an earlier article with a few words changed, under another URL;
  * 12% noise: 4% nav-only site maps, 4% spam pages, 4% pages in other languages (ja, ko, ru, fr, ...).

Every response is preceded by its `request` record, as in Common Crawl. Duplicates copy one of the last
RECENT distinct articles, kept as seeds only, so memory stays flat whatever the size. Deterministic: the
same seed and sizes give the same bytes (fixed dates, gzip members with mtime=0). Files are written under
a temporary name and renamed when complete; `manifest.json` lists them with the counts by kind.
"""
from __future__ import annotations

import argparse
import base64
import gzip
import itertools
import json
import os
import random
import re
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(REPO / "scripts"))
import build_sample  # noqa: E402  (the embedded sample's texts and site templates)
import make_warc  # noqa: E402  (WARC record writing)

SHARES = {"distinct": 0.70, "exact_duplicate": 0.10, "near_duplicate": 0.08,
          "nav_only": 0.04, "spam": 0.04, "other_language": 0.04}
RECENT = 5000                 # distinct articles a duplicate may copy
MIRRORS = ("mirror1", "m", "amp", "cache")
_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}
_ZH_SENTENCE = re.compile(r"[^。！？]+[。！？]?")
_EN_SENTENCE = re.compile(r"[^.!?]+[.!?]?\s*")


def parse_size(text: str) -> int:
    """'100MB' -> 100_000_000; units B, KB, MB, GB (powers of 10) and KiB, MiB, GiB."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", text)
    if not match or match.group(2).upper() not in _UNITS:
        raise ValueError(f"not a size: {text!r} (e.g. 100MB, 1GB, 512KiB)")
    size = int(float(match.group(1)) * _UNITS[match.group(2).upper()])
    if size < 1:
        raise ValueError(f"size must be positive: {text!r}")
    return size


@dataclass(frozen=True)
class Ingredients:
    """Sentence pools and titles per language, plus the noise texts."""

    sentences: dict[str, tuple[str, ...]]
    titles: dict[str, tuple[str, ...]]
    other: tuple[build_sample.Article, ...]
    spam: tuple[build_sample.Article, ...]


def _split(paragraph: str, lang: str) -> list[str]:
    pattern = _ZH_SENTENCE if lang == "zh" else _EN_SENTENCE
    return [s.strip() for s in pattern.findall(paragraph) if len(s.strip()) >= (8 if lang == "zh" else 25)]


def load_ingredients(text_dir: Path = build_sample.TEXT_DIR) -> Ingredients:
    """The sample's zh and en article sentences and titles, other-language and spam articles."""
    sentences, titles = {}, {}
    for lang, name in (("zh", "zh_articles.txt"), ("en", "en_articles.txt")):
        articles = build_sample.load_articles(text_dir / name).values()
        titles[lang] = tuple(a.title for a in articles)
        sentences[lang] = tuple(s for a in articles for p in a.paragraphs if not p.startswith("## ")
                                for s in _split(p, lang))
    other = tuple(build_sample.load_articles(text_dir / "other_languages.txt").values())
    spam = tuple(build_sample.load_articles(text_dir / "spam_and_lists.txt").values())
    return Ingredients(sentences, titles, other, spam)


class PageMaker:
    """Renders pages; every page is a function of (kind, seed), so duplicates need only the seed."""

    def __init__(self, ingredients: Ingredients):
        self.ing = ingredients
        self.sites = {"zh": build_sample.ZH_SITES, "en": build_sample.EN_SITES}

    def article(self, seed: int) -> tuple[str, build_sample.Site, build_sample.Article]:
        """(lang, site, article) of the distinct article with this seed: sentences recombined."""
        rng = random.Random(seed)
        lang = "zh" if rng.random() < 0.5 else "en"
        pool = self.ing.sentences[lang]
        joiner = "" if lang == "zh" else " "
        paragraphs = tuple(joiner.join(rng.choice(pool) for _ in range(rng.randint(2, 5)))
                           for _ in range(rng.randint(4, 9)))
        title = rng.choice(self.ing.titles[lang]) + (f"（{seed % 997}）" if lang == "zh" else f" ({seed % 997})")
        return lang, rng.choice(self.sites[lang]), build_sample.Article(f"a{seed}", title, paragraphs)

    def render(self, site: build_sample.Site, article: build_sample.Article | None, seed: int) -> bytes:
        rng = random.Random(seed ^ 0x5EED)
        sidebar = [(t, f"/post/{rng.randrange(10**6)}.html")
                   for t in rng.sample(self.ing.titles["zh" if site.html_lang.startswith("zh") else "en"], 5)]
        page = build_sample.render_page(article, site, charset_meta="utf-8", sidebar=sidebar,
                                        published="2024-0%d-1%d" % (rng.randint(1, 9), rng.randint(0, 9)),
                                        author=rng.choice(("编辑部", "Staff", "李明", "J. Carter")))
        return _with_page_weight(page, rng).encode("utf-8")

    def near_duplicate(self, seed: int, edit_seed: int) -> tuple[str, build_sample.Site, build_sample.Article]:
        """The article of `seed` with 2-5 words (en) or characters runs (zh) replaced."""
        lang, site, article = self.article(seed)
        rng = random.Random(edit_seed)
        paragraphs = list(article.paragraphs)
        for _ in range(rng.randint(2, 5)):
            i = rng.randrange(len(paragraphs))
            if lang == "en":
                words = paragraphs[i].split(" ")
                words[rng.randrange(len(words))] = rng.choice(("really", "quite", "recently", "often", "new"))
                paragraphs[i] = " ".join(words)
            else:
                pos = rng.randrange(len(paragraphs[i]))
                paragraphs[i] = (paragraphs[i][:pos] + rng.choice(("其实", "近来", "非常", "另外"))
                                 + paragraphs[i][pos + 2:])
        return lang, site, build_sample.Article(article.slug, article.title, tuple(paragraphs))

    def noise(self, kind: str, seed: int) -> tuple[build_sample.Site, bytes]:
        rng = random.Random(seed)
        if kind == "nav_only":
            site = rng.choice(build_sample.ZH_SITES)
            return site, _with_page_weight(build_sample.nav_only_page(site), rng).encode("utf-8")
        if kind == "spam":
            article = rng.choice(self.ing.spam)
            site = (build_sample.SPAM_SITE_ZH if re.search(r"[\u4e00-\u9fff]", article.title)
                    else build_sample.SPAM_SITE_EN)
            return site, self.render(site, article, seed)
        article = rng.choice(self.ing.other)
        site = build_sample.Site("Portal", f"www.{article.slug}-portal.example", article.slug, ("Home", "News"),
                                 "More", "", ("© 2024",), ())
        return site, self.render(site, article, seed)


def _stylesheet(seed: int) -> str:
    """A site's inline stylesheet (about 25 KB, repetitive like real CSS), the same on all its pages."""
    rng = random.Random(seed)
    return "".join(f".c{i}-{rng.choice(('nav', 'card', 'btn', 'grid'))}{{margin:{rng.randrange(40)}px;"
                   f"color:#{rng.randrange(16**6):06x};display:{rng.choice(('block', 'flex', 'none'))}}}\n"
                   for i in range(450))


_STYLESHEETS = [_stylesheet(k) for k in range(8)]


def _with_page_weight(page: str, rng: random.Random) -> str:
    """Inline CSS and a script with a base64 blob before </head>: the non-text bulk of a real page."""
    css = _STYLESHEETS[rng.randrange(len(_STYLESHEETS))]
    blob = base64.b64encode(rng.randbytes(rng.randint(3000, 7000))).decode("ascii")
    script = f'<script>window.__STATE__={{"ts":{rng.randrange(10**9)},"px":"data:image/png;base64,{blob}"}};</script>'
    return page.replace("</head>", f"<style>\n{css}</style>\n{script}\n</head>", 1)


def _request_record(url: str, record_id: str) -> bytes:
    _, _, host, path = url.split("/", 3)
    block = (f"GET /{path} HTTP/1.1\r\nHost: {host}\r\n"
             "User-Agent: wudao-bench/1.0\r\nAccept: text/html\r\n\r\n").encode("utf-8")
    return make_warc.warc_record([("WARC-Type", "request"), ("WARC-Record-ID", f"<urn:uuid:{record_id}>"),
                                  ("WARC-Date", make_warc.WARC_DATE), ("WARC-Target-URI", url),
                                  ("Content-Type", "application/http; msgtype=request")], block)


def iter_pages(seed: int, ingredients: Ingredients):
    """Endless (kind, url, html bytes) in crawl order, deterministic for `seed`."""
    maker, rng = PageMaker(ingredients), random.Random(seed)
    kinds, weights = list(SHARES), list(SHARES.values())
    recent: list[int] = []
    for n in itertools.count():
        kind = rng.choices(kinds, weights)[0]
        if kind in ("exact_duplicate", "near_duplicate") and not recent:
            kind = "distinct"
        page_seed = rng.getrandbits(48)
        if kind in ("distinct", "exact_duplicate", "near_duplicate"):
            source = page_seed if kind == "distinct" else rng.choice(recent)
            if kind == "near_duplicate":
                _, site, article = maker.near_duplicate(source, page_seed)
            else:
                _, site, article = maker.article(source)
            host = site.host if kind == "distinct" else f"{rng.choice(MIRRORS)}.{site.host.removeprefix('www.')}"
            url = f"https://{host}/post/{source:x}.html"
            body = maker.render(site, article, source if kind == "exact_duplicate" else page_seed)
            if kind == "distinct":
                recent.append(page_seed)
                del recent[:-RECENT]
        else:
            site, body = maker.noise(kind, page_seed)
            url = f"https://{site.host}/{kind.replace('_', '-')}/{n}.html"
        yield kind, url, body


def build_crawl(out_dir: Path, size: int, seed: int = 0, file_size: int = 50 * 10**6, level: int = 6) -> dict:
    """Write WARC.gz files of about `file_size` bytes until `size` compressed bytes; return the manifest."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ids = random.Random(seed + 1)
    new_id = lambda: str(uuid.UUID(int=ids.getrandbits(128)))  # noqa: E731
    pages = iter_pages(seed, load_ingredients())
    files, counts, total, raw_total, started = [], {k: 0 for k in SHARES}, 0, 0, time.perf_counter()
    while total < size:
        name = f"crawl-{len(files):05d}.warc.gz"
        tmp = out_dir / (name + ".tmp")
        written = raw = responses = 0
        with open(tmp, "wb") as fh:
            info = make_warc.warcinfo_record(len(files), new_id()).replace(b"make_warc.py", b"make_crawl.py")
            member = gzip.compress(info, compresslevel=level, mtime=0)
            fh.write(member)
            written, raw = len(member), len(info)
            while written < file_size and total + written < size:
                kind, url, body = next(pages)
                http = make_warc.http_response_block(body)
                for data in (_request_record(url, new_id()),
                             make_warc.response_record(url, http, new_id(),
                                                       [("WARC-Identified-Payload-Type", "text/html")])):
                    member = gzip.compress(data, compresslevel=level, mtime=0)
                    fh.write(member)
                    written, raw = written + len(member), raw + len(data)
                counts[kind] += 1
                responses += 1
        os.replace(tmp, out_dir / name)
        files.append({"file": name, "bytes": written, "uncompressed_bytes": raw, "responses": responses})
        total, raw_total = total + written, raw_total + raw
    manifest = {"params": {"size": size, "seed": seed, "file_size": file_size, "level": level},
                "bytes": total, "uncompressed_bytes": raw_total, "responses": sum(counts.values()),
                "by_kind": counts, "shares": SHARES, "files": files,
                "seconds": round(time.perf_counter() - started, 2)}
    tmp = out_dir / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=2) + "\n", "utf-8")
    os.replace(tmp, out_dir / "manifest.json")
    return manifest


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", required=True, type=parse_size, help="compressed bytes in all, e.g. 100MB, 1GB")
    parser.add_argument("--output", required=True, type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--file-size", type=parse_size, default=50 * 10**6, help="bytes per WARC.gz (default 50MB)")
    args = parser.parse_args(argv)
    manifest = build_crawl(args.output, args.size, args.seed, args.file_size)
    summary = {k: v for k, v in manifest.items() if k != "files"}
    summary["files"] = len(manifest["files"])
    summary["MB_per_s"] = round(manifest["bytes"] / 1e6 / max(manifest["seconds"], 1e-9), 1)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
