"""Tests for shards.reader: tar/npy parsing, splitting, shuffling, packing, resume, bad shards."""
from __future__ import annotations

import copy
import io
import json
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from shards.reader import (ShardError, StreamingShards, assign, iter_samples, iter_shard, iter_tar,
                           npy_array, resolve_source)


def npy_bytes(arr) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def write_shard(path: Path, docs: list[tuple[str, np.ndarray]]) -> None:
    """A shard as the writer makes it: <key>.npy + <key>.json per sample, fixed mtime/owner."""
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tar:
        for key, tokens in docs:
            meta = json.dumps({"id": key, "source": "t", "lang": "zh", "tokens": len(tokens)}).encode()
            for name, data in ((f"{key}.npy", npy_bytes(tokens)), (f"{key}.json", meta)):
                info = tarfile.TarInfo(name)
                info.size, info.mtime, info.uid, info.gid = len(data), 0, 0, 0
                tar.addfile(info, io.BytesIO(data))


def make_corpus(root: Path, n_shards: int, per_shard: int, length=lambda i: 3 + i % 7, dtype=np.uint16):
    """Shards whose tokens are globally unique (sample i holds a consecutive run), plus a manifest."""
    root.mkdir(parents=True, exist_ok=True)
    entries, next_tok, all_docs = [], 0, []
    for s in range(n_shards):
        docs = []
        for j in range(per_shard):
            n = length(s * per_shard + j)
            docs.append((f"s{s:02d}-{j:04d}", np.arange(next_tok, next_tok + n, dtype=dtype)))
            next_tok += n
        name = f"train-{s:05d}.tar"
        write_shard(root / name, docs)
        all_docs += docs
        entries.append({"name": name, "split": "train", "samples": len(docs),
                        "tokens": int(sum(len(d) for _, d in docs)), "bytes": (root / name).stat().st_size,
                        "sha256": ""})
    write_shard(root / "val-00000.tar", [("v-0", np.array([60000, 60001], dtype=dtype))])
    entries.append({"name": "val-00000.tar", "split": "val", "samples": 1, "tokens": 2, "bytes": 0, "sha256": ""})
    (root / "manifest.json").write_text(json.dumps({"shards": entries, "dtype": np.dtype(dtype).name}))
    return all_docs


def take(it, k):
    return [np.asarray(next(it)).copy() for _ in range(k)]


# ---------------------------------------------------------------- parsing


@pytest.mark.parametrize("dtype", [np.uint16, np.uint32])
def test_npy_array_round_trip(dtype):
    arr = np.array([0, 1, 65535, 7], dtype=dtype)
    got = npy_array(npy_bytes(arr), "x")
    assert got.dtype == dtype and got.tolist() == arr.tolist()
    assert npy_array(npy_bytes(np.zeros(0, dtype)), "x").tolist() == []


@pytest.mark.parametrize("bad, why", [
    (b"garbage", "not a .npy"),
    (npy_bytes(np.zeros((2, 2), np.uint16)), "1-D"),
    (npy_bytes(np.zeros(3, np.float32)), "unsupported"),
    (npy_bytes(np.arange(4, dtype=np.uint16))[:-1], "does not match"),
])
def test_npy_array_bad_input(bad, why):
    with pytest.raises(ShardError, match=why):
        npy_array(bad, "x")


def test_iter_tar_reads_long_names_and_skips_non_npy(tmp_path):
    long_key = "k" * 150
    for fmt in (tarfile.GNU_FORMAT, tarfile.PAX_FORMAT, tarfile.USTAR_FORMAT):
        key = long_key if fmt != tarfile.USTAR_FORMAT else "d" * 90 + "/" + "k" * 90
        path = tmp_path / f"{fmt}.tar"
        write_shard(path, [(key, np.array([5, 6], np.uint16))])
        with open(path, "rb") as f:
            members = list(iter_tar(f, str(path)))
        assert [m[0] for m in members] == [f"{key}.npy", f"{key}.json"]
        assert members[1][1] is None and npy_array(members[0][1], "x").tolist() == [5, 6]


def test_webdataset_tarwriter_output_is_readable(tmp_path):
    import webdataset as wds

    path = tmp_path / "w.tar"
    with wds.TarWriter(str(path)) as sink:
        for i in range(3):
            sink.write({"__key__": f"a{i}", "npy": npy_bytes(np.array([i, i + 1], np.uint16)), "json": b"{}"})
    assert [(k, t.tolist()) for k, t in iter_shard(str(path))] == [("a0", [0, 1]), ("a1", [1, 2]), ("a2", [2, 3])]
    assert [k for k, _ in iter_shard(str(path), skip=2)] == ["a2"]


