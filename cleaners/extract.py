"""Main-text extraction from HTML with trafilatura, under a per-page time limit.

`extract_html` is the extraction itself. Its defaults come from `bench/extraction_quality.py`
(results in `bench/results/extraction.md`) on the article-extraction-benchmark (English) and
magic-html (Chinese) ground truth: `favor_precision=True` with comments left out gave token F1
0.975 vs 0.954 (English articles) and 0.957 vs 0.882 (Chinese articles) against trafilatura's
defaults, at the same or higher speed (it skips the balanced mode's recall retry), but 0.806 vs 0.819
on 6 Chinese forum pages; comments cost English F1 (0.966), dropping tables cost recall (0.968),
`fast=True` (no fallback extractors) lost recall, most on forums (0.648).

Forum, Q&A and comment pages (bench/data/extraction: 269 real pages of 187 sites) need more than that: precision
mode keeps one post of a thread. So the posts of known engines are taken whole (`cleaners.posts`), a forum-shaped
URL switches to trafilatura's balanced mode with comments, and a page precision mode finds nothing on gets the
balanced pass too (measured in bench/results/extraction.md). A known engine's thread skips trafilatura, and a
confident precision pass skips trafilatura's fallback comparison (`_trafilatura_text`; the variant
`confident_chars=None` of bench/results/extraction.md runs the comparison on every page, for reference).
trafilatura's attribute rules run as compiled Python (`cleaners.xpath_rules`, installed at import): same
matches, less time per page (bench/results/extraction.md).

`PageExtractor` turns a `RawPage` into a `Document`. HTML is decoded with `cleaners.charset.decode_html`
and extracted in a persistent child process, so that a page that makes lxml or trafilatura run away
can be stopped from any thread (Beam runs DoFns in worker threads, where signals cannot be used):
on timeout the child is killed and a fresh one is started for the next page. datatrove's
Trafilatura step bounds each page the same way (a subprocess, 1 s timeout) but pays a process
per page; here one child serves every page and costs one pipe round trip per page.

libxml2 stops parsing at 256 nested elements and drops the rest of the page; such a page is flattened
(`cleaners.html_depth`) and parsed again. A page lxml cannot read at all (binary, plain text) is
`extract-unparsable`, distinct from `extract-empty` (parsed, but no main text).
"""
from __future__ import annotations

import gzip
import multiprocessing
import unicodedata
import weakref
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from lxml.etree import ElementDefaultClassLookup, ErrorTypes
from lxml.html import HtmlComment, HtmlElement, HtmlElementClassLookup, HtmlEntity, HtmlProcessingInstruction
from trafilatura import bare_extraction
from trafilatura import xpaths as trafilatura_xpaths
from trafilatura.external import SANITIZED_XPATH
from trafilatura.metadata import extract_title
from trafilatura.utils import HTML_PARSER, decode_file, load_html

from cleaners.charset import decode_html
from cleaners.document import Document, RawPage, stable_hash
from cleaners.html_depth import flatten_deep_html
from cleaners.posts import find_posts, find_replies, is_discussion
from cleaners.xpath_rules import install

#: trafilatura's `.//*[...]` rules swapped for Python evaluations with the same matches (`cleaners.xpath_rules`),
#: in this process and in the extraction child, which imports this module
COMPILED_RULES = install(trafilatura_xpaths)

#: trafilatura's parser gives every element of a page the class HtmlElement, chosen in C. lxml.html's own lookup
#: calls a Python method for each element object lxml creates, to give form fields classes of their own (FormElement,
#: InputElement ...) that neither trafilatura nor this project uses; rules, pruning and copies create such objects
#: for every element of a page many times over (same outputs on the 644 pages of bench/extraction_quality.py and
#: bench/throughput.py). `shipped_element_lookup` puts lxml.html's own back for a block (references, tests).
ELEMENT_LOOKUP = ElementDefaultClassLookup(element=HtmlElement, comment=HtmlComment, pi=HtmlProcessingInstruction,
                                           entity=HtmlEntity)
HTML_PARSER.set_element_class_lookup(ELEMENT_LOOKUP)


