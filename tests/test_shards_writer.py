"""Deterministic tokenized WebDataset shards: writer, manifest/verify and the Beam job (shards/,
pipelines/shards_job)."""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import sys
import tarfile

import numpy as np
import pytest

from shards.manifest import build_manifest, main_verify, read_manifest, verify, write_manifest
from shards.writer import (check_key, dtype_for, encode_sample, npy_bytes, remove_unlisted_shards, shard_name,
                           shard_of, split_of, tar_bytes, write_shard)


class ByteTokenizer:
    """Stand-in tokenizer: UTF-8 bytes shifted by `offset` (so ids above 65535 can be exercised)."""

    def __init__(self, directory: str, offset: int = 0):
        self.offset = offset
        self.vocab_size = 256 + offset
        self.hash = hashlib.sha256(f"bytes+{offset}".encode()).hexdigest()

    def encode_batch(self, texts):
        return [[b + self.offset for b in t.encode("utf-8")] for t in texts]


def _ids(n, prefix="doc"):
    return [hashlib.sha1(f"{prefix}{i}".encode()).hexdigest() for i in range(n)]


def _samples(n, dtype="uint16"):
    return [encode_sample({"id": i, "source": "s.warc", "lang": "zh"}, list(range(k % 7)), dtype)
            for k, i in enumerate(_ids(n))]


# --- writer ---------------------------------------------------------------------------------------------------

def test_split_of_fraction_and_stability():
    ids = _ids(20000)
    val = [i for i in ids if split_of(i, 0.1) == "val"]
    assert 1800 < len(val) < 2200
    assert all(split_of(i, 0.0) == "train" for i in ids[:100])
    assert all(split_of(i, 1.0) == "val" for i in ids[:100])
    # a larger fraction only moves train records to val, never back
    assert set(val) <= {i for i in ids if split_of(i, 0.2) == "val"}
    with pytest.raises(ValueError):
        split_of("x", 1.5)


def test_shard_of_range_and_balance():
    counts = np.bincount([shard_of(i, 8) for i in _ids(8000)], minlength=8)
    assert counts.sum() == 8000 and counts.min() > 850 and counts.max() < 1150
    assert shard_of("abc", 1) == 0
    assert shard_of("abc", 5) == shard_of("abc", 5)
    with pytest.raises(ValueError):
        shard_of("abc", 0)


def test_dtype_choice():
    assert dtype_for(256) == "uint16"
    assert dtype_for(65536) == "uint16"
    assert dtype_for(65537) == "uint32"
    assert dtype_for(150_000) == "uint32"
    for bad in (0, 2 ** 32 + 1):
        with pytest.raises(ValueError):
            dtype_for(bad)


def test_encode_sample_exact():
    s = encode_sample({"id": "ab12", "source": "x.warc", "lang": "en", "content": "ignored"}, [1, 65535], "uint16")
    assert s["__key__"] == "ab12"
    assert json.loads(s["json"]) == {"id": "ab12", "source": "x.warc", "lang": "en", "tokens": 2}
    arr = np.load(io.BytesIO(s["npy"]))
    assert arr.dtype == np.dtype("<u2") and arr.tolist() == [1, 65535]
    assert s["npy"].endswith(b"\x01\x00\xff\xff")  # little-endian payload
    big = np.load(io.BytesIO(npy_bytes([70000, 0], "uint32")))
    assert big.dtype == np.dtype("<u4") and big.tolist() == [70000, 0]
    assert np.load(io.BytesIO(npy_bytes([], "uint16"))).shape == (0,)


def test_encode_sample_carries_the_domain_label():
    labeled = encode_sample({"id": "k", "dataType": "新闻"}, [1, 2], "uint16")
    assert json.loads(labeled["json"]) == {"id": "k", "source": "", "lang": "", "tokens": 2, "dataType": "新闻"}
    assert "新闻".encode() in labeled["json"]  # written as UTF-8, not escaped
    for record in ({"id": "k"}, {"id": "k", "dataType": ""}, {"id": "k", "dataType": None},
                   {"id": "k", "dataType": 3}):
        assert "dataType" not in json.loads(encode_sample(record, [1], "uint16")["json"])


@pytest.mark.parametrize("ids,dtype", [([65536], "uint16"), ([-1], "uint16"), ([1.5], "uint32"), ([[1]], "uint16")])
def test_npy_bytes_rejects_ids_that_do_not_fit(ids, dtype):
    with pytest.raises(ValueError):
        npy_bytes(ids, dtype)