# ---------------------------------------------------------------- splitting


def test_assign_exact_small_cases():
    order = [2, 0, 1, 3, 4]
    assert assign(5, 2, 0, order) == [(2, 1, 0), (1, 1, 0), (4, 1, 0)]
    assert assign(5, 2, 1, order) == [(0, 1, 0), (3, 1, 0)]
    # 3 shards, 4 consumers: shard order[0] is shared by consumers 0 and 3, split by index parity
    assert [assign(3, 4, c, [1, 2, 0]) for c in range(4)] == [[(1, 2, 0)], [(2, 1, 0)], [(0, 1, 0)], [(1, 2, 1)]]


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 12), st.integers(1, 12), st.integers(1, 9), st.randoms())
def test_assign_partitions_every_sample(n_shards, consumers, per_shard, rnd):
    order = list(range(n_shards))
    rnd.shuffle(order)
    seen = []
    for c in range(consumers):
        for shard, stride, offset in assign(n_shards, consumers, c, order):
            seen += [(shard, i) for i in range(per_shard) if i % stride == offset]
    assert sorted(seen) == [(s, i) for s in range(n_shards) for i in range(per_shard)]


# ---------------------------------------------------------------- packing


def test_exact_packing_without_and_with_eos(tmp_path):
    docs = [("a", np.array([1, 2, 3], np.uint16)), ("b", np.array([4, 5], np.uint16)),
            ("c", np.array([6, 7, 8, 9, 10, 11, 12], np.uint16)), ("d", np.array([13], np.uint16))]
    write_shard(tmp_path / "one.tar", docs)
    urls = [str(tmp_path / "one.tar")]
    plain = StreamingShards(urls, seed=0, shuffle_buffer=0, seq_len=4)
    got = [s.tolist() for s in plain]
    assert got == [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12]]  # [13] dropped (drop_last)
    assert all(s.dtype == np.int64 for s in StreamingShards(urls, seed=0, shuffle_buffer=0, seq_len=4))
    eos = StreamingShards(urls, seed=0, shuffle_buffer=0, seq_len=5, eos_id=0, drop_last=False)
    assert [s.tolist() for s in eos] == [[1, 2, 3, 0, 4], [5, 0, 6, 7, 8], [9, 10, 11, 12, 0], [13, 0]]


def test_unpacked_documents_are_cut_and_padded(tmp_path):
    docs = [("a", np.array([1, 2, 3], np.uint16)), ("b", np.array([4, 5, 6, 7, 8, 9], np.uint16))]
    write_shard(tmp_path / "one.tar", docs)
    ds = StreamingShards([str(tmp_path / "one.tar")], seed=0, shuffle_buffer=0, seq_len=5, pad_id=0)
    assert [s.tolist() for s in ds] == [[1, 2, 3, 0, 0], [4, 5, 6, 7, 8]]


def test_unpacked_resume_continues_with_the_next_document(tmp_path):
    make_corpus(tmp_path, 3, 20, length=lambda i: 1 + (i * 7) % 11)
    kw = dict(seed=3, shuffle_buffer=6, seq_len=8, pad_id=65001)
    full = [s.tolist() for s in StreamingShards(tmp_path, **kw)]
    assert len(full) == 60
    ds = StreamingShards(tmp_path, **kw)
    head = [s.tolist() for s in take(iter(ds), 17)]
    fresh = StreamingShards(tmp_path, **kw)
    fresh.load_state_dict(pickle.loads(pickle.dumps(ds.state_dict())))
    assert head + [s.tolist() for s in fresh] == full


def test_packing_keeps_every_token_in_order_when_unshuffled(tmp_path):
    docs = make_corpus(tmp_path, 1, 40, length=lambda i: 1 + (i * 37) % 50)
    flat = np.concatenate([d for _, d in docs])
    seqs = list(StreamingShards(tmp_path, seed=1, shuffle_buffer=0, seq_len=16, drop_last=False))
    assert np.concatenate(seqs).tolist() == flat.tolist()
    assert all(len(s) == 16 for s in seqs[:-1]) and 0 < len(seqs[-1]) <= 16


# ---------------------------------------------------------------- sources


