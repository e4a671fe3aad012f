"""Hostile image-text inputs: data-juicer image paths that lead out of their folder, and a server that drips
bytes (a real HTTP server on 127.0.0.1, as in test_download.py)."""
from __future__ import annotations

import io
import json
import threading
import time
from collections import Counter, defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image

from cleaners.image.record import ImageText
from pipelines.download import DownloadConfig, Downloader
from cleaners.recipe import load_recipe
from pipelines.readers.image_text import ImageTextColumns, iter_image_text_file
from pipelines.readers.skip import Skip


def _jpeg(color) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 6), color).save(out, format="JPEG")
    return out.getvalue()


INSIDE, SECRET, EXTRA = _jpeg((200, 30, 30)), _jpeg((30, 200, 30)), _jpeg((30, 30, 200))


# ---- image paths ---------------------------------------------------------------------------------
@pytest.fixture()
def layout(tmp_path: Path) -> dict[str, Path]:
    """data/ holds the listing and one image; outside/ a secret image; extra/ an image for `image_roots`."""
    data, outside, extra = tmp_path / "data", tmp_path / "outside", tmp_path / "extra"
    for folder in (data / "img", outside, extra):
        folder.mkdir(parents=True)
    (data / "img" / "a.jpg").write_bytes(INSIDE)
    (outside / "x.jpg").write_bytes(SECRET)
    (extra / "e.jpg").write_bytes(EXTRA)
    (data / "img" / "link.jpg").symlink_to(outside / "x.jpg")
    return {"data": data, "outside": outside, "extra": extra}


def _listing(folder: Path, names: list[str]) -> Path:
    path = folder / "rows.jsonl"
    path.write_text("".join(json.dumps({"text": f"caption {i}", "images": [name]}) + "\n"
                            for i, name in enumerate(names)), encoding="utf-8")
    return path


def _read(path: Path, columns=None, opener=None) -> list[ImageText | Skip]:
    with open(path, "rb") as fh:
        return list(iter_image_text_file(fh, str(path), columns, opener=opener))


def _outcome(item) -> str | bytes:
    return item.reason if isinstance(item, Skip) else item.image


def test_image_paths_stay_under_the_input_folder(layout):
    data, outside, extra = layout["data"], layout["outside"], layout["extra"]
    names = ["img/a.jpg",                       # (a) inside: kept
             str(outside / "x.jpg"),            # (b) absolute, outside
             "../outside/x.jpg",                # (c) a `..` escape
             "img/link.jpg",                    # (d) a symlink inside that points outside
             str(extra / "e.jpg"),              # (e) under an extra root only when listed
             "img/../img/a.jpg",                # a `..` that stays inside is fine
             "img/a.jpg\0.png",                 # a NUL byte
             "/etc/passwd"]
    path = _listing(data, names)
    items = _read(path)
    assert [_outcome(i) for i in items] == [INSIDE, "image-path-outside-root", "image-path-outside-root",
                                            "image-path-outside-root", "image-path-outside-root", INSIDE,
                                            "image-path-invalid", "image-path-outside-root"]
    assert Counter(i.reason for i in items if isinstance(i, Skip)) == {"image-path-outside-root": 5,
                                                                        "image-path-invalid": 1}
    assert [i.key for i in items] == [f"{path}#{n}" for n in range(1, len(names) + 1)]   # each row counted
    assert [i.image for i in items if isinstance(i, ImageText)] == [INSIDE, INSIDE]      # the secret is nowhere

    allowed = _read(path, {"image_roots": [str(extra)]})
    assert [_outcome(i) for i in allowed][:5] == [INSIDE, "image-path-outside-root", "image-path-outside-root",
                                                  "image-path-outside-root", EXTRA]