@contextmanager
def shipped_element_lookup() -> Iterator[None]:
    """lxml.html's own element lookup in trafilatura's parser for the block, `ELEMENT_LOOKUP` after."""
    HTML_PARSER.set_element_class_lookup(HtmlElementClassLookup())
    try:
        yield
    finally:
        HTML_PARSER.set_element_class_lookup(ELEMENT_LOOKUP)

#: trafilatura settings chosen by the benchmark (see module docstring).
DEFAULT_OPTIONS: dict[str, Any] = {
    "favor_precision": True,
    "include_comments": False,
    "include_tables": True,
    "fast": False,
    "threads": True,          # ours, not trafilatura's: every post of a forum / Q&A / comment page (cleaners.posts)
    "discussion_recall": True,  # ours: trafilatura's balanced mode, comments kept, on forum / Q&A / social URLs
    "confident_chars": 500,     # ours: precision mode skips the fallback comparison above this (None: never)
    "recall_retry_chars": 100,  # ours: precision text shorter than this is retried in balanced mode (0: only empty)
}
_OPTION_NAMES = frozenset({*DEFAULT_OPTIONS, "favor_recall", "include_links", "include_formatting"})

REASON_TOO_LARGE = "extract-too-large"
REASON_TIMEOUT = "extract-timeout"
REASON_EMPTY = "extract-empty"
REASON_UNPARSABLE = "extract-unparsable"
REASON_ERROR = "extract-error:"  # + exception class name
#: the balanced pass (`recall_retry_chars`) replaces precision mode's text when it finds at least this many times
#: as much (and whenever precision mode found nothing)
RECALL_RATIO = 10
#: share of a post's characters trafilatura's text must hold for `find_replies`' group to be added (`_holds_a_post`)
HELD_SHARE = 0.5
#: how long a fresh child may take to import trafilatura and report ready (not part of any page's limit)
STARTUP_TIMEOUT_S = 120.0


class UnparsableHTML(ValueError):
    """lxml builds no tree from the page (binary or plain text, not HTML), or a parse cut short by a
    libxml2 limit even after flattening yields no text."""


@dataclass
class ExtractResult:
    """What extraction keeps of a page: its title and its main text, paragraphs separated by "\\n", and the
    path that found the text: `precision` (trafilatura with the options, its fallback comparison included),
    `precision:confident` (the main pass alone, see `_trafilatura_text`), `discussion` (a forum / Q&A / social
    URL, `cleaners.posts.is_discussion`: trafilatura's balanced mode with comments), `recall` (precision mode
    found nothing: the balanced pass with comments), `thread:<engine>` (the page's posts, `cleaners.posts`;
    `thread:generic` adds a repeated group's posts to trafilatura's text) or `thread:replies` (the replies to the post
    trafilatura found, `cleaners.posts.find_replies`)."""

    title: str
    text: str
    path: str = "precision"


def extract_html(html: bytes | str, url: str | None = None, **options: Any) -> ExtractResult | None:
    """Title and main text of one page with trafilatura; None when no main text is found.

    `options` are trafilatura keyword arguments over `DEFAULT_OPTIONS`; with `include_comments=True`
    the comment section follows the main text, as in `trafilatura.extract`. The title is trafilatura's
    own title heuristic (a single <h1>, og/meta title, then <title> without the site name); full
    metadata extraction is skipped because its date search tripled the time per Chinese page.
    Text is NFC-normalized, as `trafilatura.extract` does. A first line that repeats the title is dropped
    (measured: F1 0.9755 -> 0.977 English, 0.957 -> 0.961 Chinese articles; see bench/results/extraction.md).
    Raises `UnparsableHTML` for a page lxml cannot read (see `parse_html`).
    """
    settings = {**DEFAULT_OPTIONS, **options}
    threads, discussion_recall = settings.pop("threads"), settings.pop("discussion_recall")
    confident_chars, retry_chars = settings.pop("confident_chars"), settings.pop("recall_retry_chars")
    if not html or html.isspace():
        return None
    tree, cut_short = parse_html(html)
    if tree is None:
        raise UnparsableHTML("lxml built no tree")
    thread = find_posts(tree, url) if threads else None
    if thread and thread[0] != "generic":     # a known engine's posts are the page: trafilatura is not asked
        engine, posts = thread
        text, path = _with_posts("", posts), f"thread:{engine}"
    else:
        text, path = _main_text(tree, url, settings, discussion_recall, confident_chars, retry_chars)
        if thread:                            # a generic group adds its lines to trafilatura's text
            merged = _with_posts(text, thread[1])
            if merged != text:
                text, path = merged, "thread:generic"
        elif threads and text and not is_discussion(url):   # replies to the post trafilatura found (find_replies)
            replies = find_replies(tree)
            if replies and _holds_a_post(text, replies):
                merged = _with_posts(text, replies)
                if merged != text:
                    text, path = merged, "thread:replies"
    if not text:
        if cut_short:  # part of the page was never read: "no main text" would be a guess
            raise UnparsableHTML("parse cut short by a libxml2 limit")
        return None
    title = unicodedata.normalize("NFC", (extract_title(tree) or "").strip())
    text = unicodedata.normalize("NFC", text)
    first_line, _, rest = text.partition("\n")
    if title and rest.strip() and first_line.strip() == title:
        text = rest.strip()  # the WuDao schema keeps the title in its own field, not again as line one
    return ExtractResult(title=title, text=text, path=path)