def test_manifest_dir_manifest_file_and_path_list_agree(tmp_path):
    make_corpus(tmp_path, 3, 5)
    urls = resolve_source(tmp_path)
    assert urls == [f"{tmp_path}/train-{i:05d}.tar" for i in range(3)]
    assert resolve_source(tmp_path / "manifest.json") == urls
    assert resolve_source(tmp_path, split="val") == [f"{tmp_path}/val-00000.tar"]
    kw = dict(seed=3, shuffle_buffer=4, seq_len=5)
    a = [s.tolist() for s in StreamingShards(tmp_path, **kw)]
    b = [s.tolist() for s in StreamingShards(urls, **kw)]
    assert a == b and len(a) > 5
    val = StreamingShards(tmp_path, split="val", seed=0, shuffle_buffer=0, seq_len=2)
    assert [s.tolist() for s in val] == [[60000, 60001]]


def test_remote_urls_through_pipe_and_fsspec(tmp_path):
    import fsspec

    make_corpus(tmp_path, 2, 4)
    local = resolve_source(tmp_path)
    mem = []
    for i, url in enumerate(local):
        with fsspec.open(f"memory://h17/s{i}.tar", "wb") as f:
            f.write(Path(url).read_bytes())
        mem.append(f"memory://h17/s{i}.tar")
    kw = dict(seed=0, shuffle_buffer=3, seq_len=4)
    want = [s.tolist() for s in StreamingShards(local, **kw)]
    assert [s.tolist() for s in StreamingShards(mem, **kw)] == want
    assert [s.tolist() for s in StreamingShards([f"pipe:cat {u}" for u in local], **kw)] == want


def test_bad_arguments_and_missing_manifest(tmp_path):
    with pytest.raises(FileNotFoundError):
        StreamingShards(tmp_path / "nothing", seed=0, shuffle_buffer=0, seq_len=4)
    with pytest.raises(ValueError):
        StreamingShards(["x.tar"], seed=0, shuffle_buffer=0, seq_len=0)
    with pytest.raises(ValueError):
        StreamingShards(["x.tar"], seed=0, shuffle_buffer=0, seq_len=4, rank=2, world_size=2)
    with pytest.raises(ValueError):
        StreamingShards([], seed=0, shuffle_buffer=0, seq_len=4)


# ---------------------------------------------------------------- shuffling and splitting end to end


def all_tokens(ds) -> list[int]:
    return [int(t) for s in ds for t in np.asarray(s)]


@pytest.mark.parametrize("n_shards", [3, 5])  # fewer and more shards than the 4 consumers
def test_two_ranks_two_workers_no_sample_lost_or_repeated(tmp_path, n_shards):
    docs = make_corpus(tmp_path, n_shards, 11)
    total = sum(len(d) for _, d in docs)
    seen = []
    for rank in range(2):
        ds = StreamingShards(tmp_path, seed=7, shuffle_buffer=5, seq_len=1, rank=rank, world_size=2)
        loader = torch.utils.data.DataLoader(ds, batch_size=8, num_workers=2)
        seen += [int(t) for batch in loader for t in batch.flatten()]
    assert len(seen) == total and sorted(seen) == list(range(total))


def test_shuffle_is_seeded_and_changes_with_seed_and_epoch(tmp_path):
    make_corpus(tmp_path, 4, 20)
    kw = dict(shuffle_buffer=10, seq_len=1)
    a = all_tokens(StreamingShards(tmp_path, seed=1, **kw))
    assert a == all_tokens(StreamingShards(tmp_path, seed=1, **kw))
    assert a != all_tokens(StreamingShards(tmp_path, seed=2, **kw))
    assert a != all_tokens(StreamingShards(tmp_path, seed=1, epoch=1, **kw))
    assert sorted(a) == sorted(all_tokens(StreamingShards(tmp_path, seed=2, **kw)))
    ds = StreamingShards(tmp_path, seed=1, **kw)
    first, second = all_tokens(ds), all_tokens(ds)  # a finished pass moves to the next epoch
    assert first == a and second == all_tokens(StreamingShards(tmp_path, seed=1, epoch=1, **kw))


# ---------------------------------------------------------------- resume


