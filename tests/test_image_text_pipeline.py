"""The image-text pipeline end to end: real samples, Pillow's odd images, a url list served on 127.0.0.1,
the ledger, the shard format, and the same shards from the in-process and multi_processing runners."""
from __future__ import annotations

import csv
import gzip
import io
import json
import tarfile
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import webdataset as wds
from PIL import Image

from cleaners.image.checks import ImageChecks
from pipelines.cli import main
from pipelines.run import run_image_text


def _rejects(out: Path) -> list[dict]:
    rows = []
    for part in sorted((out / "rejects").glob("part-*.jsonl.gz")):
        with gzip.open(part, "rt", encoding="utf-8") as fh:
            rows += [json.loads(line) for line in fh if line.strip()]
    return rows


def _samples(out: Path) -> dict[str, dict]:
    """key -> {"jpg": bytes, "txt": str, "json": dict} over every shard, read with tarfile."""
    samples: dict[str, dict] = {}
    for shard in sorted((out / "images").glob("*.tar")):
        with tarfile.open(shard) as tar:
            for member in tar:
                key, ext = member.name.split(".", 1)
                data = tar.extractfile(member).read()
                samples.setdefault(key, {})[ext] = {"json": json.loads, "txt": bytes.decode}.get(ext, bytes)(data)
    return samples


def _write_config(tmp_path: Path, text: str) -> str:
    path = tmp_path / "recipe.yaml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def _check_ledger(stats: dict) -> None:
    for stage in stats["stages"]:
        assert stage["in"] == stage["out"] + stage["dropped"], stage
    assert stats["totals"]["records_in"] == stats["totals"]["kept"] + stats["totals"]["dropped"]


def test_real_samples(corpus_samples, tmp_path):
    root = corpus_samples / "image_text"
    out = tmp_path / "out"
    # data-juicer's jsonl names `../../tests/ops/data/*`: outside its folder, so its root is listed
    config = _write_config(tmp_path, f"read: {{image_roots: [{json.dumps(str(root / 'data-juicer_demo'))}]}}\n")
    stats = run_image_text([str(root / "nemo-curator_wds" / "00000.tar"),
                            str(root / "data-juicer_demo" / "demos" / "data" / "*"),
                            str(root / "webdataset_testdata" / "sample.tgz")], str(out), config, [])
    _check_ledger(stats)
    by_stage = {s["stage"]: s for s in stats["stages"]}
    assert stats["totals"] == {"records_in": 97, "kept": 3, "dropped": 94}
    assert by_stage["caption_text"]["dropped_by_reason"] == {"empty": 90}            # MNIST digits
    assert by_stage["caption_length"]["dropped_by_reason"] == {"too-short": 2}       # "A bus."
    assert by_stage["phash_dedup"]["dropped"] == 2   # data-juicer's jsonl and parquet hold the same photos
    samples = _samples(out)
    assert sorted(s["txt"] for s in samples.values()) == [
        "A comfortable bed.", "A wine bottle outfitted with two forks in its cork and a duck head on top.",
        "Black and white photograph of a woman holding an umbrella."]
    for key, sample in samples.items():
        assert sample["json"]["id"] == key
        image = Image.open(io.BytesIO(sample["jpg"]))
        assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (256, 256))
        assert sample["json"]["facts"]["width"] == 256 and len(sample["json"]["facts"]["phash"]) == 16
    index = json.loads((out / "images" / "shards.json").read_text())
    assert index["samples"] == 3
    # webdataset itself reads the shards
    loaded = list(wds.WebDataset(str(out / "images" / "000000.tar"), shardshuffle=False).decode("pil"))
    assert sorted(s["__key__"] for s in loaded) == sorted(samples)


