"""Tests for shards/index.py and the reader's memory-mapped path: the same samples, sequences and resume points
as the tar reader; stale, damaged or hostile indexes are never trusted; the writer, verify and cleanup know them."""
from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from test_shards_reader import make_corpus, take

from shards.index import build_index, index_path, label_hash, open_index, write_index
from shards.manifest import verify
from shards.reader import StreamingShards, iter_shard, resolve_source
from shards.writer import encode_sample, remove_unlisted_shards, write_shard


def indexed_copy(src: Path, dst: Path) -> Path:
    """`dst`: the same shards and manifest as `src`, with a token index beside every shard."""
    dst.mkdir()
    for name in os.listdir(src):
        (dst / name).write_bytes((src / name).read_bytes())
    for url in resolve_source(dst) + resolve_source(dst, split="val"):
        write_index(url)
    return dst


def labeled_shard(path: Path, dtype: str = "uint16") -> list[dict]:
    records = [{"id": f"d{i:03d}", "dataType": ["news", "", "law"][i % 3], "source": "t", "lang": "zh"}
               for i in range(30)]
    samples = [encode_sample(r, np.arange(i, i + 1 + i % 5), dtype) for i, r in enumerate(records)]
    write_shard(samples, str(path))
    return samples


def test_index_points_at_each_samples_tokens_in_tar_order(tmp_path):
    make_corpus(tmp_path / "c", 2, 25, length=lambda i: i % 9)  # empty documents too
    for url in resolve_source(tmp_path / "c"):
        header, rows = build_index(url)
        write_index(url)
        index = open_index(url)
        assert not isinstance(index, str)
        from_tar = [tokens.tolist() for _, tokens in iter_shard(url)]
        from_index = [index.tokens[a:b].tolist() for a, b in zip(index.starts, index.ends)]
        assert from_index == from_tar and len(rows) == header[5] == 25
        assert (rows[:, 2] == label_hash("")).all()


@pytest.mark.parametrize("dtype", ["uint16", "uint32"])
def test_writer_writes_the_index_with_labels(tmp_path, dtype):
    samples = labeled_shard(tmp_path / "train-000000.tar", dtype)
    index = open_index(str(tmp_path / "train-000000.tar"))
    assert not isinstance(index, str) and index.tokens.dtype == np.dtype(dtype)
    assert len(index.starts) == len(samples)
    labels = [json.loads(s["json"]).get("dataType", "") for s in sorted(samples, key=lambda s: s["__key__"])]
    assert index.labels.tolist() == [label_hash(x) for x in labels]