@pytest.mark.parametrize("k", [0, 1, 3, 17, 60, 119])
def test_resume_continues_with_exactly_the_next_sequence(tmp_path, k):
    make_corpus(tmp_path, 4, 30, length=lambda i: 1 + (i * 13) % 29)
    kw = dict(seed=5, shuffle_buffer=8, seq_len=7, eos_id=65000, rank=1, world_size=2)
    full = [s.tolist() for s in StreamingShards(tmp_path, **kw)]
    assert len(full) > 119
    ds = StreamingShards(tmp_path, **kw)
    it = iter(ds)
    head = [s.tolist() for s in take(it, k)]
    state = pickle.loads(pickle.dumps(ds.state_dict()))
    fresh = StreamingShards(tmp_path, **kw)
    fresh.load_state_dict(state)
    assert head + [s.tolist() for s in fresh] == full
    assert [s.tolist() for s in it] == full[k:]  # saving state does not disturb the running stream


def test_resume_across_many_random_draws_and_torch_output(tmp_path):
    make_corpus(tmp_path, 2, 2500, length=lambda i: 1 + i % 3)  # > one batch of random draws
    kw = dict(seed=9, shuffle_buffer=64, seq_len=3, as_torch=True)
    full = [s.tolist() for s in StreamingShards(tmp_path, **kw)]
    for k in (1000, 3000, len(full) - 1, len(full)):
        ds = StreamingShards(tmp_path, **kw)
        it = iter(ds)
        for _ in range(k):
            assert isinstance(next(it), torch.Tensor)
        fresh = StreamingShards(tmp_path, **kw)
        fresh.load_state_dict(copy.deepcopy(ds.state_dict()))
        assert [s.tolist() for s in fresh] == full[k:]


def test_state_of_finished_epoch_and_mismatched_state(tmp_path):
    make_corpus(tmp_path, 2, 5)
    ds = StreamingShards(tmp_path, seed=0, shuffle_buffer=2, seq_len=3)
    list(ds)
    assert ds.state_dict() == {"version": 1, "epoch": 1, "fresh": True}
    it = iter(ds)
    next(it)
    other = StreamingShards(tmp_path, seed=0, shuffle_buffer=2, seq_len=4)
    with pytest.raises(ValueError, match="seq_len"):
        other.load_state_dict(ds.state_dict())
    wrong_rank = StreamingShards(tmp_path, seed=0, shuffle_buffer=2, seq_len=3, rank=1, world_size=2)
    wrong_rank.load_state_dict(ds.state_dict())
    with pytest.raises(ValueError, match="consumer"):
        next(iter(wrong_rank))


# ---------------------------------------------------------------- bad shards


def corrupt(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_corrupt_or_truncated_shard_raises_clear_error(tmp_path):
    make_corpus(tmp_path, 2, 4)
    urls = resolve_source(tmp_path)
    corrupt(Path(urls[1]), 512 * 4 + 10)  # a byte in the third member's header (s01-0001.npy)
    with pytest.raises(ShardError, match="checksum"):
        list(StreamingShards(urls, seed=0, shuffle_buffer=0, seq_len=1))
    data = Path(urls[0]).read_bytes()
    Path(urls[0]).write_bytes(data[:1500])
    with pytest.raises(ShardError, match="truncated"):
        list(iter_samples([urls[0]]))


def test_corrupt_shard_is_skipped_and_counted(tmp_path):
    docs = make_corpus(tmp_path, 3, 4)
    urls = resolve_source(tmp_path)
    corrupt(Path(urls[1]), 10)  # first header of shard 1: nothing of it is read
    ds = StreamingShards(urls, seed=0, shuffle_buffer=2, seq_len=1, on_error="skip")
    got = sorted(all_tokens(ds))
    want = sorted(int(t) for key, d in docs if not key.startswith("s01") for t in d)
    assert got == want
    assert ds.stats["skipped_shards"] == 1 and "checksum" in ds.stats["errors"][0]


def test_a_key_with_two_npy_members_is_an_error_for_the_index_and_the_labeled_reader(tmp_path):
    from shards.index import build_index

    def member(name, data):
        info = tarfile.TarInfo(name)
        info.size = len(data)
        return info, io.BytesIO(data)

    npy = io.BytesIO()
    np.save(npy, np.arange(5, dtype=np.uint16))
    path = tmp_path / "train-000000.tar"
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in [("a.npy", npy.getvalue()), ("a.json", b'{"dataType": "news"}'),
                           ("a.npy", npy.getvalue()), ("b.npy", npy.getvalue())]:
            tar.addfile(*member(name, data))
    assert len(list(iter_shard(str(path)))) == 3          # the plain reader counts every .npy as a position
    with pytest.raises(ShardError, match="two .npy members for key 'a'"):
        list(iter_shard(str(path), labels=frozenset({"news"})))
    with pytest.raises(ShardError, match="two .npy members for key 'a'"):
        build_index(str(path))