def test_every_odd_pillow_image_is_kept_or_dropped_with_its_reason(corpus_samples, tmp_path):
    """Pillow's broken and unusual test images, named by a data-juicer-style JSONL: the run finishes and each
    image has exactly the outcome the checker gives it on its own (tested file by file in test_image_checks)."""
    folder = corpus_samples / "image_text" / "odd_images_pillow"
    files = sorted(p.name for p in folder.iterdir())
    listing = tmp_path / "odd.jsonl"
    listing.write_text("".join(json.dumps({"images": [str(folder / name)], "text": f"test image number {i} here"})
                               + "\n" for i, name in enumerate(files)), encoding="utf-8")
    config = _write_config(tmp_path, "image: {min_side: 1, max_aspect: 100}\ndedup: {enabled: false}\n"
                                     f"read: {{image_roots: [{json.dumps(str(folder))}]}}\n")
    stats = run_image_text([str(listing)], str(tmp_path / "out"), config, [])
    _check_ledger(stats)
    assert stats["totals"]["records_in"] == len(files) == 31
    checks = ImageChecks(min_side=1, max_aspect=100)
    expected = {}
    for i, name in enumerate(files):
        outcome = checks.check((folder / name).read_bytes())
        expected[f"{listing}#{i + 1}"] = outcome if isinstance(outcome, str) else "kept"
    got = {row["key"]: row["reason"] for row in _rejects(tmp_path / "out")}
    got.update({s["json"]["key"]: "kept" for s in _samples(tmp_path / "out").values()})
    assert got == expected
    reasons = set(got.values())
    assert {"truncated", "decompression-bomb", "unidentified"} <= reasons
    assert not any(r.startswith("damaged:") for r in reasons)


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def end_headers(self):
        if self.path.startswith("/noai/"):
            self.send_header("X-Robots-Tag", "noai")
        super().end_headers()


@pytest.fixture()
def image_server(tmp_path):
    root = tmp_path / "www"
    (root / "noai").mkdir(parents=True)
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _picture(seed: int, size=(320, 240)) -> bytes:
    image = Image.new("RGB", size, (seed * 40 % 256, 90, 200 - seed * 30 % 200))
    for x in range(0, size[0], 16 + seed):
        for y in range(0, size[1], 12 + seed):
            image.putpixel((x, y), (255, 255, 255))
    image.paste((seed * 70 % 256, 20, 20), (size[0] // 4, size[1] // 4, size[0] // 2 + seed * 10, size[1] // 2))
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def test_url_list_is_downloaded_from_a_local_server(image_server, tmp_path):
    root, base = image_server
    (root / "a.jpg").write_bytes(_picture(1))
    (root / "b.jpg").write_bytes(_picture(2))
    (root / "noai" / "c.jpg").write_bytes(_picture(3))
    (root / "page.jpg").write_bytes(b"<html>not an image</html>")
    rows = [("a.jpg", "a red square on a blue field"), ("b.jpg", "蓝色背景上的红色方块图案"),
            ("missing.jpg", "a picture that is not there"), ("noai/c.jpg", "an opted out picture of things"),
            ("page.jpg", "a page that claims to be a picture"), ("a.jpg", "x")]
    listing = tmp_path / "urls.csv"
    with open(listing, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["url", "caption"])
        writer.writerows((f"{base}/{path}", caption) for path, caption in rows)
    out = tmp_path / "out"
    config = _write_config(tmp_path, "download: {threads: 2, timeout: 5, retries: 0}\n")
    assert main(["image-text", "--input", str(listing), "--output", str(out), "--config", config]) == 0
    stats = json.loads((out / "stats.json").read_text())
    _check_ledger(stats)
    by_stage = {s["stage"]: s for s in stats["stages"]}
    assert by_stage["caption_length"]["dropped_by_reason"] == {"too-short": 1}
    assert by_stage["download"]["dropped_by_reason"] == {"http-404": 1, "opt-out": 1}
    assert by_stage["image"]["dropped_by_reason"] == {"unidentified": 1}
    samples = _samples(out)
    assert sorted((s["json"]["url"].rsplit("/", 1)[1], s["json"]["lang"]) for s in samples.values()) == [
        ("a.jpg", "en"), ("b.jpg", "zh")]
    assert {r["key"].rsplit("#", 1)[1]: r["reason"] for r in _rejects(out)} == {
        "2": "http-404", "3": "opt-out", "4": "unidentified", "5": "too-short"}


@pytest.mark.slow
def test_same_shards_in_process_and_multi_processing(corpus_samples, tmp_path):
    root = corpus_samples / "image_text"
    inputs = [str(root / "nemo-curator_wds" / "00000.tar"), str(root / "data-juicer_demo" / "demos" / "data" / "*")]
    config = _write_config(tmp_path, "output: {shard_size_bytes: 40000}\n")
    outputs = []
    for name, args in (("a", []), ("b", ["--direct_running_mode=multi_processing", "--direct_num_workers=2"])):
        run_image_text(inputs, str(tmp_path / name), config, args)
        outputs.append({p.name: p.read_bytes() for p in sorted((tmp_path / name / "images").iterdir())})
    assert outputs[0] == outputs[1]
    assert len([n for n in outputs[0] if n.endswith(".tar")]) == 2