def _main_text(tree: HtmlElement, url: str | None, settings: dict[str, Any], discussion_recall: bool,
               confident_chars: int | None, retry_chars: int) -> tuple[str, str]:
    """trafilatura's text of a page that is no known engine's thread, and its path (see `ExtractResult`).

    Precision mode can keep a fragment of the page (an empty-state message, one heading of a Q&A page) where the
    balanced pass finds the content: its text under `retry_chars` characters gets the balanced pass with comments,
    kept when it is `RECALL_RATIO` times longer (or precision mode found nothing). 100 characters and 10x were
    measured on the 463 pages of bench/extraction_quality.py (variant `recall_retry_chars=0`): 3 pages switch, 2
    better and 1 worse (Chinese forums +0.03 F1); at 200 or 500 characters, or a ratio of 2, articles switch
    and lose F1."""
    path = "precision"
    if discussion_recall and is_discussion(url):
        settings = {**settings, "favor_precision": False, "include_comments": True}
        path = "discussion"
    text, confident = _trafilatura_text(tree, url, settings, confident_chars)
    if confident:
        path = "precision:confident"
    if settings["favor_precision"] and len(text) < max(retry_chars, 1):   # precision mode may have lost the page
        recall_text, _ = _trafilatura_text(tree, url, {**settings, "favor_precision": False, "include_comments": True})
        if not text or len(recall_text) >= RECALL_RATIO * len(text):
            text, path = recall_text, "recall"
    return text, path


def _trafilatura_text(tree: HtmlElement, url: str | None, settings: dict[str, Any],
                      confident_chars: int | None = None) -> tuple[str, bool]:
    """trafilatura's main text of the parsed page (it works on a copy of the tree), comments appended when
    `include_comments` is set, as `trafilatura.extract` joins them; and whether the main pass alone was kept.

    In precision mode with fallbacks on, trafilatura compares its main pass with readability and justext on
    every page, its own pruning of the whole page included: a large share of `wudao text`'s time per document
    (a sampling profile of bench/throughput.py's run shows it). It can change the result only when the main pass
    is short, has no paragraph text, is table-dominated, holds unclean elements (trafilatura's SANITIZED_XPATH:
    the justext trigger) or readability finds over twice as much text. So the main pass runs first
    (`fast=True`) and is kept when it is `confident`: at least `confident_chars` characters, paragraph text, no
    more tables than paragraphs, nothing unclean. 500 was chosen on the 463 benchmark pages: the variant
    `confident_chars=None` of bench/extraction_quality.py (the comparison on every page) has the same F1 on
    every set but one, where two comment pages change, one up and one down. Other pages pay the main pass twice
    (the full run repeats it)."""
    confident = False
    if confident_chars is not None and settings["favor_precision"] and not settings["fast"]:
        document = bare_extraction(tree, url=url, **{**settings, "fast": True})
        confident = document is not None and _confident(document, confident_chars)
    if not confident:
        document = bare_extraction(tree, url=url, **settings)
    if document is None:
        return "", False
    text = (document.text or "").strip()
    if settings["include_comments"] and document.comments:
        text = f"{text}\n{document.comments.strip()}".strip()
    return text, confident


