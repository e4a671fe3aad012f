"""The polite image downloader: `Downloader.fetch(url) -> bytes | reason`, `fetch_many`, and the `DownloadImages` DoFn.

Standard library only (http.client), one connection per request, redirects followed by hand (at most
`max_redirects`). Politeness as img2dataset does it: a User-Agent that names the project, and the
`X-Robots-Tag` opt-out directives `noai`, `noimageai`, `noindex`, `noimageindex` honoured when addressed to
every agent, to `img2dataset` or to our own token (img2dataset's `disallowed_header_directives` defaults).
Retries with exponential backoff only on transient failures (timeout, connect errors, a connection cut
mid-body, 408, 429, 5xx except 501/505); never on dns, 404, opt-out or too-large.

Two time limits: `timeout` bounds connecting and each socket read, and `deadline_s` bounds a whole attempt
(connect, redirects, headers and body), so a server that drips a byte a second cannot hold a thread: past the
deadline the attempt's sockets are shut down and it fails as `timeout`, which is retried at most once.

Failure reasons: `bad-url`, `dns`, `connect`, `timeout`, `ssl`, `incomplete` (the body ended early),
`http-<code>`, `too-large` (Content-Length or the bytes actually read), `too-many-redirects`, `opt-out`,
`not-image` (a `text/*` Content-Type, such as a soft-404 page; `application/octet-stream` is accepted), and
`error:<ExceptionName>` for anything unforeseen (never raised to the caller).
Proxies from the environment are not used.
"""
from __future__ import annotations

import dataclasses

import http.client
import re
import socket
import ssl
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, fields
from typing import Any, Iterable, Iterator
from urllib.parse import quote, urljoin, urlsplit

import apache_beam as beam
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from apache_beam.utils.windowed_value import WindowedValue

from cleaners.image.record import ImageText
from pipelines.readers.skip import Skip

USER_AGENT_TOKEN = "wudao-corpora"
OPT_OUT_AGENTS = ("img2dataset", USER_AGENT_TOKEN)
OPT_OUT_DIRECTIVES = frozenset({"noai", "noimageai", "noindex", "noimageindex"})
# robots directives whose value contains a colon, so "name: value" is no user-agent prefix for them
_VALUED_DIRECTIVES = frozenset({"unavailable_after", "max-snippet", "max-image-preview", "max-video-preview"})
_AGENT_PREFIX = re.compile(r"^\s*([A-Za-z0-9_.-]+)\s*:(.*)$")
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_READ_CHUNK = 1 << 16
_SAFE_URL_CHARS = "/?#[]@!$&'()*+,;=:%~-._"
REASONS = ("bad-url", "dns", "connect", "timeout", "ssl", "incomplete", "too-large", "too-many-redirects",
           "opt-out", "not-image")   # plus http-<code>


@dataclass
class DownloadConfig:
    threads: int = 16
    timeout: float = 10.0               # seconds per connect and per socket read
    deadline_s: float = 30.0            # seconds for a whole attempt: connect, redirects, headers and body
    retries: int = 2                    # extra attempts after a transient failure
    backoff: float = 0.5                # seconds before the first retry; doubles each time
    max_bytes: int = 20_000_000
    user_agent: str = "wudao-corpora/0.1 (+https://github.com/wudao-corpora; image-text dataset builder)"
    respect_opt_out: bool = True
    max_redirects: int = 5

    @classmethod
    def from_dict(cls, params: dict[str, Any] | DownloadConfig | None) -> DownloadConfig:
        if isinstance(params, DownloadConfig):
            return params
        known = {f.name for f in fields(cls)}
        unknown = set(params or {}) - known
        if unknown:
            raise ValueError(f"unknown download option(s) {sorted(unknown)}; known: {sorted(known)}")
        return cls(**(params or {}))

    def __post_init__(self) -> None:
        if not self.deadline_s > 0:
            raise ValueError(f"download deadline_s must be > 0, not {self.deadline_s!r}")


def is_transient(reason: str) -> bool:
    """Worth another try: timeouts, connect errors, a cut body, 408, 429 and 5xx (not 501 / 505)."""
    if reason in ("timeout", "connect", "incomplete"):
        return True
    if reason.startswith("http-"):
        code = int(reason[5:])
        return code in (408, 429) or 500 <= code <= 599 and code not in (501, 505)
    return False


