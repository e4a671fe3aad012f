"""Deterministic tokenized WebDataset shards: one tar member pair (`KEY.json`, `KEY.npy`) per corpus record.

A shard is a plain POSIX (ustar) tar, the format webdataset reads (github.com/webdataset/webdataset: samples are
consecutive members sharing the basename up to the first dot), written by `shards.tar`. Bytes depend only on the
samples: members are sorted by key then extension, and owner, group, mode and mtime are fixed, the way
reproducible-builds.org recommends for archives (`--sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner`).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Sequence

import numpy as np

from shards.index import SUFFIX as INDEX_SUFFIX
from shards.index import write_index
from shards.sample import label_of
from shards.tar import TarWriter, sample_bytes

SPLITS = ("train", "val")


def _unit_hash(tag: str, record_id: str) -> int:
    """A 64-bit hash of `tag:record_id` that every process and machine agrees on (Python's hash() does not)."""
    digest = hashlib.blake2b(f"{tag}:{record_id}".encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def split_of(record_id: str, val_fraction: float) -> str:
    """"val" for about `val_fraction` of ids, else "train"; depends on the id alone, so growing the corpus
    never moves an existing record between splits."""
    if not 0.0 <= val_fraction <= 1.0:
        raise ValueError(f"val_fraction must be in [0, 1], got {val_fraction}")
    return "val" if _unit_hash("split", record_id) < val_fraction * 2.0 ** 64 else "train"


def shard_of(record_id: str, num_shards: int) -> int:
    """The shard index in [0, num_shards) of a record: a stable hash of its id (independent of `split_of`)."""
    if num_shards < 1:
        raise ValueError(f"num_shards must be >= 1, got {num_shards}")
    return _unit_hash("shard", record_id) % num_shards


def dtype_for(vocab_size: int) -> str:
    """"uint16" when every id in [0, vocab_size) fits in 16 bits, else "uint32"."""
    if vocab_size < 1:
        raise ValueError(f"vocab_size must be >= 1, got {vocab_size}")
    if vocab_size <= 2 ** 16:
        return "uint16"
    if vocab_size <= 2 ** 32:
        return "uint32"
    raise ValueError(f"vocab_size {vocab_size} does not fit in uint32")


def check_key(key: str) -> str:
    """A key must be a non-empty name without '.', '/' or NUL: webdataset splits `KEY.EXT` at the first dot."""
    if not isinstance(key, str) or not key or any(c in key for c in "./\\\x00") or len(key) > 90:
        raise ValueError(f"unusable sample key {key!r}")
    key.encode("ascii")  # ustar names are ASCII here; a non-ASCII id raises UnicodeEncodeError
    return key


def npy_bytes(token_ids: Sequence[int] | np.ndarray, dtype: str) -> bytes:
    """`np.save` bytes of a 1-D little-endian array; ids outside the dtype's range raise ValueError."""
    info = np.iinfo(dtype)
    arr = np.asarray(token_ids)
    if arr.ndim != 1:
        raise ValueError(f"token ids must be 1-D, got shape {arr.shape}")
    if arr.size and (arr.dtype.kind not in "iu" or int(arr.min()) < info.min or int(arr.max()) > info.max):
        raise ValueError(f"token ids do not fit {dtype}")
    buf = io.BytesIO()
    np.save(buf, arr.astype(np.dtype(dtype).newbyteorder("<"), copy=False), allow_pickle=False)
    return buf.getvalue()


def encode_sample(record: dict[str, Any], token_ids: Sequence[int] | np.ndarray, dtype: str) -> dict[str, Any]:
    """One WebDataset sample: `__key__` (the record id), `npy` (token ids) and `json` (id, source, lang, tokens,
    and the record's WuDao domain label `dataType` when it has a non-empty string one)."""
    key = check_key(record["id"])
    meta = {"id": key, "source": record.get("source", ""), "lang": record.get("lang", ""),
            "tokens": len(token_ids)}
    label = record.get("dataType")
    if isinstance(label, str) and label:
        meta["dataType"] = label
    return {"__key__": key, "npy": npy_bytes(token_ids, dtype),
            "json": json.dumps(meta, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode("utf-8")}


@dataclass(frozen=True)
class ShardInfo:
    name: str
    samples: int
    tokens: int
    bytes: int
    sha256: str
    tokens_per_label: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def tar_bytes(sample: dict[str, Any]) -> int:
    """Exact bytes a sample takes in a ustar tar: a 512-byte header per member plus its data padded to 512
    (the tar's end blocks not counted). Jobs sum it to choose how many shards to write."""
    return sample_bytes(sample)


def tokens_per_label(samples: Iterable[dict[str, Any]]) -> dict[str, int]:
    """{label: tokens} over `samples` (from `encode_sample`), labels sorted; unlabeled samples count under ""."""
    counts: dict[str, int] = {}
    for sample in samples:
        meta = json.loads(sample["json"])
        label = label_of(meta)
        counts[label] = counts.get(label, 0) + int(meta["tokens"])
    return dict(sorted(counts.items()))


def write_shard(samples: Iterable[dict[str, Any]], path: str) -> ShardInfo:
    """Write `samples` (from `encode_sample`) as one tar, sorted by key, to `path.tmp`, then rename onto `path`,
    and its token index beside it (shards/index.py: the fast path of the streaming reader).

    The same samples in any order give the same bytes. Duplicate keys raise ValueError. The returned info
    counts tokens in all and per label (`tokens_per_label`)."""
    ordered = sorted(samples, key=lambda s: s["__key__"])
    for left, right in zip(ordered, ordered[1:]):
        if left["__key__"] == right["__key__"]:
            raise ValueError(f"duplicate sample key {left['__key__']!r}")
    tmp = path + ".tmp"
    labels = tokens_per_label(ordered)
    with open(tmp, "wb") as fh:
        tar = TarWriter(fh)
        for sample in ordered:
            key = check_key(sample["__key__"])
            for ext in sorted(k for k in sample if k != "__key__"):
                tar.add(f"{key}.{ext}", sample[ext])
        written = tar.close()
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    write_index(path, written.sha256)
    return ShardInfo(os.path.basename(path), len(ordered), sum(labels.values()), written.size, written.sha256,
                     labels)


def file_sha256(path: str) -> tuple[str, int]:
    """(hex sha256, byte size) of a file, read in 1 MiB blocks."""
    h, size = hashlib.sha256(), 0
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
            size += len(block)
    return h.hexdigest(), size


def shard_name(split: str, index: int) -> str:
    """`train-000003.tar`: the name of shard `index` of `split`."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}")
    return f"{split}-{index:06d}.tar"


def remove_unlisted_shards(folder: str, listed: Iterable[str]) -> list[str]:
    """Delete the shard files (`train-*.tar`, `val-*.tar`) in `folder` whose names are not in `listed`, and their
    token indexes (`train-*.idx.npy`): what an earlier run with more shards left behind. Other files stay.
    Returns the names removed."""
    keep = set(listed)
    keep |= {name[:-4] + INDEX_SUFFIX for name in keep if name.endswith(".tar")}
    removed = sorted(name for name in os.listdir(folder)
                     if name.endswith((".tar", INDEX_SUFFIX)) and name.split("-")[0] in SPLITS and name not in keep)
    for name in removed:
        os.remove(os.path.join(folder, name))
    return removed