def _confident(document: Any, min_chars: int) -> bool:
    """Whether trafilatura's fallback comparison would keep this main pass (see `_trafilatura_text`)."""
    body = document.body
    return (len(document.text or "") >= min_chars and bool(body.xpath(".//p//text()"))
            and len(body.findall(".//table")) <= len(body.findall(".//p")) and not body.xpath(SANITIZED_XPATH))


def _with_posts(text: str, posts: list[list[str]]) -> str:
    """`text`, then every post line it does not already hold (each line once), in the thread's order.

    A line is held by `text` when its letters (whitespace and case ignored, `_key`) occur anywhere in it, not only
    as a line of its own: trafilatura often joins a post's paragraphs into one line ("- first paragraph second
    paragraph") where `post_lines` gives one line per block, and a test of whole lines added such posts a second
    time (bench/extraction_quality.py: generic forum threads, e.g. NodeBB's, scored below both trafilatura's text
    and the posts alone). Lines of the posts themselves are compared whole, so that a short reply ("Thanks!")
    inside a longer one is kept."""
    held, seen = _key(text), set()
    added = []
    for line in (line for post in posts for line in post):
        key = _key(line)
        if key and key not in seen and key not in held:
            seen.add(key)
            added.append(line)
    return "\n".join(part for part in (text, *added) if part).strip()


def _holds_a_post(text: str, posts: list[list[str]]) -> bool:
    """Whether `text` holds most (`HELD_SHARE`) of the characters of one of the posts, line by line (`_key`).

    Where the URL names no forum, a group of post-like elements is only taken as the page's thread when trafilatura
    found one of its posts (in practice the first): on forums outside our URL rules its main text is that post,
    and the group adds the replies; a list of teasers or of another story's comments holds nothing of it. On the
    463 pages of bench/extraction_quality.py no article page changes and the same forum pages gain with a share of
    0.3, 0.5 or 0.8."""
    held = _key(text)
    for post in posts:
        keys = [_key(line) for line in post]
        total = sum(len(key) for key in keys)
        if total and sum(len(key) for key in keys if key in held) >= HELD_SHARE * total:
            return True
    return False


def _key(line: str) -> str:
    return "".join(line.split()).lower()


def parse_html(html: bytes | str) -> tuple[HtmlElement | None, bool]:
    """The page's tree as trafilatura's `load_html` builds it (None: not HTML), and whether the parse was
    cut short. libxml2 stops at 256 open elements and drops the rest of the page, so a page that hits
    that limit is flattened (`cleaners.html_depth`) and parsed again; other pages are parsed once, as before.
    """
    tree = load_html(html)
    if not _cut_short():
        return tree, False
    text = html if isinstance(html, str) else decode_file(html)
    tree = load_html(flatten_deep_html(text))
    return tree, _cut_short()


def _cut_short() -> bool:
    """Whether the last parse with trafilatura's parser stopped at a libxml2 limit (depth, in practice)."""
    # the log of the parser's last parse: exact in the child, which parses one page at a time; in-process
    # mode (timeout_s <= 0) from several threads could read another thread's parse
    error = HTML_PARSER.error_log.last_error
    return error is not None and error.type == ErrorTypes.ERR_RESOURCE_LIMIT


ExtractFunction = Callable[..., "ExtractResult | None"]


def _serve(conn: Any, extract_fn: ExtractFunction, options: dict[str, Any]) -> None:
    """Child process loop: ("ready", None) once, then (html, http_charset, url) in, html as the response's bytes
    (decoded here, `cleaners.charset.decode_html`) or a str; ("ok", ((title, text, path) | None, encoding)) or
    ("error", name) out."""
    try:
        conn.send(("ready", None))
    except (EOFError, OSError):
        return
    while True:
        try:
            html, http_charset, url = conn.recv()
        except (EOFError, OSError):
            return
        try:
            html, encoding = _decoded(html, http_charset)
            result = extract_fn(html, url, **options)
            reply = ("ok", (None if result is None else (result.title, result.text, result.path), encoding))
        except Exception as exc:  # noqa: BLE001 - the reason names the exception, the run goes on
            reply = ("error", type(exc).__name__)
        try:
            conn.send(reply)
        except (EOFError, OSError):
            return


