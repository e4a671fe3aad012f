"""One sample of a token shard as the readers see it: its `.npy` token array and its json's domain label.

Shared by the streaming reader (shards/reader.py), the token index (shards/index.py), the writer and verify.
`.npy` headers per the NumPy format spec (NEP 1).
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, BinaryIO

import numpy as np

from shards.tar import iter_tar, padded

_NPY_MAGIC = b"\x93NUMPY"
_DTYPES = {"<u2": np.uint16, "<u4": np.uint32, "<i4": np.int32, "<i8": np.int64, "|u1": np.uint8}


class ShardError(ValueError):
    """A shard that cannot be read: the url and the reason are in the message."""


def npy_array(data: bytes, where: str) -> np.ndarray:
    """A 1-D little-endian integer array from `np.save` bytes, without copying (NEP 1 header layout)."""
    if data[:6] != _NPY_MAGIC:
        raise ShardError(f"{where}: not a .npy array")
    if data[6] == 1:
        start = 10 + int.from_bytes(data[8:10], "little")
    else:
        start = 12 + int.from_bytes(data[8:12], "little")
    header = data[10 if data[6] == 1 else 12 : start].decode("latin1")
    try:
        descr = header.split("'descr':", 1)[1].split("'", 2)[1]
        shape = header.split("'shape':", 1)[1].split("(", 1)[1].split(")", 1)[0]
    except IndexError:
        raise ShardError(f"{where}: bad .npy header") from None
    dtype = _DTYPES.get(descr)
    if dtype is None or "'fortran_order': False" not in header:
        raise ShardError(f"{where}: unsupported .npy dtype/order {descr!r}")
    dims = [d for d in shape.split(",") if d.strip()]
    if len(dims) != 1:
        raise ShardError(f"{where}: token array must be 1-D, shape ({shape})")
    n = int(dims[0])
    if len(data) - start != n * np.dtype(dtype).itemsize:
        raise ShardError(f"{where}: .npy size does not match shape ({n},)")
    return np.frombuffer(data, dtype=dtype, offset=start, count=n)


def label_of(meta: dict[str, Any]) -> str:
    """A sample's domain label: its json `dataType`, or "" when it has none (or one that is not a string)."""
    label = meta.get("dataType", "")
    return label if isinstance(label, str) else ""


def sample_label(meta: bytes | None, where: str) -> str:
    """The `dataType` label in a sample's json bytes: "" without json, without the field, or with a non-string."""
    if meta is None:
        return ""
    try:
        parsed = json.loads(meta)
    except ValueError:
        raise ShardError(f"{where}: sample json does not parse") from None
    return label_of(parsed) if isinstance(parsed, dict) else ""


def sample_members(f: BinaryIO, where: str, offsets: bool = False
                   ) -> Iterator[tuple[str, bytes, bytes | None, int | None]]:
    """(key, npy bytes, json bytes or None, offset) for each sample with an npy member, in tar order; a sample's
    members are consecutive (webdataset's rule), in any order. `offset`, with `offsets=True` (`f` must tell()), is
    where the npy member's data starts in the file. Two .npy members for one key raise ShardError: the tar reader
    counts each as a position, so pairing them would shift every later one."""
    key = npy = meta = offset = None
    for name, data in iter_tar(f, where, (".npy", ".json")):
        if data is None:
            continue
        is_npy = name.endswith(".npy")
        this = name[:-4] if is_npy else name[:-5]
        if this != key:
            if npy is not None:
                yield key, npy, meta, offset
            key, npy, meta = this, None, None
        if is_npy:
            if npy is not None:
                raise ShardError(f"{where}: two .npy members for key {key!r}")
            npy, offset = data, (f.tell() - padded(len(data)) if offsets else None)
        else:
            meta = data
    if npy is not None:
        yield key, npy, meta, offset