@pytest.mark.parametrize("key", ["", "a.b", "a/b", "x" * 91, None])
def test_bad_keys(key):
    with pytest.raises((ValueError, UnicodeEncodeError)):
        check_key(key)


def test_write_shard_is_order_independent_and_fixed(tmp_path):
    samples = _samples(30)
    a = write_shard(samples, str(tmp_path / "a.tar"))
    b = write_shard(list(reversed(samples)), str(tmp_path / "b.tar"))
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()
    assert a.sha256 == b.sha256 == hashlib.sha256((tmp_path / "a.tar").read_bytes()).hexdigest()
    assert (a.samples, a.tokens, a.bytes) == (30, sum(k % 7 for k in range(30)), os.path.getsize(tmp_path / "a.tar"))
    assert a.name == "a.tar" and not (tmp_path / "a.tar.tmp").exists()
    with tarfile.open(tmp_path / "a.tar") as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    keys = sorted(s["__key__"] for s in samples)
    assert names == [f"{k}.{ext}" for k in keys for ext in ("json", "npy")]
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname, m.mode) for m in members} == {(0, 0, 0, "", "", 0o644)}


def test_tar_bytes_is_what_the_samples_take_in_the_tar(tmp_path):
    samples = _samples(30) + [{"__key__": "big", "jpg": b"x" * 5000, "txt": b"", "json": b'{"tokens": 0}'}]
    info = write_shard(samples, str(tmp_path / "t.tar"))
    members = sum(tar_bytes(s) for s in samples)
    assert tar_bytes(samples[-1]) == (512 + 5120) + 512 + (512 + 512)  # a header each, data padded to 512
    # + the two zero blocks that end a tar, padded to tarfile's 10240-byte records
    assert info.bytes == -(-(members + 1024) // 10240) * 10240


def test_remove_unlisted_shards_keeps_listed_and_other_files(tmp_path):
    for name in ("train-000000.tar", "train-000001.tar", "val-000000.tar", "other.tar", "manifest.json"):
        (tmp_path / name).write_bytes(b"")
    assert remove_unlisted_shards(str(tmp_path), ["train-000000.tar"]) == ["train-000001.tar", "val-000000.tar"]
    assert sorted(os.listdir(tmp_path)) == ["manifest.json", "other.tar", "train-000000.tar"]


def test_write_shard_rejects_duplicate_keys(tmp_path):
    s = _samples(2)
    with pytest.raises(ValueError, match="duplicate"):
        write_shard([s[0], s[1], s[0]], str(tmp_path / "d.tar"))
    assert not (tmp_path / "d.tar").exists()


def test_shard_readable_by_webdataset(tmp_path):
    import webdataset as wds

    samples = _samples(5)
    write_shard(samples, str(tmp_path / "train-000000.tar"))
    url = f"file:{tmp_path / 'train-000000.tar'}"
    got = list(wds.WebDataset(url, shardshuffle=False).decode())
    assert [g["__key__"] for g in got] == sorted(s["__key__"] for s in samples)
    by_key = {s["__key__"]: s for s in samples}
    for g in got:
        assert g["npy"].dtype == np.uint16
        assert g["npy"].tolist() == np.load(io.BytesIO(by_key[g["__key__"]]["npy"])).tolist()
        assert g["json"]["tokens"] == len(g["npy"]) and g["json"]["id"] == g["__key__"]


# --- manifest / verify ----------------------------------------------------------------------------------------

def _shard_dir(tmp_path):
    samples = _samples(12)
    info = write_shard(samples[:7], str(tmp_path / shard_name("train", 0)))
    info_val = write_shard(samples[7:], str(tmp_path / shard_name("val", 0)))
    entries = [{**info.to_dict(), "split": "train"}, {**info_val.to_dict(), "split": "val"}]
    write_manifest(str(tmp_path), build_manifest(entries, "h", "uint16", 512, "test"))
    return tmp_path


def test_verify_clean_directory(tmp_path, capsys):
    d = _shard_dir(tmp_path)
    assert verify(str(d)) == []
    assert main_verify(str(d)) == 0
    assert "ok: 2 shards, 12 samples" in capsys.readouterr().out
    manifest = read_manifest(str(d))
    assert [e["name"] for e in manifest["shards"]] == ["train-000000.tar", "val-000000.tar"]
    assert set(manifest) == {"shards", "tokens_per_label", "tokenizer_hash", "dtype", "seq_len", "command",
                             "created_with"}
    assert manifest["tokens_per_label"] == {"": sum(k % 7 for k in range(12))}  # _samples carry no label


def test_verify_catches_flipped_byte(tmp_path):
    d = _shard_dir(tmp_path)
    path = d / "train-000000.tar"
    data = bytearray(path.read_bytes())
    data[530] ^= 0x01  # inside the first sample's json data (header is bytes 0-511)
    path.write_bytes(bytes(data))
    problems = verify(str(d))
    assert any("train-000000.tar: sha256" in p for p in problems)
    assert main_verify(str(d)) == 1


def test_verify_catches_missing_shard_and_unlisted_tar(tmp_path):
    d = _shard_dir(tmp_path)
    os.rename(d / "val-000000.tar", d / "val-000009.tar")
    assert sorted(verify(str(d))) == ["val-000000.tar: missing", "val-000009.tar: not listed in the manifest"]


def test_verify_catches_count_and_dtype_lies(tmp_path):
    d = _shard_dir(tmp_path)
    manifest = read_manifest(str(d))
    manifest["shards"][0]["samples"] += 1
    manifest["dtype"] = "uint32"
    write_manifest(str(d), manifest)
    problems = verify(str(d))
    assert any("7 samples, manifest says 8" in p for p in problems)
    assert any("expected 1-D uint32" in p for p in problems)


def test_verify_catches_json_token_mismatch(tmp_path):
    s = encode_sample({"id": "k1"}, [1, 2, 3], "uint16")
    s["json"] = s["json"].replace(b'"tokens":3', b'"tokens":4')
    info = write_shard([s], str(tmp_path / "train-000000.tar"))
    write_manifest(str(tmp_path), build_manifest([{**info.to_dict(), "split": "train"}], "h", "uint16", 8, ""))
    assert any("json says 4 tokens, npy holds 3" in p for p in verify(str(tmp_path)))


LABELS = ["新闻", "百科", "博客", "finance"]


def _labeled_dir(tmp_path):
    """Two shards of samples labeled round-robin (every fifth without a label); returns (dir, samples)."""
    samples = [encode_sample({"id": f"d{i:03d}", "dataType": (LABELS + [""])[i % 5]}, list(range(1 + i % 9)),
                             "uint16") for i in range(40)]
    entries = [{**write_shard(samples[:25], str(tmp_path / shard_name("train", 0))).to_dict(), "split": "train"},
               {**write_shard(samples[25:], str(tmp_path / shard_name("val", 0))).to_dict(), "split": "val"}]
    write_manifest(str(tmp_path), build_manifest(entries, "h", "uint16", 8, "test"))
    return tmp_path, samples


def test_tokens_per_label_in_manifest_is_the_sum_over_samples(tmp_path):
    d, samples = _labeled_dir(tmp_path)
    manifest = read_manifest(str(d))
    want = {}
    for entry in manifest["shards"]:
        got = {}
        with tarfile.open(d / entry["name"]) as tar:  # read back with another tar reader
            for member in tar.getmembers():
                if member.name.endswith(".json"):
                    meta = json.loads(tar.extractfile(member).read())
                    got[meta.get("dataType", "")] = got.get(meta.get("dataType", ""), 0) + meta["tokens"]
        assert entry["tokens_per_label"] == got and sum(got.values()) == entry["tokens"]
        for label, tokens in got.items():
            want[label] = want.get(label, 0) + tokens
    assert manifest["tokens_per_label"] == want
    assert want == {label: sum(1 + i % 9 for i in range(40) if (LABELS + [""])[i % 5] == label)
                    for label in LABELS + [""]}
    assert list(manifest["tokens_per_label"]) == sorted(want)  # deterministic order
    assert verify(str(d)) == []


def test_verify_catches_tokens_per_label_lies(tmp_path):
    d, _ = _labeled_dir(tmp_path)
    good = read_manifest(str(d))
    bad = json.loads(json.dumps(good))  # moved 1 token between labels: totals still agree
    bad["shards"][0]["tokens_per_label"]["新闻"] += 1
    bad["shards"][0]["tokens_per_label"]["百科"] -= 1
    bad["tokens_per_label"]["新闻"] += 1
    bad["tokens_per_label"]["百科"] -= 1
    write_manifest(str(d), bad)
    assert [p for p in verify(str(d)) if "tokens per label" in p and "train-000000.tar" in p]
    bad = json.loads(json.dumps(good))
    bad["tokens_per_label"]["新闻"] += 5  # the total is not the sum over shards
    write_manifest(str(d), bad)
    assert any("is not the sum over its shards" in p for p in verify(str(d)))
    bad = json.loads(json.dumps(good))
    bad["shards"][1]["tokens_per_label"] = {"新闻": "many"}
    write_manifest(str(d), bad)
    assert any("is not an object of token counts" in p for p in verify(str(d)))
    bad = json.loads(json.dumps(good))
    bad["shards"][1]["tokens_per_label"]["新闻"] += 1  # no longer sums to the entry's tokens
    write_manifest(str(d), bad)
    assert any("sums to" in p for p in verify(str(d)))


def test_old_manifest_without_tokens_per_label_still_verifies(tmp_path):
    d, _ = _labeled_dir(tmp_path)
    manifest = read_manifest(str(d))
    del manifest["tokens_per_label"]
    for entry in manifest["shards"]:
        del entry["tokens_per_label"]
    write_manifest(str(d), manifest)
    assert verify(str(d)) == [] and main_verify(str(d)) == 0
    with pytest.raises(ValueError, match="tokens_per_label"):  # new manifests are always built with it
        build_manifest(manifest["shards"], "h", "uint16", 8, "test")


def test_verify_without_manifest(tmp_path):
    assert main_verify(str(tmp_path)) == 1
    (tmp_path / "manifest.json").write_text("{not json")
    assert verify(str(tmp_path))[0].endswith("missing or not a manifest")


# --- the Beam job ---------------------------------------------------------------------------------------------

TEXTS = ["北京今天下雨，气温十五度。", "The quick brown fox jumps over the lazy dog.", "数据集", "a", "混合 mixed 文本"]


def _write_corpus(path, n, start=0):
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        for i in range(start, start + n):
            rid = hashlib.sha256(f"rec{i}".encode()).hexdigest()
            record = {"id": rid, "content": TEXTS[i % len(TEXTS)] * (1 + i % 3), "title": "t",
                      "lang": "zh" if i % 2 else "en", "source": f"crawl-{i % 4}.warc.gz"}
            if _label(i):
                record["dataType"] = _label(i)
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        fh.write("{broken json\n")
        fh.write(json.dumps({"id": "no-content", "content": ""}) + "\n")


def _label(i):
    return ["新闻", "百科", "", "finance"][i % 4]


def _tars(d):
    return {n: (d / n).read_bytes() for n in sorted(os.listdir(d)) if n.endswith(".tar")}


def _job(corpus_glob, out, **kw):
    from pipelines.shards_job import write_shards

    kw.setdefault("shard_size_bytes", 40_000)
    kw.setdefault("val_fraction", 0.2)
    kw.setdefault("loader", ByteTokenizer)
    return write_shards([corpus_glob], "unused-dir", str(out), seq_len=64, **kw)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("corpus")
    _write_corpus(d / "part-00000.jsonl.gz", 150)
    _write_corpus(d / "part-00001.jsonl.gz", 150, start=150)
    return d


@pytest.fixture(scope="module")
def first_run(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("shards")
    return out, _job(str(corpus / "part-*.jsonl.gz"), out)


def test_job_writes_verified_shards(first_run):
    out, manifest = first_run
    assert verify(str(out)) == []
    assert manifest["dtype"] == "uint16" and manifest["seq_len"] == 64
    assert manifest["tokenizer_hash"] == ByteTokenizer("").hash
    assert sum(e["samples"] for e in manifest["shards"]) == 300  # broken and empty records skipped
    splits = {e["split"] for e in manifest["shards"]}
    assert splits == {"train", "val"}
    assert len([e for e in manifest["shards"] if e["split"] == "train"]) > 1  # the size estimate split train
    expected_tokens = sum(len((TEXTS[i % 5] * (1 + i % 3)).encode()) for i in range(300))
    assert sum(e["tokens"] for e in manifest["shards"]) == expected_tokens
    per_label = {}
    for i in range(300):
        per_label[_label(i)] = per_label.get(_label(i), 0) + len((TEXTS[i % 5] * (1 + i % 3)).encode())
    assert manifest["tokens_per_label"] == per_label
    assert all(sum(e["tokens_per_label"].values()) == e["tokens"] for e in manifest["shards"])
    for entry in manifest["shards"]:  # every record sits in the shard its id hashes to
        n = len([e for e in manifest["shards"] if e["split"] == entry["split"]])
        with tarfile.open(out / entry["name"]) as tar:
            keys = {m.name.split(".")[0] for m in tar.getmembers()}
        assert {split_of(k, 0.2) for k in keys} == {entry["split"]}
        assert {shard_name(entry["split"], shard_of(k, n)) for k in keys} == {entry["name"]}


def test_job_rerun_is_byte_identical_and_skips_existing(first_run, corpus, tmp_path):
    out, manifest = first_run
    before = _tars(out)
    mtimes = {n: os.stat(out / n).st_mtime_ns for n in before}
    again = _job(str(corpus / "part-*.jsonl.gz"), out)
    assert again == manifest
    assert _tars(out) == before
    assert {n: os.stat(out / n).st_mtime_ns for n in before} == mtimes  # kept, not rewritten
    # a damaged shard is rewritten, not kept
    (out / manifest["shards"][0]["name"]).write_bytes(b"junk")
    _job(str(corpus / "part-*.jsonl.gz"), out)
    assert _tars(out) == before and verify(str(out)) == []
    # a manifest from before tokens_per_label: its shards are rewritten (their json may lack dataType)
    old = read_manifest(str(out))
    del old["tokens_per_label"]
    for entry in old["shards"]:
        del entry["tokens_per_label"]
    write_manifest(str(out), old)
    assert _job(str(corpus / "part-*.jsonl.gz"), out) == manifest
    assert _tars(out) == before and verify(str(out)) == []
    assert any(os.stat(out / n).st_mtime_ns != mtimes[n] for n in before)  # rewritten, not kept


def test_job_multiprocessing_matches_in_process(first_run, corpus, tmp_path):
    out, manifest = first_run
    other = tmp_path / "mp"
    got = _job(str(corpus / "part-*.jsonl.gz"), other,
               beam_args=["--direct_running_mode=multi_processing", "--direct_num_workers=2"])
    assert got["shards"] == manifest["shards"]
    assert _tars(other) == _tars(out)


def test_job_growth_keeps_splits(first_run, corpus, tmp_path):
    out, _ = first_run
    grown = tmp_path / "grown"
    grown.mkdir()
    for name in os.listdir(corpus):
        (grown / name).write_bytes((corpus / name).read_bytes())
    _write_corpus(grown / "part-00002.jsonl.gz", 100, start=300)
    new_out = tmp_path / "out"
    manifest = _job(str(grown / "part-*.jsonl.gz"), new_out)
    assert sum(e["samples"] for e in manifest["shards"]) == 400

    def split_keys(d):
        result = {}
        for name in _tars(d):
            with tarfile.open(d / name) as tar:
                for m in tar.getmembers():
                    result[m.name.split(".")[0]] = name.split("-")[0]
        return result

    old, new = split_keys(out), split_keys(new_out)
    assert {k: new[k] for k in old} == old


def test_job_uint32_when_vocab_is_large(corpus, tmp_path):
    class Wide(ByteTokenizer):
        def __init__(self, directory):
            super().__init__(directory, offset=70_000)

    manifest = _job(str(corpus / "part-00000.jsonl.gz"), tmp_path, shard_size_bytes=10 ** 9, val_fraction=0.0)
    assert manifest["dtype"] == "uint16"
    out = tmp_path / "wide"
    manifest = _job(str(corpus / "part-00000.jsonl.gz"), out, loader=Wide, shard_size_bytes=10 ** 9,
                    val_fraction=0.0)
    assert manifest["dtype"] == "uint32" and [e["name"] for e in manifest["shards"]] == ["train-000000.tar"]
    assert verify(str(out)) == []
    with tarfile.open(out / "train-000000.tar") as tar:
        npy = next(m for m in tar.getmembers() if m.name.endswith(".npy"))
        arr = np.load(io.BytesIO(tar.extractfile(npy).read()))
    assert arr.dtype == np.dtype("<u4") and arr.min() >= 70_000


def _register_by_value():
    """Workers of the multi_processing runner cannot import this test module by name; pickle it by value."""
    from apache_beam.internal.cloudpickle import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])


_register_by_value()


def test_job_rerun_removes_a_killed_runs_temporaries(first_run, corpus):
    out, manifest = first_run
    before = _tars(out)
    name = manifest["shards"][0]["name"]
    (out / (name + ".tmp")).write_bytes(before[name][:1000])  # a shard cut off under its temporary name
    (out / "manifest.json.tmp").write_text('{"shards": [', "utf-8")
    again = _job(str(corpus / "part-*.jsonl.gz"), out)
    assert again == manifest and _tars(out) == before and verify(str(out)) == []
    assert not [n for n in os.listdir(out) if n.endswith(".tmp")]
