"""Builds bench/data/extraction/ (HTML pages + truth.json) from git snapshots of public extraction benchmarks.

Reads only data files, with `git --git-dir=DIR show COMMIT:PATH`; every set is optional. Output is
deterministic: gzip without timestamp, truth.json with sorted keys. See bench/data/extraction/SOURCES.md for
the sets, their licences and how page type and language are assigned.

Usage:
  python bench/make_extraction_fixtures.py --out bench/data/extraction \\
      --magic-html /work/.mirror/opendatalab+magic-html/repo \\
      --harvest /work/.mirror/fhgr+harvest/repo \\
      --wcxb /work/.mirror/Murrough-Foley+web-content-extraction-benchmark/repo \\
      --chinese-wced /work/.mirror/immortal-autumn+Chinese-Web-Content-Extraction-Dataset/repo \\
      --skip-shared ../shared/corpus-samples/web/html_groundtruth
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from urllib.parse import urlparse

HAN = re.compile(r"[\u4e00-\u9fff]")
KANA = re.compile(r"[\u3040-\u30ff]")
WORD = re.compile(r"[^\W\d_]+")
# A few very frequent function words per language; the language with the highest share wins.
STOPWORDS = {
    "en": {"the", "and", "is", "to", "of", "it", "you", "that", "in", "for", "this", "with", "have", "are"},
    "de": {"und", "der", "die", "das", "ich", "nicht", "ist", "ein", "eine", "mit", "auf", "es", "sie", "zu"},
    "fr": {"le", "la", "les", "et", "est", "un", "une", "des", "pour", "pas", "je", "que", "qui", "dans"},
    "it": {"il", "di", "che", "non", "per", "una", "sono", "della", "mia", "questa"},
    "pt": {"não", "uma", "para", "com", "você", "mais", "muito", "isso", "esse"},
    "id": {"yang", "dan", "di", "ini", "itu", "dengan", "tidak", "saya", "untuk", "ada"},
    "sl": {"je", "in", "kaj", "mi", "ali", "da", "se", "pa"},
}

# Page type by site (see SOURCES.md): Q&A engines; one item followed by user comments; else a forum thread.
QA_SITES = ("stackoverflow.com", "stackexchange.com", "superuser.com", "serverfault.com", "askubuntu.com",
            "quora.com", "zhihu.com", "zhidao.baidu.com", "careercup.com", "meta.answer.dev", "devdojo.com",
            "demo.designwall.com", "demo.sabaidiscuss.com", "clevious.com", "hahn-tech.com", "developers.pub")
QA_PATHS = (("codeproject.com", "/Questions/"),)
COMMENT_SITES = ("movie.douban.com", "twitter.com", "x.com", "weibo.com", "pinterest.com", "imgur.com",
                 "livejournal.com", "lucianne.com", "slashdot.org", "lobste.rs", "learnku.com", "paopao.info")


def git_show(git_dir: Path, commit: str, path: str) -> bytes:
    return subprocess.run(["git", "--git-dir", str(git_dir), "show", f"{commit}:{path}"],
                          check=True, capture_output=True).stdout


def head_commit(git_dir: Path) -> str:
    return subprocess.run(["git", "--git-dir", str(git_dir), "rev-parse", "HEAD"], check=True,
                          capture_output=True, text=True).stdout.strip()


def language(text: str) -> str:
    """'zh', 'en', or another code (pages in other languages are left out)."""
    chars = _nonspace(text)
    if chars and len(KANA.findall(text)) / len(chars) > 0.02:
        return "ja"
    if chars and len(HAN.findall(text)) / len(chars) > 0.15:
        return "zh"
    words = [w.lower() for w in WORD.findall(text)]
    if not words:
        return "unknown"
    shares = {lang: sum(w in stop for w in words) / len(words) for lang, stop in STOPWORDS.items()}
    return max(sorted(shares), key=lambda lang: shares[lang])


def _nonspace(text: str) -> str:
    return re.sub(r"\s+", "", text)


def site(url: str | None) -> str:
    host = (urlparse(url).hostname or "") if url else ""
    return host[4:] if host.startswith("www.") else host


def page_type(url: str) -> str:
    host = site(url)
    path = urlparse(url).path

    def on(sites: tuple[str, ...]) -> bool:
        return any(host == s or host.endswith("." + s) for s in sites)

    if on(QA_SITES) or any(host.endswith(h) and path.startswith(p) for h, p in QA_PATHS):
        return "qa"
    if on(COMMENT_SITES):
        return "comments"
    return "forum"


class Writer:
    def __init__(self, out: Path):
        self.out = out
        self.truth: dict[str, dict] = {}
        self.dropped: Counter[str] = Counter()
        (out / "html").mkdir(parents=True, exist_ok=True)

    def add(self, page_id: str, html: bytes, *, url: str | None, lang: str, type_: str, text: str, set_: str,
            source: str) -> None:
        assert page_id not in self.truth, page_id
        (self.out / "html" / f"{page_id}.html.gz").write_bytes(gzip.compress(html, 9, mtime=0))
        self.truth[page_id] = {"url": url, "lang": lang, "type": type_, "text": text, "set": set_,
                               "site": site(url), "source": source}

    def drop(self, set_: str, why: str) -> None:
        self.dropped[f"{set_}: {why}"] += 1


def magic_html(w: Writer, git_dir: Path, shared: Path | None) -> None:
    commit = head_commit(git_dir)
    used = set()
    if shared:
        for kind in ("article", "forum"):
            p = shared / f"magic-html-zh/{kind}/base.zh-subset.json"
            if p.exists():
                used |= set(json.loads(p.read_text("utf-8")))
    for kind, set_ in (("forum", "magic-html-forum"), ("article", "magic-html-article-zh")):
        base = json.loads(git_show(git_dir, commit, f"benchmark/data/{kind}/base.json"))
        for key in sorted(base):
            entry = base[key]
            text, url = entry["content"], entry["url"]
            if key in used:
                w.drop(set_, "already in shared corpus-samples")
                continue
            lang = language(text)
            if kind == "article" and lang != "zh":
                w.drop(set_, f"article not Chinese ({lang})")
                continue
            if lang not in ("zh", "en"):
                w.drop(set_, f"language {lang}")
                continue
            if not text.strip():
                w.drop(set_, "empty ground truth")
                continue
            path = f"benchmark/data/{kind}/htmls/{key}.html"
            w.add(f"mh-{kind}-{key[:16]}", git_show(git_dir, commit, path), url=url, lang=lang,
                  type_=page_type(url) if kind == "forum" else "article", text=text, set_=set_,
                  source=f"opendatalab/magic-html@{commit[:12]}:{path}")


def harvest(w: Writer, git_dir: Path) -> None:
    commit = head_commit(git_dir)
    names = subprocess.run(["git", "--git-dir", str(git_dir), "ls-tree", "--name-only", commit,
                            "corpus/goldDocuments/"], check=True, capture_output=True, text=True).stdout.split("\n")
    for path in sorted(n for n in names if n.endswith(".json")):
        doc = json.loads(git_show(git_dir, commit, path))
        text = "\n\n".join(p["post_text"]["surface_form"].strip() for p in doc["gold_standard_annotation"])
        lang = language(text)
        if lang != "en":
            w.drop("harvest-forum", f"language {lang}")
            continue
        url = doc["url"]
        page_id = "harvest-" + hashlib.sha1(url.encode()).hexdigest()[:12]
        w.add(page_id, doc["html"].encode("utf-8"), url=url, lang=lang, type_="forum", text=text,
              set_="harvest-forum", source=f"fhgr/harvest@{commit[:12]}:{path}")


def wcxb(w: Writer, git_dir: Path) -> None:
    commit = head_commit(git_dir)
    meta = json.loads(git_show(git_dir, commit, "metadata.json"))["files"]
    for file_id in sorted(meta):
        m = meta[file_id]
        if m["page_type"] != "forum":
            continue
        gt_path = f"{m['split']}/ground-truth/{file_id}.json"
        gt = json.loads(git_show(git_dir, commit, gt_path))
        confidence = gt.get("_internal", {}).get("page_type", {}).get("confidence")
        text = gt.get("ground_truth", {}).get("main_content") or ""
        url = gt.get("url") or None
        if confidence != "verified":
            w.drop("wcxb-forum", f"page type confidence {confidence!r} (not 'verified')")
            continue
        if not text.strip() or not url:
            w.drop("wcxb-forum", "no main_content or no url")
            continue
        lang = language(text)
        if lang != "en":
            w.drop("wcxb-forum", f"language {lang}")
            continue
        html_path = f"{m['split']}/html/{file_id}.html.gz"
        try:
            html = gzip.decompress(git_show(git_dir, commit, html_path))
        except subprocess.CalledProcessError:
            w.drop("wcxb-forum", "HTML missing from the snapshot")
            continue
        w.add(f"wcxb-{file_id}", html, url=url, lang=lang, type_=page_type(url), text=text, set_="wcxb-forum",
              source=f"Murrough-Foley/web-content-extraction-benchmark@{commit[:12]}:{html_path}")


CANONICAL = re.compile(rb'<link[^>]+rel=["\']canonical["\'][^>]*href=["\']([^"\']+)|'
                       rb'<meta[^>]+property=["\']og:url["\'][^>]*content=["\']([^"\']+)', re.I)


def chinese_wced(w: Writer, git_dir: Path) -> None:
    commit = head_commit(git_dir)
    names = subprocess.run(["git", "--git-dir", str(git_dir), "ls-tree", "--name-only", commit, "original/"],
                           check=True, capture_output=True, text=True).stdout.split("\n")
    for path in sorted(n for n in names if n.endswith(".html")):
        html = git_show(git_dir, commit, path)
        if re.match(rb"\s*(\xef\xbb\xbf)?\s*<text id=", html):
            w.drop("chinese-wced", "CleanEval-format page (<text id=...> wrapper): CleanEval has no licence")
            continue
        uuid = path.split("/")[-1][: -len(".html")]
        text = git_show(git_dir, commit, f"cleaned/{uuid}.txt").decode("utf-8")
        m = CANONICAL.search(html)
        url = (m.group(1) or m.group(2)).decode("utf-8", "replace") if m else None
        if url and not url.startswith("http"):
            url = None
        w.add(f"cwced-{uuid[:8]}", html, url=url, lang="zh", type_="article", text=text, set_="chinese-wced",
              source=f"immortal-autumn/Chinese-Web-Content-Extraction-Dataset@{commit[:12]}:{path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--magic-html", type=Path)
    parser.add_argument("--harvest", type=Path)
    parser.add_argument("--wcxb", type=Path)
    parser.add_argument("--chinese-wced", type=Path)
    parser.add_argument("--skip-shared", type=Path, help="html_groundtruth folder whose magic-html pages to skip")
    args = parser.parse_args()
    w = Writer(args.out)
    if args.magic_html:
        magic_html(w, args.magic_html, args.skip_shared)
    if args.harvest:
        harvest(w, args.harvest)
    if args.wcxb:
        wcxb(w, args.wcxb)
    if args.chinese_wced:
        chinese_wced(w, args.chinese_wced)
    (args.out / "truth.json").write_text(
        json.dumps(w.truth, ensure_ascii=False, indent=1, sort_keys=True) + "\n", "utf-8")
    counts = Counter((v["set"], v["type"], v["lang"]) for v in w.truth.values())
    for key, n in sorted(counts.items()):
        print(*key, n, sep="\t")
    print("sites:", len({v["site"] for v in w.truth.values()}), file=sys.stderr)
    for why, n in sorted(w.dropped.items()):
        print(f"dropped {n}: {why}", file=sys.stderr)


if __name__ == "__main__":
    main()