@pytest.mark.parametrize("kw", [
    dict(seed=5, shuffle_buffer=8, seq_len=7, eos_id=65000),
    dict(seed=5, shuffle_buffer=8, seq_len=7, eos_id=65000, rank=1, world_size=3),   # shards shared by consumers
    dict(seed=2, shuffle_buffer=0, seq_len=16, drop_last=False),
    dict(seed=3, shuffle_buffer=6, seq_len=8, pad_id=65001),
    dict(seed=3, shuffle_buffer=6, seq_len=8, eos_id=65000, dtype="uint16"),
])
def test_indexed_and_tar_paths_give_the_same_sequences_and_resume_points(tmp_path, kw):
    make_corpus(tmp_path / "tar", 2, 40, length=lambda i: 1 + (i * 13) % 29)
    indexed = indexed_copy(tmp_path / "tar", tmp_path / "idx")
    plain = StreamingShards(tmp_path / "tar", **kw)
    full = [s.tolist() for s in plain]
    fast = StreamingShards(indexed, **kw)
    assert [s.tolist() for s in fast] == full and len(full) > 10
    assert (plain.stats["indexed_shards"], fast.stats["indexed_shards"]) == (0, plain.stats["shards"])
    for k in (0, 1, len(full) // 2, len(full) - 1):  # a state saved on one path resumes on the other
        ds = StreamingShards(indexed, **kw)
        head = [s.tolist() for s in take(iter(ds), k)]
        other = StreamingShards(tmp_path / "tar", **kw)
        other.load_state_dict(pickle.loads(pickle.dumps(ds.state_dict())))
        assert head + [s.tolist() for s in other] == full


def test_label_filter_on_the_index(tmp_path):
    labeled_shard(tmp_path / "train-000000.tar")
    url = [str(tmp_path / "train-000000.tar")]
    fast = StreamingShards(url, seed=0, shuffle_buffer=0, seq_len=1, labels=["news", ""])
    got = np.concatenate(list(fast)).tolist()
    os.remove(index_path(url[0]))
    plain = StreamingShards(url, seed=0, shuffle_buffer=0, seq_len=1, labels=["news", ""])
    assert got == np.concatenate(list(plain)).tolist()
    assert fast.stats["filtered"] == plain.stats["filtered"] == 10 and fast.stats["indexed_shards"] == 1


def _rewrite_index(url: str, header=None, rows=None) -> None:
    h, r = build_index(url)
    with open(index_path(url), "wb") as fh:
        np.save(fh, h if header is None else header)
        np.save(fh, r if rows is None else rows)


@pytest.mark.parametrize("damage, reason", [
    (lambda url: _rewrite_index(url, rows=build_index(url)[1] + [[1 << 40, 0, 0]]), "outside"),
    (lambda url: _rewrite_index(url, rows=build_index(url)[1] * [1, 1000, 1]), "outside"),
    (lambda url: _rewrite_index(url, rows=build_index(url)[1] + [[1, 0, 0]]), "outside"),          # misaligned
    (lambda url: _rewrite_index(url, rows=build_index(url)[1][::-1].copy()), "outside"),           # overlapping
    (lambda url: _rewrite_index(url, header=build_index(url)[0] + [0, 0, 0, 512, 0, 0]), "stale"),
    (lambda url: _rewrite_index(url, header=build_index(url)[0] + [1, 0, 0, 0, 0, 0]), "not ours"),
    (lambda url: _rewrite_index(url, rows=build_index(url)[1].astype(np.float64)), "layout"),
    (lambda url: Path(index_path(url)).write_bytes(b"\x93NUMPY garbage"), "parse"),
    (lambda url: Path(index_path(url)).write_bytes(b"x" * (os.path.getsize(url) + 1)), "larger"),
])
def test_damaged_or_stale_index_is_refused_and_the_tar_is_read(tmp_path, damage, reason):
    make_corpus(tmp_path / "tar", 1, 30, length=lambda i: 2 + i % 5)
    indexed = indexed_copy(tmp_path / "tar", tmp_path / "idx")
    url = resolve_source(indexed)[0]
    damage(url)
    refusal = open_index(url)
    assert isinstance(refusal, str) and reason in refusal
    kw = dict(seed=1, shuffle_buffer=4, seq_len=5, eos_id=65000)
    ds = StreamingShards(indexed, **kw)
    assert [s.tolist() for s in ds] == [s.tolist() for s in StreamingShards(tmp_path / "tar", **kw)]
    assert ds.stats["indexed_shards"] == 0 and ds.stats["shards"] == 1


def test_index_of_another_tar_with_the_same_size_is_refused_through_the_manifest_sha(tmp_path):
    samples = labeled_shard(tmp_path / "train-000000.tar")
    sha = write_shard(samples, str(tmp_path / "train-000000.tar")).sha256
    assert not isinstance(open_index(str(tmp_path / "train-000000.tar"), sha), str)
    assert "stale" in open_index(str(tmp_path / "train-000000.tar"), "0" * 64)


def test_verify_and_cleanup_know_the_index(tmp_path):
    samples = labeled_shard(tmp_path / "train-000000.tar")
    info = write_shard(samples, str(tmp_path / "train-000000.tar"))
    manifest = {"shards": [{**info.to_dict(), "split": "train"}], "tokenizer_hash": "", "dtype": "uint16",
                "seq_len": 8, "command": "", "created_with": {}}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    assert verify(str(tmp_path)) == []
    url = str(tmp_path / "train-000000.tar")
    header, rows = build_index(url, info.sha256)
    rows[0, 1] -= 1  # a valid layout that no longer says what the tar holds
    assert not isinstance(open_index(url, info.sha256), str)
    with open(index_path(url), "wb") as fh:
        np.save(fh, header)
        np.save(fh, rows)
    assert verify(str(tmp_path)) == ["train-000000.tar: token index does not match the tar"]
    (tmp_path / "train-000007.tar").write_bytes(b"")
    (tmp_path / "train-000007.idx.npy").write_bytes(b"")
    assert remove_unlisted_shards(str(tmp_path), ["train-000000.tar"]) == ["train-000007.idx.npy",
                                                                            "train-000007.tar"]
    assert sorted(os.listdir(tmp_path)) == ["manifest.json", "train-000000.idx.npy", "train-000000.tar"]


def test_output_dtype_checks(tmp_path):
    labeled_shard(tmp_path / "train-000000.tar", "uint32")
    url = [str(tmp_path / "train-000000.tar")]
    with pytest.raises(ValueError, match="does not fit"):
        StreamingShards(url, seed=0, shuffle_buffer=0, seq_len=4, eos_id=70000, dtype="uint16")
    with pytest.raises(ValueError, match="integer"):
        StreamingShards(url, seed=0, shuffle_buffer=0, seq_len=4, dtype="float32")
    with pytest.raises(TypeError, match="safe"):  # uint32 tokens never silently wrap into uint16
        list(StreamingShards(url, seed=0, shuffle_buffer=0, seq_len=4, dtype="uint16"))
    wide = list(StreamingShards(url, seed=0, shuffle_buffer=0, seq_len=4, dtype="uint32"))
    assert wide[0].dtype == np.uint32