def test_pipeline_counts_the_refused_path_and_writes_only_the_inside_image(layout, tmp_path):
    from pipelines.run import run_image_text

    path = _listing(layout["data"], ["img/a.jpg", str(layout["outside"] / "x.jpg")])
    config = tmp_path / "recipe.yaml"
    config.write_text("image: {min_side: 1}\ncaption: {min_words: 1}\n", encoding="utf-8")
    stats = run_image_text([str(path)], str(tmp_path / "out"), str(config), [])
    read = next(stage for stage in stats["stages"] if stage["stage"] == "read")
    assert (read["in"], read["out"], read["dropped_by_reason"]) == (2, 1, {"image-path-outside-root": 1})
    assert stats["totals"]["kept"] == 1
    written = b"".join(p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert SECRET not in written and b"caption 0" in written and b"caption 1" not in written


def test_image_roots_from_the_recipe_and_relative_roots(layout, monkeypatch):
    assert load_recipe(kind="image_text")["read"]["image_roots"] == []
    assert ImageTextColumns.from_dict(load_recipe(kind="image_text")["read"]).image_roots == []
    monkeypatch.chdir(layout["extra"].parent)
    cols = ImageTextColumns.from_dict({"image_roots": "extra"})          # one string, relative to the cwd
    assert cols.image_roots == [str(layout["extra"])]
    path = _listing(layout["data"], [str(layout["extra"] / "e.jpg")])
    assert [_outcome(i) for i in _read(path, cols)] == [EXTRA]


def test_remote_input_joins_relative_paths_and_refuses_escapes(tmp_path):
    """gs:// inputs: relative names join onto the file's folder (opened through the opener, FileSystems in Beam);
    `..` above that folder and local absolute paths are refused without opening anything."""
    opened: list[str] = []

    def opener(target: str):
        opened.append(target)
        return io.BytesIO(INSIDE)

    rows = [{"text": "a", "images": ["img/a.jpg"]}, {"text": "b", "images": ["../other/b.jpg"]},
            {"text": "c", "images": ["/etc/passwd"]}, {"text": "d", "images": ["gs://bucket/extra/d.jpg"]}]
    data = "".join(json.dumps(r) + "\n" for r in rows).encode()
    items = list(iter_image_text_file(io.BytesIO(data), "gs://bucket/d/rows.jsonl", None, opener=opener))
    assert [_outcome(i) for i in items] == [INSIDE] + ["image-path-outside-root"] * 3
    assert opened == ["gs://bucket/d/img/a.jpg"]
    items = list(iter_image_text_file(io.BytesIO(data), "gs://bucket/d/rows.jsonl",
                                      {"image_roots": ["gs://bucket/extra"]}, opener=opener))
    assert [_outcome(i) for i in items] == [INSIDE, "image-path-outside-root", "image-path-outside-root", INSIDE]
    assert opened[1:] == ["gs://bucket/d/img/a.jpg", "gs://bucket/extra/d.jpg"]


# ---- a server that drips bytes -------------------------------------------------------------------
DRIP_INTERVAL = 0.2
DRIP_BYTES = 1000                       # 200 s of dripping: an attempt without a deadline would read it all


def _drip_handler(hits: Counter, sent: dict, lock: threading.Lock):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            with lock:
                hits[self.path] += 1
            if self.path == "/drip-headers.jpg":
                self.wfile.write(b"HTTP/1.1 200 OK\r\n")
                self._drip(b"X-Pad: " + b"a" * DRIP_BYTES)
                return
            body = INSIDE if self.path == "/good.jpg" else b"x" * DRIP_BYTES
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.path == "/good.jpg":
                self.wfile.write(body)
            else:
                self._drip(body)

        def _drip(self, data: bytes) -> None:
            """One byte every DRIP_INTERVAL (each read is quick, the whole is not); records how many bytes were
            written before the client hung up (all of them if it never did)."""
            written = 0
            for byte in data:
                try:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                except OSError:
                    break                       # the client gave up
                written += 1
                time.sleep(DRIP_INTERVAL)
            with lock:
                sent[self.path].append(written)

    return Handler


@pytest.fixture()
def drip_server():
    hits, sent, lock = Counter(), defaultdict(list), threading.Lock()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _drip_handler(hits, sent, lock))
    httpd.handle_error = lambda request, address: None      # clients that hang up early are expected
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", hits, sent
    httpd.shutdown()
    httpd.server_close()


def test_drip_server_hits_the_deadline_and_is_retried_once(drip_server):
    base, hits, sent = drip_server
    cfg = DownloadConfig(threads=3, timeout=5.0, deadline_s=1.0, retries=3, backoff=0.05)
    items = [ImageText(key="drip", source="s", url=base + "/drip.jpg"),
             ImageText(key="headers", source="s", url=base + "/drip-headers.jpg"),
             ImageText(key="good", source="s", url=base + "/good.jpg")]
    results = {item.key: result for item, result in Downloader(cfg).fetch_many(items)}
    assert results == {"drip": "timeout", "headers": "timeout", "good": INSIDE}
    assert hits["/drip.jpg"] == hits["/drip-headers.jpg"] == 2    # retries=3, yet a deadline timeout is retried once
    # every read was quick (5 s per-read timeout, a byte every 0.2 s): only the deadline can have ended the attempts,
    # and the client hung up long before the server had written everything
    for _ in range(100):                  # the server notices a hang-up at its next write
        if len(sent["/drip.jpg"]) == len(sent["/drip-headers.jpg"]) == 2:
            break
        time.sleep(DRIP_INTERVAL)
    assert all(n < DRIP_BYTES // 10 for n in sent["/drip.jpg"] + sent["/drip-headers.jpg"]), dict(sent)


def test_deadline_in_the_recipe_and_checked():
    assert DownloadConfig.from_dict(load_recipe(kind="image_text")["download"]).deadline_s == 30.0
    with pytest.raises(ValueError, match="deadline_s"):
        DownloadConfig(deadline_s=0)