def opted_out(header_values: list[str], agents: Iterable[str] = OPT_OUT_AGENTS,
              directives: frozenset[str] = OPT_OUT_DIRECTIVES) -> bool:
    """True when an `X-Robots-Tag` value forbids use by every agent or by one of `agents`.

    `noai, noindex` addresses everyone; `otherbot: noai` only `otherbot`; in one value a `name:` prefix
    applies to the directives after it ("googlebot: noindex, img2dataset: noai")."""
    ours = {agent.lower() for agent in agents}
    for value in header_values:
        agent = None
        for part in value.split(","):
            m = _AGENT_PREFIX.match(part)
            if m and m.group(1).lower() not in _VALUED_DIRECTIVES:
                agent, part = m.group(1).lower(), m.group(2)
            if part.strip().lower() in directives and (agent is None or agent in ours):
                return True
    return False


class _Failure(Exception):
    def __init__(self, reason: str, retry_after: float = 0.0):
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class _Deadline:
    """One attempt's time limit: a timer shuts the attempt's sockets down when it passes, which ends any read
    that is blocked or trickling (the per-read `timeout` never fires while bytes keep coming)."""

    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def left(self) -> float:
        """Seconds left; a `timeout` failure when none are."""
        left = self.end - time.monotonic()
        if left <= 0 or self.expired:
            raise _Failure("timeout")
        return left

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
            if self.expired:
                _shut(sock)

    def close(self, *closables) -> None:
        """Close under the lock, so the timer never shuts down a socket number that was closed and reused."""
        with self._lock:
            for closable in closables:
                if closable is not None:
                    closable.close()

    def stop(self) -> bool:
        """Cancel the timer; True when the deadline had passed."""
        self._timer.cancel()
        with self._lock:
            self._sockets = []
            return self.expired

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                _shut(sock)


def _shut(sock: socket.socket) -> None:
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)    # the plain socket's: also under an SSL socket
    except OSError:
        pass          # already closed


class Downloader:
    """Fetches image bytes over HTTP(S); thread-safe (no shared connection state)."""

    def __init__(self, cfg: DownloadConfig | None = None, *, sleep=time.sleep):
        self.cfg = cfg or DownloadConfig()
        self._sleep = sleep
        self._ssl = ssl.create_default_context()

    def fetch(self, url: str) -> bytes | str:
        """The body of `url`, or the reason it could not be had (see the module docstring)."""
        attempt, expired_before = 0, False
        while True:
            deadline = _Deadline(self.cfg.deadline_s)
            try:
                body, failure = self._follow(url, deadline), None
            except _Failure as exc:
                body, failure = None, exc
            if deadline.stop():                 # whatever the read saw, the attempt ran out of time
                if expired_before:
                    return "timeout"            # a deadline timeout is retried once at most
                body, failure, expired_before = None, _Failure("timeout"), True
            if failure is None:
                return body
            if attempt >= self.cfg.retries or not is_transient(failure.reason):
                return failure.reason
            delay = self.cfg.backoff * (2 ** attempt)
            self._sleep(max(delay, min(failure.retry_after, self.cfg.timeout)))
            attempt += 1

    def fetch_many(self, items: Iterable[ImageText]) -> Iterator[tuple[ImageText, bytes | str]]:
        """(item, body or reason) for every item's url, at most `threads` requests in flight; results come
        in completion order and at most `threads` items are held, so memory stays bounded."""
        limit = max(1, self.cfg.threads)
        with ThreadPoolExecutor(max_workers=limit, thread_name_prefix="wudao-download") as pool:
            pending: dict[Future, ImageText] = {}
            for item in items:
                if len(pending) >= limit:
                    yield from self._collect(pending)
                pending[pool.submit(self.fetch, item.url)] = item
            while pending:
                yield from self._collect(pending)

    @staticmethod
    def _collect(pending: dict[Future, ImageText]) -> Iterator[tuple[ImageText, bytes | str]]:
        done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
        for future in done:
            yield pending.pop(future), future.result()

    # ---- one request chain -------------------------------------------------------------------------
    def _follow(self, url: str, deadline: _Deadline) -> bytes:
        seen = 0
        while True:
            response, conn = self._request(url, deadline)
            try:
                if response.status in _REDIRECTS and response.getheader("Location"):
                    seen += 1
                    if seen > self.cfg.max_redirects:
                        raise _Failure("too-many-redirects")
                    url = urljoin(url, response.getheader("Location").strip())
                    continue
                return self._body(response)
            finally:
                deadline.close(response, conn)

    def _request(self, url: str, deadline: _Deadline) -> tuple[http.client.HTTPResponse, http.client.HTTPConnection]:
        parts = _split(url)
        if parts is None:
            raise _Failure("bad-url")
        scheme, host, port, target = parts
        headers = {"User-Agent": self.cfg.user_agent, "Accept": "image/*,*/*;q=0.8",
                   "Accept-Encoding": "identity"}
        timeout = min(self.cfg.timeout, deadline.left())
        conn = None
        try:
            if scheme == "https":
                conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=self._ssl)
            else:
                conn = http.client.HTTPConnection(host, port, timeout=timeout)
            conn.connect()
            deadline.watch(conn.sock)
            conn.request("GET", target, headers=headers)
            return conn.getresponse(), conn
        except Exception as exc:  # noqa: BLE001 - every socket/protocol error is a reason
            deadline.close(conn)
            raise _Failure(_reason(exc)) from None

    def _body(self, response: http.client.HTTPResponse) -> bytes:
        if response.status != 200:
            raise _Failure(f"http-{response.status}", _retry_after(response.getheader("Retry-After")))
        if self.cfg.respect_opt_out and opted_out(response.headers.get_all("X-Robots-Tag") or []):
            raise _Failure("opt-out")
        if (response.getheader("Content-Type") or "").strip().lower().startswith("text/"):
            raise _Failure("not-image")
        length = response.getheader("Content-Length")
        if length and length.strip().isdigit() and int(length) > self.cfg.max_bytes:
            raise _Failure("too-large")
        chunks, total = [], 0
        try:
            while True:
                chunk = response.read(min(_READ_CHUNK, self.cfg.max_bytes + 1 - total))
                if not chunk:
                    break
                chunks.append(chunk)
                total += len(chunk)
                if total > self.cfg.max_bytes:
                    raise _Failure("too-large")
        except _Failure:
            raise
        except Exception as exc:  # noqa: BLE001 - every socket/protocol error is a reason
            raise _Failure(_reason(exc)) from None
        if length and length.strip().isdigit() and total < int(length):
            raise _Failure("incomplete")      # http.client's read(amt) returns short data without raising
        return b"".join(chunks)


