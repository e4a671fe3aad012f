"""Image-text readers: the real samples in ../shared/corpus-samples/image_text and small synthetic files."""
from __future__ import annotations

import gzip
import io
import json
import tarfile
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cleaners.image.record import ImageText
from pipelines.readers.image_text import (ImageTextColumns, clean_caption, iter_image_text_file, resolve_path,
                                          split_member_name)
from pipelines.readers.skip import Skip


def read(data: bytes, path: str, columns=None, **kwargs) -> list[ImageText | Skip]:
    return list(iter_image_text_file(io.BytesIO(data), path, columns, **kwargs))


def read_file(path: Path, columns=None) -> list[ImageText | Skip]:
    with open(path, "rb") as fh:
        return list(iter_image_text_file(fh, str(path), columns))


def brief(items) -> list[tuple]:
    return [(i.key, i.reason) if isinstance(i, Skip) else (i.key, i.caption, i.url, i.image) for i in items]


# ---- real samples --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def image_text(corpus_samples: Path) -> Path:
    return corpus_samples / "image_text"


def test_nemo_curator_webdataset_tar(image_text):
    path = image_text / "nemo-curator_wds" / "00000.tar"
    [pair] = read_file(path)
    assert pair.key == f"{path}#0"
    assert pair.caption == "A wine bottle outfitted with two forks in its cork and a duck head on top."
    assert pair.image[:2] == b"\xff\xd8" and len(pair.image) == 225807
    assert pair.meta == {"id": "0"} and pair.url == ""


def test_webdataset_sample_tgz_without_captions(image_text):
    path = image_text / "webdataset_testdata" / "sample.tgz"
    items = read_file(path)
    assert len(items) == 90 and all(isinstance(i, ImageText) for i in items)
    assert all(i.caption == "" and i.image.startswith(b"\x89PNG") for i in items)
    assert items[0].key == f"{path}#10" and items[0].meta == {"cls": "0"}
    assert len({i.key for i in items}) == 90
    assert set(Counter(i.meta["cls"] for i in items)) <= set("0123456789")


def test_data_juicer_parquet_with_image_bytes(image_text):
    root = image_text / "data-juicer_demo"
    items = read_file(root / "demos" / "data" / "demo-dataset-images-bytes.parquet")
    assert [i.caption for i in items] == ["A comfortable bed.", "A bus.",
                                          "Black and white photograph of a woman holding an umbrella."]
    files = ["img1.png", "img2.jpg", "img3.jpg"]
    assert [i.image for i in items] == [(root / "tests" / "ops" / "data" / f).read_bytes() for f in files]


def test_data_juicer_jsonl_with_relative_image_paths(image_text):
    root = image_text / "data-juicer_demo"
    path = root / "demos" / "data" / "demo-dataset-images.jsonl"
    assert {i.reason for i in read_file(path)} == {"image-path-outside-root"}   # `../../tests/...`: not by default
    items = read_file(path, {"image_roots": [str(root)]})
    assert [i.key for i in items] == [f"{path}#{n}" for n in (1, 2, 3)]
    assert items[1].caption == "A bus." and items[1].image == (root / "tests/ops/data/img2.jpg").read_bytes()


def test_img2dataset_url_parquet_uppercase_columns(image_text):
    path = image_text / "img2dataset_urls" / "test_1000.parquet"
    items = read_file(path)
    assert len(items) == 1000 and all(isinstance(i, ImageText) and i.image is None for i in items)
    assert items[0].url.startswith("http://direct.rhapsody.com/imageserver/v2/albums/Alb.131805200/")
    assert items[0].caption == "Classical Masterpieces: Xerses & More, Vol. 8 by Various Artists"
    assert items[999].key == f"{path}#999"
    kept = read_file(path, {"save_additional_columns": ["__index_level_0__"]})
    assert kept[7].meta == {"__index_level_0__": 7}


# ---- CSV / TSV -----------------------------------------------------------------------------------
CSV = (b"url,caption,license\n"
       b"http://a.example/1.jpg,a red fox,cc-by\n"
       b"http://a.example/2.jpg,\"a caption, with a comma\",cc0\n"
       b"\n"
       b"http://a.example/3.jpg,too,many,fields\n"
       b",no url here,cc0\n"
       b"http://a.example/4.jpg,,cc0\n")


def test_csv_rows_reasons_and_extra_columns():
    items = read(CSV, "list.csv", {"save_additional_columns": ["license"]})
    assert brief(items) == [
        ("list.csv#0", "a red fox", "http://a.example/1.jpg", None),
        ("list.csv#1", "a caption, with a comma", "http://a.example/2.jpg", None),
        ("list.csv#2", "bad-row"),
        ("list.csv#3", "no-image"),
        ("list.csv#4", "", "http://a.example/4.jpg", None),
    ]
    assert items[0].meta == {"license": "cc-by"}