def _decoded(html: bytes | str, http_charset: str | None) -> tuple[str, str]:
    """The page as text and the codec that decoded it ("str" for a page given as text)."""
    return (html, "str") if isinstance(html, str) else decode_html(html, http_charset)


def _stop_worker(process: Any, conn: Any) -> None:
    """Close the pipe and end the child (it exits on EOF; killed if it does not within 1 s)."""
    try:
        conn.close()
    except OSError:
        pass
    process.join(1.0)
    if process.is_alive():
        process.kill()
        process.join(1.0)


class PageExtractor:
    """RawPage -> Document, or a drop reason: `extract-too-large`, `extract-timeout`, `extract-empty` (parsed,
    no main text), `extract-unparsable` (not HTML lxml can read, see `UnparsableHTML`),
    `extract-error:<ExceptionName>` (`extract-error:WorkerDied` when the child process crashed).

    Configured from the recipe's `extract:` section. `timeout_s <= 0` extracts in the calling process
    with no time limit. `extract_fn` replaces `extract_html` (a module-level function, so it pickles;
    tests use it to inject a slow extraction). Use one instance from one thread at a time (as Beam does);
    call `setup()` before and `teardown()` after (the child is also stopped at garbage collection and exit).
    """

    def __init__(self, *, timeout_s: float = 10, max_html_bytes: int = 5_000_000, min_text_chars: int = 1,
                 extract_fn: ExtractFunction | None = None, **trafilatura_options: Any) -> None:
        unknown = set(trafilatura_options) - _OPTION_NAMES
        if unknown:
            raise ValueError(f"unknown extract option(s) {sorted(unknown)}; known: {sorted(_OPTION_NAMES)}")
        if max_html_bytes <= 0 or min_text_chars < 0:
            raise ValueError("max_html_bytes must be > 0 and min_text_chars >= 0")
        self.timeout_s = float(timeout_s)
        self.max_html_bytes = int(max_html_bytes)
        self.min_text_chars = int(min_text_chars)
        self.extract_fn = extract_fn or extract_html
        self.options = {**DEFAULT_OPTIONS, **trafilatura_options}
        self._worker: Any = None       # (process, connection) while a child runs
        self._ready = False            # the child has imported everything and waits for pages
        self._finalizer: Any = None

    # -- lifecycle ---------------------------------------------------------------------------
    def setup(self) -> None:
        """Start the child process and wait until it is ready (a no-op in in-process mode or when it runs)."""
        if self.timeout_s > 0 and self._worker is None:
            self._start_worker()
            self._wait_ready()

    def teardown(self) -> None:
        """Stop the child process; `setup()` (or the next page) starts a new one."""
        if self._finalizer is not None:
            self._finalizer()  # runs _stop_worker once
        self._worker = self._finalizer = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_worker"] = state["_finalizer"] = None
        state["_ready"] = False
        return state

    def _start_worker(self) -> None:
        # spawn, not fork: forking a process that runs other threads (Beam's) can copy held locks
        context = multiprocessing.get_context("spawn")
        parent_conn, child_conn = context.Pipe()
        process = context.Process(target=_serve, args=(child_conn, self.extract_fn, self.options),
                                  name="wudao-extract", daemon=True)
        process.start()
        child_conn.close()
        self._worker = (process, parent_conn)
        self._ready = False
        self._finalizer = weakref.finalize(self, _stop_worker, process, parent_conn)

    def _wait_ready(self) -> bool:
        """Wait for the child's start-up message; False (child stopped) if it died or hung."""
        if self._ready:
            return True
        _, conn = self._worker
        try:
            if conn.poll(STARTUP_TIMEOUT_S) and conn.recv()[0] == "ready":
                self._ready = True
                return True
        except (EOFError, OSError):
            pass
        self._kill_worker()
        return False

    def _kill_worker(self) -> None:
        process, _ = self._worker
        process.kill()
        self.teardown()

    # -- extraction --------------------------------------------------------------------------
    def extract(self, html: bytes | str, url: str | None, http_charset: str | None = None
                ) -> tuple[ExtractResult | str | None, str]:
        """Extract one page under the time limit: (a result, None (nothing found) or a reason; the codec that
        decoded the page, "" when it was not decoded). Bytes are decoded where the page is extracted: in the child,
        so that the pipe carries the response's bytes as they are, not a pickled copy of its text."""
        if self.timeout_s <= 0:
            html, encoding = _decoded(html, http_charset)
            try:
                return self.extract_fn(html, url, **self.options), encoding
            except UnparsableHTML:
                return REASON_UNPARSABLE, encoding
            except Exception as exc:  # noqa: BLE001
                return REASON_ERROR + type(exc).__name__, encoding
        if self._worker is None or not self._worker[0].is_alive():
            self.teardown()
            self._start_worker()
        if not self._wait_ready():
            return REASON_ERROR + "WorkerDied", ""
        _, conn = self._worker
        try:
            conn.send((html, http_charset, url or None))
            if not conn.poll(self.timeout_s):
                self._kill_worker()
                return REASON_TIMEOUT, ""
            status, payload = conn.recv()
        except (EOFError, OSError):
            self._kill_worker()
            return REASON_ERROR + "WorkerDied", ""
        if status == "error":
            return (REASON_UNPARSABLE if payload == UnparsableHTML.__name__ else REASON_ERROR + payload), ""
        result, encoding = payload
        return (None if result is None else ExtractResult(*result)), encoding

    def process(self, raw: RawPage) -> Document | str:
        """The Document for one RawPage (text records pass through unextracted), or a drop reason."""
        return self.process_with_path(raw)[0]

    def process_with_path(self, raw: RawPage) -> tuple[Document | str, str]:
        """`process`, and the extraction path the page took (`ExtractResult.path`; "" when nothing was extracted:
        a text record, or a reason)."""
        meta = dict(raw.meta)
        path = ""
        if raw.text is not None:
            title, text = raw.title, raw.text
        elif raw.html is not None:
            if len(raw.html) > self.max_html_bytes:
                return REASON_TOO_LARGE, ""
            result, encoding = self.extract(raw.html, raw.url, raw.http_charset)
            if encoding:
                meta["encoding"] = encoding
            if isinstance(result, str):
                return result, ""
            if result is None:
                return REASON_EMPTY, ""
            title, text, path = result.title or raw.title, result.text, result.path
        else:
            return REASON_EMPTY, ""
        if len(text.strip()) < max(self.min_text_chars, 1):
            return REASON_EMPTY, ""
        return Document(id=stable_hash(raw.key), text=text, title=title, url=raw.url,
                        source=raw.source, date=raw.date, meta=meta, key=raw.key), path