def _split(url: str) -> tuple[str, str, int | None, str] | None:
    """(scheme, host, port, request target) of an http(s) URL with non-ASCII and spaces percent-encoded."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
        host = parts.hostname
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not host:
        return None
    try:
        host.encode("idna")
    except UnicodeError:
        return None
    target = quote(parts.path or "/", safe=_SAFE_URL_CHARS)
    if parts.query:
        target += "?" + quote(parts.query, safe=_SAFE_URL_CHARS)
    if any(ord(c) < 33 for c in target):
        return None
    return parts.scheme.lower(), host, port, target


def _reason(exc: BaseException) -> str:
    """The failure reason for an exception raised while connecting or reading."""
    if isinstance(exc, socket.gaierror):
        return "dns"
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return "timeout"
    if isinstance(exc, (ssl.SSLError, ssl.CertificateError)):
        return "ssl"
    if isinstance(exc, http.client.IncompleteRead):
        return "incomplete"
    if isinstance(exc, (http.client.InvalidURL, UnicodeError, ValueError)):
        return "bad-url"
    if isinstance(exc, (OSError, http.client.HTTPException)):
        return "connect"
    return f"error:{type(exc).__name__}"


def _retry_after(value: str | None) -> float:
    try:
        return max(0.0, float(value)) if value else 0.0
    except ValueError:
        return 0.0


class DownloadImages(beam.DoFn):
    """Url-only pairs -> pairs with `image` set, or `Skip(key, source, "download:<reason>", url)`.

    Pairs that already carry image bytes (and anything else) pass straight through. Url pairs are buffered
    per bundle, `batch_size` at a time, and fetched in parallel; outputs are in the global window (a batch
    pipeline), in completion order.
    """

    def __init__(self, config: DownloadConfig | dict[str, Any] | None = None, batch_size: int | None = None):
        params = dict(config) if isinstance(config, dict) else config
        if isinstance(params, dict) and "batch_size" in params:
            batch_size = batch_size or params.pop("batch_size")
        self.cfg = DownloadConfig.from_dict(params)
        self.batch_size = batch_size or 4 * max(1, self.cfg.threads)
        self._downloader: Downloader | None = None
        self._buffer: list[ImageText] = []

    def setup(self) -> None:
        self._downloader = Downloader(self.cfg)

    def start_bundle(self) -> None:
        self._buffer = []

    def process(self, item: Any) -> Iterator[Any]:
        if not isinstance(item, ImageText) or item.image is not None:
            yield item
            return
        self._buffer.append(item)
        if len(self._buffer) >= self.batch_size:
            yield from self._flush()

    def finish_bundle(self) -> Iterator[WindowedValue]:
        for out in self._flush():
            yield WindowedValue(out, MIN_TIMESTAMP, [GlobalWindow()])

    def _flush(self) -> Iterator[ImageText | Skip]:
        batch, self._buffer = self._buffer, []
        for item, result in self._downloader.fetch_many(batch):
            if isinstance(result, bytes):
                yield dataclasses.replace(item, image=result)   # never mutate an input element (Beam's rule)
            else:
                yield Skip(item.key, item.source, f"download:{result}", item.url)