def test_tsv_gzip_custom_columns_and_bom():
    data = "\ufeffIMG\tALT\n http://b/1.png \t一只猫\n".encode()
    items = read(gzip.compress(data), "list.tsv.gz", {"url_col": "img", "caption_col": "alt"})
    assert brief(items) == [("list.tsv.gz#0", "一只猫", "http://b/1.png", None)]


def test_csv_without_url_or_image_column_and_empty_file():
    assert brief(read(b"name,caption\nx,y\n", "a.csv")) == [("a.csv#0", "damaged:no-image-column")]
    assert brief(read(b"", "a.csv")) == [("a.csv#0", "damaged:no-header")]


def test_truncated_gzip_csv_reports_damage_after_the_rows():
    data = gzip.compress(b"url,caption\n" + b"".join(b"http://c/%d.jpg,cap %d\n" % (i, i) for i in range(2000)))
    items = read(data[: len(data) // 2], "cut.csv.gz")
    assert isinstance(items[-1], Skip) and items[-1].reason == "damaged:truncated"
    assert all(isinstance(i, ImageText) for i in items[:-2]) and len(items) > 100


# ---- JSON ----------------------------------------------------------------------------------------
def test_jsonl_rows_and_bad_lines(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "a.jpg").write_bytes(b"\xff\xd8jpeg")
    lines = [json.dumps({"images": ["img/a.jpg"], "text": "<__dj__image> a dog <|__dj__eoc|>"}),
             "{not json",
             json.dumps(["a", "list"]),
             json.dumps({"URL": "https://x/1.webp", "TEXT": "upper", "extra": 1}),
             "",
             json.dumps({"images": ["img/missing.jpg"], "text": "gone"}),
             json.dumps({"images": ["img/a.jpg", "img/a.jpg"], "text": "two"}),
             json.dumps({"text": "caption only"}),
             json.dumps({"image": "https://x/2.png", "caption": 7})]
    path = tmp_path / "rows.jsonl"
    path.write_text("\n".join(lines) + "\n")
    items = read_file(path)
    p = str(path)
    assert brief(items) == [(f"{p}#1", "a dog", "", b"\xff\xd8jpeg"), (f"{p}#2", "bad-json"), (f"{p}#3", "bad-json"),
                            (f"{p}#4", "upper", "https://x/1.webp", None), (f"{p}#6", "image-missing"),
                            (f"{p}#7", "multi-image"), (f"{p}#8", "no-image"), (f"{p}#9", "7", "https://x/2.png", None)]


def test_json_array_and_cut_array():
    data = json.dumps([{"url": "http://a/1", "caption": "one"}, {"url": "http://a/2", "caption": "two"}]).encode()
    assert brief(read(data, "list.json")) == [("list.json#0", "one", "http://a/1", None),
                                              ("list.json#1", "two", "http://a/2", None)]
    cut = read(data[:-20], "list.json")
    assert brief(cut) == [("list.json#0", "one", "http://a/1", None), ("list.json#1", "damaged:bad-json")]


def test_image_too_large_in_json_file(tmp_path):
    (tmp_path / "big.jpg").write_bytes(b"x" * 100)
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps({"images": ["big.jpg"], "text": "big"}) + "\n")
    assert [i.reason for i in read_file(path, {"max_image_bytes": 99})] == ["too-large"]
    assert read_file(path, {"max_image_bytes": 100})[0].image == b"x" * 100


# ---- Parquet -------------------------------------------------------------------------------------
def _parquet(table: pa.Table) -> bytes:
    out = io.BytesIO()
    pq.write_table(table, out)
    return out.getvalue()


def test_parquet_binary_column_hf_image_struct_and_no_image():
    table = pa.table({"jpg": pa.array([b"\xff\xd8a", None, b""], pa.binary()),
                      "caption": ["one", "two", "three"]})
    assert brief(read(_parquet(table), "b.parquet")) == [("b.parquet#0", "one", "", b"\xff\xd8a"),
                                                         ("b.parquet#1", "no-image"), ("b.parquet#2", "no-image")]
    hf = pa.table({"image": [{"bytes": b"PNGDATA", "path": "x.png"}], "text": ["hf"]})
    assert brief(read(_parquet(hf), "hf.parquet")) == [("hf.parquet#0", "hf", "", b"PNGDATA")]


def test_damaged_parquet():
    data = _parquet(pa.table({"url": ["http://a/1"] * 10, "caption": ["c"] * 10}))
    [skip] = read(data[:-30], "bad.parquet")
    assert skip.reason == "damaged:bad-parquet"


# ---- WebDataset tars -----------------------------------------------------------------------------
def _tar(members: list[tuple[str, bytes]], *, symlink: str = "") -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        if symlink:
            info = tarfile.TarInfo(symlink)
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tf.addfile(info)
    return out.getvalue()


SHARD = [("000.jpg", b"\xff\xd8zero"), ("000.txt", "一只猫 ".encode()),
         ("000.json", json.dumps({"url": "http://s/0.jpg", "caption": "ignored", "status": "success"}).encode()),
         ("001.webp", b"RIFFone"), ("001.json", json.dumps({"caption": "from json"}).encode()),
         ("002.txt", b"caption without image"),
         ("README", b"not a sample")]


def test_tar_samples_members_and_reasons():
    items = read(_tar(SHARD, symlink="003.jpg"), "s.tar")
    assert brief(items) == [("s.tar#000", "一只猫", "http://s/0.jpg", b"\xff\xd8zero"),
                            ("s.tar#001", "from json", "", b"RIFFone"),
                            ("s.tar#002", "no-image"),
                            ("s.tar#README", "bad-member"),
                            ("s.tar#003.jpg", "bad-member")]
    assert items[0].meta == {"status": "success"}


def test_other_texts_of_an_image_are_read_from_rows_and_tar_json():
    rows = [{"url": "http://a/1.jpg", "caption": "a dog on a beach", "title": "Beach Dog 2021", "alt": "dog"},
            {"url": "http://a/2.jpg", "caption": "", "title": "only a title", "alt": "  "},
            {"url": "http://a/3.jpg", "caption": "same", "TITLE": "same", "alt": "<b>bold</b> alt"}]
    data = "".join(json.dumps(row) + "\n" for row in rows).encode()
    items = read(data, "l.jsonl", {"text_cols": ["title", "alt"]})
    assert [(i.caption, i.texts) for i in items] == [
        ("a dog on a beach", [("Beach Dog 2021", ""), ("dog", "")]),
        ("only a title", []),                                   # no caption: the first other text is the caption
        ("same", [("<b>bold</b> alt", "")])]                    # a repeat of the caption is left out
    assert read(data, "l.jsonl")[0].texts == []                 # without text_cols: nothing extra
    shard = [("000.jpg", b"\xff\xd8x"), ("000.txt", b"a caption"),
             ("000.json", json.dumps({"title": "A Title", "status": "success"}).encode())]
    item, = read(_tar(shard), "s.tar", {"text_cols": ["title"]})
    assert item.texts == [("A Title", "")] and item.meta == {"status": "success"}


def test_tar_image_too_large():
    items = read(_tar([("a.png", b"x" * 50), ("a.txt", b"cap")]), "s.tar", {"max_image_bytes": 10})
    assert brief(items) == [("s.tar#a", "too-large")]


def test_truncated_tar_last_sample_is_the_damage():
    data = _tar([("a.jpg", b"A" * 700), ("a.txt", b"first"), ("b.jpg", b"B" * 3000), ("b.txt", b"second")])
    # b.jpg's header ends at 3072, its data at 6144; b.txt's header ends at 6656
    for cut in (3072, 3172, 6144, 6400):      # before b.jpg's data, inside it, at b.txt's header, inside it
        items = read(data[:cut], "t.tar")
        assert brief(items) == [("t.tar#a", "first", "", b"A" * 700), ("t.tar#b", "damaged:truncated-tar")], cut


def test_truncated_tgz_and_garbage_tar():
    data = gzip.compress(_tar(SHARD[:3] + [("9.png", b"P" * 20000)]))
    items = read(data[: len(data) - 40], "t.tgz")
    assert brief(items)[0][0] == "t.tgz#000" and items[-1].reason == "damaged:truncated-tar"
    garbage = _tar(SHARD[:2])[:2048] + b"\x07" * 512 + _tar(SHARD[3:5])
    assert [i.reason if isinstance(i, Skip) else "pair" for i in read(garbage, "g.tar")] == ["pair", "damaged:bad-tar"]
    assert brief(read(b"\x01" * 2000, "x.tar")) == [("x.tar#0", "damaged:bad-tar")]


# ---- small pieces --------------------------------------------------------------------------------
def test_helpers():
    assert split_member_name("dir/000123.seg.jpg") == ("dir/000123", "seg.jpg")
    assert split_member_name("a.JPG") == ("a", "jpg") and split_member_name("README") == ("README", "")
    assert resolve_path("gs://b/d/x.jsonl", "../img/a.png") == "gs://b/img/a.png"
    assert resolve_path("/data/d/x.jsonl", "a.png") == "/data/d/a.png"
    assert resolve_path("x.jsonl", "/abs/a.png") == "/abs/a.png"
    assert clean_caption(float("nan")) == "" and clean_caption(None) == "" and clean_caption(b" hi ") == "hi"


def test_unknown_format_and_unknown_option():
    assert brief(read(b"\x00\x01binary", "blob.bin")) == [("blob.bin#0", "unknown-format")]
    assert read(b"", "empty.bin") == []
    with pytest.raises(ValueError, match="url_column"):
        ImageTextColumns.from_dict({"url_column": "u"})
