"""The downloader against a real HTTP server on 127.0.0.1 that the tests start (no outside network)."""
from __future__ import annotations

import io
import socket
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to
from PIL import Image

from cleaners.image.record import ImageText
from pipelines.download import DownloadConfig, Downloader, DownloadImages, is_transient, opted_out
from pipelines.readers.skip import Skip


def _encoded(fmt: str) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 6), (200, 30, 30)).save(out, format=fmt)
    return out.getvalue()


JPEG, PNG = _encoded("JPEG"), _encoded("PNG")
BARRIER_PARTIES = 3


class _State:
    def __init__(self):
        self.lock = threading.Lock()
        self.hits: Counter[str] = Counter()
        self.user_agents: list[str] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.barrier = threading.Barrier(BARRIER_PARTIES, timeout=10)


def _handler(state: _State):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def send(self, status=200, body=b"", ctype="image/jpeg", headers=(), length=True):
            self.send_response(status)
            if ctype:
                self.send_header("Content-Type", ctype)
            for name, value in headers:
                self.send_header(name, value)
            if length:
                self.send_header("Content-Length", str(len(body) if length is True else length))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            path = self.path
            with state.lock:
                state.hits[path] += 1
                hits = state.hits[path]
                state.user_agents.append(self.headers.get("User-Agent", ""))
            if path == "/good.jpg":
                self.send(body=JPEG)
            elif path == "/good.png":
                self.send(body=PNG, ctype="image/png")
            elif path == "/octet":
                self.send(body=JPEG, ctype="application/octet-stream")
            elif path == "/page.html":
                self.send(body=b"<html>not found</html>", ctype="text/html; charset=utf-8")
            elif path == "/missing":
                self.send(404, b"no")
            elif path == "/flaky":
                self.send(500, b"oops") if hits == 1 else self.send(body=JPEG)
            elif path == "/busy":
                self.send(503, b"busy")
            elif path == "/slow":
                time.sleep(1.5)
                self.send(body=JPEG)
            elif path.startswith("/hop/"):
                n = int(path.rsplit("/", 1)[1])
                self.send(302, ctype=None, headers=[("Location", f"/hop/{n - 1}" if n > 1 else "/good.png")])
            elif path == "/loop":
                self.send(301, ctype=None, headers=[("Location", "/loop")])
            elif path == "/noai":
                self.send(body=JPEG, headers=[("X-Robots-Tag", "noai")])
            elif path == "/otherbot":
                self.send(body=JPEG, headers=[("X-Robots-Tag", "otherbot: noai"), ("X-Robots-Tag", "noarchive")])
            elif path == "/img2dataset":
                self.send(body=JPEG, headers=[("X-Robots-Tag", "googlebot: noindex, img2dataset: noimageai")])
            elif path == "/big":
                self.send(body=b"x" * 5000)
            elif path == "/big-no-length":
                self.send(body=b"x" * 5000, length=False)      # HTTP/1.0: the body ends at close
            elif path == "/cut":
                self.send(body=JPEG[:100], length=len(JPEG))
            elif path.startswith("/pool/"):
                with state.lock:
                    state.in_flight += 1
                    state.max_in_flight = max(state.max_in_flight, state.in_flight)
                try:
                    state.barrier.wait()      # passes only when BARRIER_PARTIES requests are in flight at once
                finally:
                    with state.lock:
                        state.in_flight -= 1
                self.send(body=path.encode())
            else:
                self.send(404)

    return Handler


@pytest.fixture()
def server():
    state = _State()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    httpd.handle_error = lambda request, address: None      # clients that hang up early are expected
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield base, state
    httpd.shutdown()
    httpd.server_close()


def _cfg(**overrides) -> DownloadConfig:
    return DownloadConfig(**{"threads": 4, "timeout": 5.0, "retries": 2, "backoff": 0.01, **overrides})


def test_good_images_and_user_agent(server):
    base, state = server
    dl = Downloader(_cfg())
    assert dl.fetch(base + "/good.jpg") == JPEG
    assert dl.fetch(base + "/good.png") == PNG
    assert dl.fetch(base + "/octet") == JPEG           # octet-stream is common for images: accepted
    assert state.user_agents == [DownloadConfig().user_agent] * 3


@pytest.mark.parametrize("path, reason, hits", [
    ("/missing", "http-404", 1),          # never retried
    ("/busy", "http-503", 3),             # retries + 1 attempts, then gives up
    ("/page.html", "not-image", 1),
    ("/noai", "opt-out", 1),
    ("/img2dataset", "opt-out", 1),       # addressed to img2dataset, whose opt-outs we honour
    ("/loop", "too-many-redirects", 6),   # max_redirects 5: the 6th redirect is refused
    ("/big", "too-large", 1),             # Content-Length above max_bytes
    ("/big-no-length", "too-large", 1),   # no Content-Length: the bytes read count
])
def test_failure_reasons_and_attempts(server, path, reason, hits):
    base, state = server
    assert Downloader(_cfg(max_bytes=1000)).fetch(base + path) == reason
    assert state.hits[path] == hits