HTML_SUFFIXES = (".html", ".htm", ".html.gz", ".htm.gz")


def extract_files(paths: Iterable[str | Path], **extract_config: Any) -> Iterator[dict[str, str]]:
    """For `wudao extract FILE...`: one {"file", "title", "text"} per .html / .html.gz file, extracted
    exactly as the pipeline does (PageExtractor with the recipe's `extract:` settings in `extract_config`).
    A page that is dropped gives empty title and text plus "reason"; an unreadable file gives "reason"
    `read-error:<ExceptionName>`. Other suffixes raise ValueError before anything is read."""
    paths = [str(p) for p in paths]
    for path in paths:
        if not path.lower().endswith(HTML_SUFFIXES):
            raise ValueError(f"{path}: not an .html or .html.gz file")
    extractor = PageExtractor(**extract_config)
    extractor.setup()
    try:
        for path in paths:
            try:
                data = Path(path).read_bytes()
                if path.lower().endswith(".gz"):
                    data = gzip.decompress(data)
            except (OSError, EOFError, gzip.BadGzipFile) as exc:
                yield {"file": path, "title": "", "text": "", "reason": f"read-error:{type(exc).__name__}"}
                continue
            outcome = extractor.process(RawPage(key=path, source=path, html=data))
            if isinstance(outcome, str):
                yield {"file": path, "title": "", "text": "", "reason": outcome}
            else:
                yield {"file": path, "title": outcome.title, "text": outcome.text}
    finally:
        extractor.teardown()
