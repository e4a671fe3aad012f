"""Domain labels in shards and weighted mixing: `StreamingShards(labels=...)` and `shards.mix.MixedStreams`
(issue items 4 and 5). Shards are written by the project's own writer into tmp_path."""
from __future__ import annotations

import json
import math
import pickle

import numpy as np
import pytest
import torch

from shards.manifest import build_manifest, read_manifest, verify, write_manifest
from shards.mix import MixedStreams, check_weights
from shards.reader import StreamingShards
from shards.writer import encode_sample, shard_name, write_shard

LABELS = ("新闻", "百科", "博客", "finance", "")  # "" : a record without dataType


def length(i: int) -> int:
    return 1 + i % 7


def write_set(root, base: int, n_docs: int, n_shards: int, labels=LABELS) -> dict[str, list[int]]:
    """`n_docs` samples over `n_shards` train shards + manifest; sample i has label labels[i % len] and holds
    `length(i)` fresh token ids from base + 1000 * (its label's index). Returns {label: its token ids}."""
    root.mkdir(parents=True, exist_ok=True)
    by_label: dict[str, list[int]] = {label: [] for label in labels}
    shards: list[list[dict]] = [[] for _ in range(n_shards)]
    for i in range(n_docs):
        k = i % len(labels)
        label, start = labels[k], base + 1000 * k + len(by_label[labels[k]])
        ids = list(range(start, start + length(i)))
        by_label[label] += ids
        record = {"id": f"d{base}-{i:04d}", "dataType": label}
        shards[i % n_shards].append(encode_sample(record, ids, "uint16"))
    entries = [{**write_shard(s, str(root / shard_name("train", j))).to_dict(), "split": "train"}
               for j, s in enumerate(shards)]
    write_manifest(str(root), build_manifest(entries, "h", "uint16", 8, "test"))
    return by_label