def test_retry_after_a_transient_500(server):
    base, state = server
    assert Downloader(_cfg()).fetch(base + "/flaky") == JPEG
    assert state.hits["/flaky"] == 2


def test_backoff_doubles_between_attempts(server):
    base, _ = server
    slept: list[float] = []
    assert Downloader(_cfg(retries=3, backoff=0.5), sleep=slept.append).fetch(base + "/busy") == "http-503"
    assert slept == [0.5, 1.0, 2.0]


def test_redirect_chain_is_followed(server):
    base, state = server
    assert Downloader(_cfg()).fetch(base + "/hop/3") == PNG
    assert [state.hits[f"/hop/{n}"] for n in (3, 2, 1)] == [1, 1, 1]
    assert Downloader(_cfg(max_redirects=2)).fetch(base + "/hop/3") == "too-many-redirects"


def test_opt_out_addressed_to_another_agent_is_ignored(server):
    base, _ = server
    assert Downloader(_cfg()).fetch(base + "/otherbot") == JPEG
    assert Downloader(_cfg(respect_opt_out=False)).fetch(base + "/noai") == JPEG


def test_slow_response_times_out_and_is_retried(server):
    base, state = server
    assert Downloader(_cfg(timeout=0.3, retries=1)).fetch(base + "/slow") == "timeout"
    assert state.hits["/slow"] == 2


def test_connection_closed_mid_body(server):
    base, state = server
    assert Downloader(_cfg(retries=1)).fetch(base + "/cut") == "incomplete"
    assert state.hits["/cut"] == 2         # a cut body is transient: retried


def test_dns_failure_refused_port_and_bad_urls():
    dl = Downloader(_cfg(timeout=2.0))
    assert dl.fetch("http://no-such-host.invalid/a.jpg") == "dns"
    with socket.socket() as sock:            # a port that was just free: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert Downloader(_cfg(retries=0)).fetch(f"http://127.0.0.1:{port}/a.jpg") == "connect"
    for url in ("", "ftp://example.com/a.jpg", "not a url", "http:///a.jpg", "http://127.0.0.1:99999/a.jpg",
                "http://exa mple.com/a.jpg"):
        assert dl.fetch(url) == "bad-url", url


def test_fetch_many_keeps_its_thread_bound(server):
    base, state = server
    items = [ImageText(key=f"k{i}", source="s", url=f"{base}/pool/{i}") for i in range(3 * BARRIER_PARTIES)]
    results = list(Downloader(_cfg(threads=BARRIER_PARTIES)).fetch_many(items))
    assert sorted(item.key for item, _ in results) == sorted(item.key for item in items)
    assert all(body == item.url.removeprefix(base).encode() for item, body in results)
    assert state.max_in_flight == BARRIER_PARTIES     # the barrier proves 3 ran together; never 4


def test_opted_out_parsing():
    assert opted_out(["noai"]) and opted_out(["NoImageAI"]) and opted_out(["noarchive, noindex"])
    assert opted_out(["wudao-corpora: noai"]) and opted_out(["googlebot: nofollow, img2dataset: noindex"])
    assert not opted_out(["otherbot: noai"]) and not opted_out(["noarchive", "nofollow"]) and not opted_out([])
    assert not opted_out(["unavailable_after: 25 Jun 2010 15:00:00 PST"])
    assert opted_out(["unavailable_after: 25 Jun 2010 15:00:00 PST, noai"])


def test_transient_reasons():
    assert [r for r in ("timeout", "connect", "incomplete", "http-429", "http-500", "http-503", "http-408")
            if not is_transient(r)] == []
    assert [r for r in ("dns", "http-404", "http-403", "http-501", "opt-out", "too-large", "bad-url", "ssl")
            if is_transient(r)] == []


def _summary(out):
    if isinstance(out, Skip):
        return out.key, out.reason
    return out.key, len(out.image)


def test_dofn_in_a_beam_pipeline(server):
    base, _ = server
    items = [ImageText(key="a", source="s", url=base + "/good.jpg"),
             ImageText(key="b", source="s", url=base + "/missing"),
             ImageText(key="c", source="s", url="http://x.invalid/c.png"),
             ImageText(key="d", source="s", image=b"already here"),
             ImageText(key="e", source="s", url=base + "/good.png")]
    expected = [("a", len(JPEG)), ("b", "download:http-404"), ("c", "download:dns"), ("d", 12), ("e", len(PNG))]
    with beam.Pipeline(runner="FnApiRunner") as p:
        out = (p | beam.Create(items)
               | beam.ParDo(DownloadImages({"threads": 2, "timeout": 2.0, "backoff": 0.01, "batch_size": 2}))
               | beam.Map(_summary))
        assert_that(out, equal_to(expected))


def test_dofn_rejects_unknown_options():
    with pytest.raises(ValueError, match="threadz"):
        DownloadImages({"threadz": 3})
