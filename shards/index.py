"""Token index: a sidecar `NAME.idx.npy` next to a tar shard saying where each sample's tokens lie inside it.

With it, `StreamingShards` reads a local shard through one memory map: every sample is a numpy view of the tar's
own bytes, found by offset, with no tar header or .npy header parsed per sample. This is how litdata and MosaicML
streaming reach their speed (a binary chunk plus an index, read with `np.frombuffer` over a memory map); here the
tar stays the data, still a plain WebDataset shard for any tool, and the index is only a map of it.

The file holds two `np.save` arrays, one after the other:
- a header, int64 `[MAGIC, VERSION, dtype code, tar bytes, tar sha256 prefix, samples]`;
- `samples` rows of int64 `(first token's byte offset in the tar, token count, label hash)`, one per `<key>.npy`
  in tar order; the label hash is `label_hash` of the sample json's `dataType` ("" without one).
A token's byte offset is a multiple of the dtype's size: tar data starts at a 512-byte block and a .npy header is
padded to 64 bytes (NEP 1), so the whole tar can be viewed as one typed array.

The tar is the truth. An index is used only if it passes `open_index`'s checks (its size and, when the caller
knows it, the manifest's sha256 match the tar; every row lies inside the tar, in order, without overlap); else
the reader falls back to reading the tar.
"""
from __future__ import annotations

import hashlib
import mmap
import os
from typing import NamedTuple

import numpy as np

from shards.sample import ShardError, npy_array, sample_label, sample_members

SUFFIX = ".idx.npy"
MAGIC = int.from_bytes(b"wudaoidx", "little")
VERSION = 1
DTYPE_CODES = {1: np.dtype("<u2"), 2: np.dtype("<u4"), 3: np.dtype("<i4"), 4: np.dtype("<i8"), 5: np.dtype("|u1")}
_CODE_OF = {dtype: code for code, dtype in DTYPE_CODES.items()}
_HEADER_LEN = 6
_POPULATE = getattr(mmap, "MAP_POPULATE", 0)  # Linux: map the shard's pages at once, not one fault at a time


def index_path(tar_path: str) -> str:
    """`train-000003.idx.npy` beside `train-000003.tar`."""
    return (tar_path[:-4] if tar_path.endswith(".tar") else tar_path) + SUFFIX


def label_hash(label: str) -> int:
    """A signed 64-bit hash of a domain label (blake2b), as stored in the index; "" for samples without one."""
    digest = hashlib.blake2b(label.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


def _sha_prefix(sha256_hex: str | None) -> int:
    """The first 8 bytes of a hex sha256 as a signed int64; 0 when there is none (or it is not hex)."""
    try:
        return int.from_bytes(bytes.fromhex(sha256_hex[:16]), "little", signed=True) if sha256_hex else 0
    except ValueError:
        return 0


def build_index(tar_path: str, sha256: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(header, rows) of `tar_path`, read once through the tar reader; raises ShardError for a tar or .npy
    member that cannot be read, or for samples of different dtypes in one shard."""
    rows, dtype = [], None
    with open(tar_path, "rb") as f:
        for key, npy, meta, start in sample_members(f, tar_path, offsets=True):
            tokens = npy_array(npy, f"{tar_path}:{key}")
            if dtype is None:
                dtype = tokens.dtype
            elif tokens.dtype != dtype:
                raise ShardError(f"{tar_path}: samples of dtypes {dtype} and {tokens.dtype} in one shard")
            rows.append((start + len(npy) - tokens.nbytes, len(tokens),
                         label_hash(sample_label(meta, f"{tar_path}:{key}"))))
        size = f.seek(0, os.SEEK_END)
    code = _CODE_OF[dtype] if dtype is not None else 1
    header = np.array([MAGIC, VERSION, code, size, _sha_prefix(sha256), len(rows)], np.int64)
    return header, np.array(rows, np.int64).reshape(-1, 3)


def write_index(tar_path: str, sha256: str | None = None) -> str:
    """Build the index of `tar_path` and write it beside the tar, atomically (temporary name, then rename)."""
    header, rows = build_index(tar_path, sha256)
    path = index_path(tar_path)
    tmp = path + ".tmp"
    with open(tmp, "wb") as fh:
        np.save(fh, header, allow_pickle=False)
        np.save(fh, rows, allow_pickle=False)
    os.replace(tmp, path)
    return path


class TokenIndex(NamedTuple):
    """A shard opened through its index: `tokens` is the whole tar as one typed array (a memory map), sample i's
    tokens are `tokens[starts[i]:ends[i]]`, its label hash `labels[i]`."""

    tokens: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    labels: np.ndarray


def open_index(tar_path: str, sha256: str | None = None) -> TokenIndex | str:
    """The shard's `TokenIndex`, or the reason (a short string) it cannot be used: no index, or one that does not
    match the tar (size, `sha256` when given) or fails the layout checks in the module docstring."""
    path = index_path(tar_path)
    try:
        tar_size, index_size = os.path.getsize(tar_path), os.path.getsize(path)
    except OSError:
        return "no index"
    if index_size > tar_size:  # never read more than the shard is worth
        return "index larger than its tar"
    try:
        with open(path, "rb") as fh:
            header = np.load(fh, allow_pickle=False)
            rows = np.load(fh, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return "index does not parse"
    if header.dtype != np.int64 or header.shape != (_HEADER_LEN,) or rows.dtype != np.int64 or rows.ndim != 2 \
            or rows.shape[1] != 3:
        return "index has the wrong layout"
    magic, version, code, size, sha, samples = header.tolist()
    if magic != MAGIC or version != VERSION or code not in DTYPE_CODES or samples != len(rows):
        return "index header is not ours"
    if size != tar_size or (sha256 and sha != _sha_prefix(sha256)):
        return "index is stale (its tar changed)"
    dtype = DTYPE_CODES[code]
    offsets, counts = rows[:, 0], rows[:, 1]
    ends = offsets + counts * dtype.itemsize
    if len(rows) and (offsets.min() < 0 or counts.min() < 0 or ends.max() > tar_size
                      or (offsets % dtype.itemsize).any() or (ends[:-1] > offsets[1:]).any()):
        return "index rows fall outside the tar"
    if tar_size == 0:
        return "empty tar"
    with open(tar_path, "rb") as fh:
        mapped = mmap.mmap(fh.fileno(), 0, flags=mmap.MAP_SHARED | _POPULATE, prot=mmap.PROT_READ)
    tokens = np.frombuffer(mapped, dtype, count=tar_size // dtype.itemsize)
    starts = offsets // dtype.itemsize
    return TokenIndex(tokens, starts, starts + counts, rows[:, 2])