def source_of(seq) -> int:
    """Which set a sequence came from (sets use bases 0, 10000, 20000...)."""
    found = {int(t) // 10000 for t in np.asarray(seq)}
    assert len(found) == 1, found
    return found.pop()


def label_of_seq(seq, base: int = 0) -> str:
    found = {(int(t) - base) // 1000 for t in np.asarray(seq)}
    assert len(found) == 1, found
    return LABELS[found.pop()]


def tokens(stream) -> list[int]:
    return sorted(int(t) for seq in stream for t in np.asarray(seq))


def rows(stream, k=None) -> list[list[int]]:
    it = iter(stream)
    out = []
    for seq in it:
        out.append(np.asarray(seq).tolist())
        if k is not None and len(out) == k:
            break
    return out


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    """`big`: 200 labeled samples in 4 shards; `small`: 30 samples in 2 shards (all "finance")."""
    root = tmp_path_factory.mktemp("sets")
    big = write_set(root / "big", 0, 200, 4)
    small = write_set(root / "small", 10000, 30, 2, labels=("finance",))
    return root, big, small


# ---------------------------------------------------------------- label filter


@pytest.mark.parametrize("labels", [["新闻"], ["新闻", "finance"], [""], list(LABELS)])
def test_label_filter_yields_exactly_the_requested_labels(sets, labels):
    root, big, _ = sets
    ds = StreamingShards(root / "big", seed=4, shuffle_buffer=7, seq_len=1, labels=labels)
    assert tokens(ds) == sorted(t for label in labels for t in big[label])
    assert ds.stats["samples"] == 40 * len(labels) and ds.stats["filtered"] == 200 - 40 * len(labels)


def test_label_filter_splits_across_ranks_without_loss(sets):
    root, big, _ = sets
    seen = []
    for rank in range(3):  # 3 consumers, 4 shards
        seen += tokens(StreamingShards(root / "big", seed=1, shuffle_buffer=3, seq_len=1, rank=rank, world_size=3,
                                       labels=["百科", "博客"]))
    assert sorted(seen) == sorted(big["百科"] + big["博客"])


def test_no_labels_reads_no_json_and_keeps_every_sample(sets):
    root, big, _ = sets
    ds = StreamingShards(root / "big", seed=4, shuffle_buffer=7, seq_len=1)
    assert tokens(ds) == sorted(t for ids in big.values() for t in ids) and ds.stats["filtered"] == 0


@pytest.mark.parametrize("k", [0, 1, 9, 30])
def test_label_filter_resumes_exactly_with_shuffle(sets, k):
    root, _, _ = sets
    kw = dict(seed=5, shuffle_buffer=6, seq_len=3, eos_id=60000, rank=1, world_size=2, labels=["新闻", ""])
    full = rows(StreamingShards(root / "big", **kw))
    assert len(full) > 30
    ds = StreamingShards(root / "big", **kw)
    head = rows(ds, k) if k else []
    fresh = StreamingShards(root / "big", **kw)
    fresh.load_state_dict(pickle.loads(pickle.dumps(ds.state_dict())))
    assert head + rows(fresh) == full


def test_label_filter_arguments_and_state_mismatch(sets):
    root, _, _ = sets
    for bad in ("新闻", [], [1]):
        with pytest.raises(ValueError, match="labels"):
            StreamingShards(root / "big", seed=0, shuffle_buffer=0, seq_len=2, labels=bad)
    ds = StreamingShards(root / "big", seed=0, shuffle_buffer=0, seq_len=2, labels=["新闻"])
    next(iter(ds))
    for other in (None, ["百科"]):
        with pytest.raises(ValueError, match="labels"):
            StreamingShards(root / "big", seed=0, shuffle_buffer=0, seq_len=2, labels=other
                            ).load_state_dict(ds.state_dict())


def test_old_manifest_without_tokens_per_label_is_still_read(sets, tmp_path):
    root, big, _ = sets
    old = tmp_path / "old"
    old.mkdir()
    for path in (root / "big").iterdir():
        (old / path.name).write_bytes(path.read_bytes())
    manifest = read_manifest(str(old))
    assert manifest["tokens_per_label"] == {label: len(ids) for label, ids in sorted(big.items())}
    del manifest["tokens_per_label"]
    for entry in manifest["shards"]:
        del entry["tokens_per_label"]
    write_manifest(str(old), manifest)
    assert "tokens_per_label" not in (old / "manifest.json").read_text()
    assert verify(str(old)) == []
    kw = dict(seed=2, shuffle_buffer=5, seq_len=4)
    assert rows(StreamingShards(old, **kw)) == rows(StreamingShards(root / "big", **kw))
    assert tokens(StreamingShards(old, labels=["博客"], **kw)) == tokens(StreamingShards(root / "big", labels=["博客"],
                                                                                         **kw))


def test_shards_written_without_labels_are_all_unlabeled(tmp_path):
    write_set(tmp_path, 0, 20, 2, labels=("",))
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert set(manifest["tokens_per_label"]) == {""}
    all_ = tokens(StreamingShards(tmp_path, seed=0, shuffle_buffer=0, seq_len=1))
    assert tokens(StreamingShards(tmp_path, seed=0, shuffle_buffer=0, seq_len=1, labels=[""])) == all_
    assert tokens(StreamingShards(tmp_path, seed=0, shuffle_buffer=0, seq_len=1, labels=["新闻"])) == []


# ---------------------------------------------------------------- mixing


def two_sources(root, rank=0, world_size=1, seq_len=4, **kw):
    kw = dict(seed=11, shuffle_buffer=8, seq_len=seq_len, rank=rank, world_size=world_size, **kw)
    return {"big": StreamingShards(root / "big", **kw), "small": StreamingShards(root / "small", **kw)}


def test_one_source_repeats_epochs_exactly(sets):
    root, big, _ = sets
    total = sum(len(ids) for ids in big.values())
    epoch = total // 4  # packed, no eos, drop_last
    assert total == sum(length(i) for i in range(200)) == 794 and epoch == 198
    mix = MixedStreams({"big": StreamingShards(root / "big", seed=3, shuffle_buffer=8, seq_len=4)}, {"big": 0.5},
                       seed=0, max_sequences=2 * epoch + 3)
    got = rows(mix)
    alone = StreamingShards(root / "big", seed=3, shuffle_buffer=8, seq_len=4)
    want = rows(alone) + rows(alone) + rows(alone, 3)  # epochs 0 and 1, then the start of epoch 2
    assert got == want and len(got) == 2 * epoch + 3
    assert mix.stats == {"sequences": 399, "per_source": {"big": 399}, "epochs_done": {"big": 2}}
    assert rows(mix) == []  # max_sequences reached: a new pass yields nothing more


def test_mix_proportions_and_each_source_in_its_own_order(sets):
    root, _, _ = sets
    n = 4000
    mix = MixedStreams(two_sources(root), {"big": 3, "small": 1}, seed=7, max_sequences=n)
    got = rows(mix)
    assert len(got) == n
    by_source = {0: [], 1: []}
    for seq in got:
        by_source[source_of(seq)].append(seq)
    assert mix.stats["per_source"] == {"big": len(by_source[0]), "small": len(by_source[1])}
    assert abs(len(by_source[1]) / n - 0.25) < 0.02  # binomial sd 0.007
    small_epoch = sum(length(i) for i in range(30)) // 4
    assert mix.stats["epochs_done"]["small"] == len(by_source[1]) // small_epoch > 10  # small is up-sampled
    for name, base in (("big", 0), ("small", 1)):  # each source's sequences are its own stream, epoch after epoch
        alone, want = two_sources(root)[name], []
        while len(want) < len(by_source[base]):
            want += rows(alone)
        assert by_source[base] == want[:len(by_source[base])]


def test_mix_is_deterministic_and_seeded(sets):
    root, _, _ = sets
    weights = {"big": 2.0, "small": 1.0}
    a = rows(MixedStreams(two_sources(root), weights, seed=1, max_sequences=300))
    assert a == rows(MixedStreams(two_sources(root), weights, seed=1, max_sequences=300))
    reordered = dict(reversed(list(two_sources(root).items())))  # dict order of the sources does not matter
    assert a == rows(MixedStreams(reordered, {"small": 1.0, "big": 2.0}, seed=1, max_sequences=300))
    assert a != rows(MixedStreams(two_sources(root), weights, seed=2, max_sequences=300))


@pytest.mark.parametrize("k", [0, 1, 37, 250, 599, 600])
def test_mix_resumes_exactly_mid_stream_per_rank(sets, k):
    root, _, _ = sets
    def make():
        return MixedStreams(two_sources(root, rank=1, world_size=2, eos_id=60000), {"big": 1, "small": 1}, seed=5,
                            max_sequences=600)

    full = rows(make())
    assert len(full) == 600
    mix = make()
    it = iter(mix)
    head = [np.asarray(next(it)).tolist() for _ in range(k)]
    state = pickle.loads(pickle.dumps(mix.state_dict()))
    fresh = make()
    fresh.load_state_dict(state)
    assert head + rows(fresh) == full
    assert [np.asarray(s).tolist() for s in it] == full[k:]  # saving state does not disturb the running mix
    assert fresh.stats["sequences"] == mix.stats["sequences"] == 600
    assert fresh.stats["per_source"] == mix.stats["per_source"]


def test_mix_of_labels_within_one_set(sets):
    root, _, _ = sets
    weights = {"新闻": 1, "百科": 1, "finance": 2}
    mix = MixedStreams.from_labels(root / "big", weights, seed=3, max_sequences=2000, shuffle_buffer=4, seq_len=2)
    labels = [label_of_seq(seq) for seq in mix]
    assert len(labels) == 2000 and set(labels) == set(weights)
    assert {label: labels.count(label) for label in weights} == mix.stats["per_source"]
    for label, weight in weights.items():
        assert abs(labels.count(label) / 2000 - weight / 4) < 0.035


def test_mix_through_a_torch_dataloader(sets):
    root, _, _ = sets
    mix = MixedStreams(two_sources(root, as_torch=True), {"big": 1, "small": 1}, seed=0, max_sequences=10)
    batches = list(torch.utils.data.DataLoader(mix, batch_size=4))
    assert [tuple(b.shape) for b in batches] == [(4, 4), (4, 4), (2, 4)]


@pytest.mark.parametrize("weights, match", [
    ({"big": 0, "small": 1}, "positive"), ({"big": -1, "small": 1}, "positive"),
    ({"big": math.nan, "small": 1}, "positive"), ({"big": math.inf, "small": 1}, "positive"),
    ({"big": True, "small": 1}, "positive"), ({"big": "1", "small": 1}, "positive"),
    ({"big": 1}, r"no weight for \['small'\]"), ({"big": 1, "small": 1, "web": 1}, r"unknown streams \['web'\]"),
])
def test_bad_weights_are_refused_clearly(sets, weights, match):
    root, _, _ = sets
    with pytest.raises(ValueError, match=match):
        MixedStreams(two_sources(root), weights, seed=0)


def test_other_bad_mixes(sets):
    root, _, _ = sets
    one = StreamingShards(root / "small", seed=0, shuffle_buffer=0, seq_len=4)
    with pytest.raises(ValueError, match="no streams"):
        check_weights({}, {})
    with pytest.raises(ValueError, match="own stream object"):
        MixedStreams({"a": one, "b": one}, {"a": 1, "b": 1}, seed=0)
    with pytest.raises(ValueError, match="max_sequences"):
        MixedStreams(two_sources(root), {"big": 1, "small": 1}, seed=0, max_sequences=-1)
    empty = {"big": StreamingShards(root / "big", seed=0, shuffle_buffer=0, seq_len=4, labels=["no-such-label"])}
    with pytest.raises(ValueError, match="no sequence in a whole epoch"):
        rows(MixedStreams(empty, {"big": 1}, seed=0))
    state = MixedStreams(two_sources(root), {"big": 1, "small": 1}, seed=0).state_dict()
    with pytest.raises(ValueError, match="seed"):
        MixedStreams(two_sources(root), {"big": 1, "small": 1}, seed=1).load_state_dict(state)
    with pytest.raises(ValueError, match="sources"):
        MixedStreams({"big": one}, {"big": 1}, seed=0).load_state_dict(state)
