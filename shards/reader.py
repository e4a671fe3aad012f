"""Resumable streaming reader for tokenized WebDataset shards.

`StreamingShards` streams `<key>.npy` token arrays out of tar shards, splits shards across nodes and
DataLoader workers, shuffles shard order and samples with a seed, and packs documents into fixed-length
sequences. Its `state_dict()` lets a restarted job continue with exactly the next sequence.

Sources: the shard layout and the shuffle buffer follow webdataset (tar shards as plain iterators,
`wds.shuffle(bufsize)`); the tar members come from `shards.tar.iter_tar`, the fast path of the project's one tar
module (several times faster per member than `tarfile`); `.npy` headers per the NumPy format spec (NEP 1).
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from shards.manifest import ManifestError, name_problem
from shards.tar import TarError, iter_tar
from shards.writer import label_of

try:  # torch is optional: without it the reader is a plain iterable
    from torch.utils.data import IterableDataset as _Base
    from torch.utils.data import get_worker_info as _worker_info
except ImportError:  # pragma: no cover - exercised only without torch
    _Base = object

    def _worker_info():
        return None

_RAND_BATCH = 4096
_NPY_MAGIC = b"\x93NUMPY"
_DTYPES = {"<u2": np.uint16, "<u4": np.uint32, "<i4": np.int32, "<i8": np.int64, "|u1": np.uint8}


class ShardError(ValueError):
    """A shard that cannot be read: the url and the reason are in the message."""


# ---------------------------------------------------------------- sources and opening


def resolve_source(source: str | os.PathLike | Sequence[str], split: str = "train") -> list[str]:
    """Shard urls from a manifest path, a directory holding manifest.json, or a list of urls/paths.

    Urls and `pipe:` commands are taken only from a list the caller passes; names inside a manifest must be
    plain file names in the manifest's folder, else ManifestError (see `shards.manifest.name_problem`)."""
    if isinstance(source, (list, tuple)):
        urls = [str(u) for u in source]
        if not urls:
            raise ValueError("empty list of shards")
        return urls
    text = str(source)
    if "://" in text and not text.startswith("file://"):
        manifest_url = text if text.endswith(".json") else text.rstrip("/") + "/manifest.json"
        with _open(manifest_url) as f:
            raw = f.read()
        return _manifest_urls(raw, manifest_url.rsplit("/", 1)[0], split, manifest_url)
    path = Path(text.removeprefix("file://"))
    if path.is_dir():
        path = path / "manifest.json"
    if not path.is_file():
        raise FileNotFoundError(f"no manifest at {path}")
    return _manifest_urls(path.read_bytes(), str(path.parent), split, str(path))


def _manifest_urls(raw: bytes, base: str, split: str, where: str) -> list[str]:
    """`base/name` for each shard of `split` in the manifest text `raw`; a malformed manifest is refused."""
    try:
        manifest = json.loads(raw)
    except ValueError:
        raise ManifestError(f"{where}: manifest is not JSON") from None
    entries = manifest.get("shards") if isinstance(manifest, dict) else None
    if not isinstance(entries, list):
        raise ManifestError(f"{where}: manifest has no 'shards' list")
    names = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ManifestError(f"{where}: manifest entry #{i} is not an object")
        problem = name_problem(entry.get("name"))
        if problem:
            raise ManifestError(f"{where}: manifest entry #{i}: {problem}")
        if entry.get("split", "train") == split:
            names.append(entry["name"])
    if not names:
        raise ManifestError(f"{where}: no shards with split={split!r}")
    return [f"{base}/{n}" for n in names]


def _open(url: str):
    """Open a shard for binary streaming: local path, `pipe:cmd`, or any fsspec url (http, s3, gs, memory...)."""
    if url.startswith("pipe:"):
        from webdataset.gopen import gopen

        return gopen(url, "rb")
    if "://" in url and not url.startswith("file://"):
        import fsspec

        return fsspec.open(url, "rb").open()
    return open(url.removeprefix("file://"), "rb", buffering=1 << 20)


# ---------------------------------------------------------------- npy parsing


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


def iter_shard(url: str, skip: int = 0, labels: frozenset[str] | None = None
               ) -> Iterator[tuple[str, np.ndarray | None]]:
    """Yield (key, tokens) for each `<key>.npy` in a shard, skipping the first `skip` samples.

    With `labels`, each sample's `<key>.json` is read too, and a sample whose `dataType` ("" when it has none) is
    not in `labels` comes as (key, None): it still counts as a position in the shard (exact resume)."""
    if labels is not None:
        yield from _iter_labeled(url, skip, labels)
        return
    with _open(url) as f:
        seen = 0
        try:
            for name, data in iter_tar(f, url, ".npy"):
                if data is None:
                    continue
                seen += 1
                if seen <= skip:
                    continue
                yield name[:-4], npy_array(data, f"{url}:{name}")
        except TarError as exc:
            raise ShardError(str(exc)) from None


def _sample_pairs(f, url: str) -> Iterator[tuple[str, bytes, bytes | None]]:
    """(key, npy bytes, json bytes or None) for each sample with an npy member; a sample's members are
    consecutive (webdataset's rule), in any order."""
    key = npy = meta = None
    for name, data in iter_tar(f, url, (".npy", ".json")):
        if data is None:
            continue
        is_npy = name.endswith(".npy")
        this = name[:-4] if is_npy else name[:-5]
        if this != key:
            if npy is not None:
                yield key, npy, meta
            key, npy, meta = this, None, None
        if is_npy:
            npy = data
        else:
            meta = data
    if npy is not None:
        yield key, npy, meta


def sample_label(meta: bytes | None, where: str) -> str:
    """The `dataType` label in a sample's json bytes: "" without json, without the field, or with a non-string."""
    if meta is None:
        return ""
    try:
        parsed = json.loads(meta)
    except ValueError:
        raise ShardError(f"{where}: sample json does not parse") from None
    return label_of(parsed) if isinstance(parsed, dict) else ""


def _iter_labeled(url: str, skip: int, labels: frozenset[str]) -> Iterator[tuple[str, np.ndarray | None]]:
    with _open(url) as f:
        try:
            for i, (key, npy, meta) in enumerate(_sample_pairs(f, url)):
                if i < skip:
                    continue
                where = f"{url}:{key}"
                yield key, (npy_array(npy, where) if sample_label(meta, where) in labels else None)
        except TarError as exc:
            raise ShardError(str(exc)) from None


# ---------------------------------------------------------------- splitting


def assign(n_shards: int, consumers: int, consumer: int, order: Sequence[int]) -> list[tuple[int, int, int]]:
    """Work units (shard, stride, offset) for one consumer: take samples where index % stride == offset.

    With at least as many shards as consumers each consumer gets whole shards, round-robin over the
    shuffled order. With fewer shards, consumers share a shard and split its samples by index modulo the
    number of sharers, so no sample is lost or repeated either way."""
    if n_shards >= consumers:
        return [(order[i], 1, 0) for i in range(consumer, n_shards, consumers)]
    shard_pos = consumer % n_shards
    sharers = len(range(shard_pos, consumers, n_shards))
    return [(order[shard_pos], sharers, consumer // n_shards)]


# ---------------------------------------------------------------- the dataset


class StreamingShards(_Base):
    """Shuffled, split, packed, resumable stream of `seq_len` token sequences from WebDataset shards.

    One pass of `iter()` is one epoch (`epoch`, or `set_epoch`). Yields int64 numpy arrays of length
    `seq_len` (torch tensors with `as_torch=True`); with `eos_id`, that id follows every document. With
    `pad_id`, documents are not packed: each is one sequence, cut to `seq_len` and padded with `pad_id`.
    Memory: the shuffle buffer, the packing remainder and one open shard stream. Bad shards raise
    `ShardError` (`on_error="raise"`) or are skipped and counted in `stats` (`on_error="skip"`); with skip,
    samples read before the corruption are kept.
    With `labels`, only samples whose json `dataType` is one of them are used ("" selects samples without one);
    the json members are then read too (without `labels` they are skipped, as before). Samples left out are
    counted in `stats["filtered"]`.
    State (`state_dict`) is that of this process's consumer: with DataLoader workers, each worker holds its
    own (the torchdata StatefulDataLoader protocol calls these methods inside every worker).
    """

    def __init__(self, source, *, seed: int, shuffle_buffer: int, seq_len: int, rank: int = 0,
                 world_size: int = 1, split: str = "train", eos_id: int | None = None, epoch: int = 0,
                 drop_last: bool = True, as_torch: bool = False, on_error: str = "raise", pad_id: int | None = None,
                 labels: Sequence[str] | None = None):
        if seq_len < 1 or shuffle_buffer < 0 or not 0 <= rank < world_size:
            raise ValueError("need seq_len >= 1, shuffle_buffer >= 0 and 0 <= rank < world_size")
        if on_error not in ("raise", "skip"):
            raise ValueError("on_error must be 'raise' or 'skip'")
        if labels is not None and (isinstance(labels, str) or not labels
                                   or not all(isinstance(x, str) for x in labels)):
            raise ValueError(f"labels must be a non-empty list of strings, got {labels!r:.80}")
        self.labels = None if labels is None else frozenset(labels)
        self.urls = resolve_source(source, split)
        self.seed, self.shuffle_buffer, self.seq_len = seed, shuffle_buffer, seq_len
        self.rank, self.world_size, self.eos_id, self.epoch = rank, world_size, eos_id, epoch
        self.drop_last, self.as_torch, self.on_error = drop_last, as_torch, on_error
        self.pad_id = pad_id
        self.stats = {"shards": 0, "samples": 0, "sequences": 0, "skipped_shards": 0, "filtered": 0, "errors": []}
        self._pending: dict | None = None
        self._live: dict | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _consumer(self) -> tuple[int, int]:
        info = _worker_info()
        workers, worker = (info.num_workers, info.id) if info is not None else (1, 0)
        return self.rank * workers + worker, self.world_size * workers

    def shard_order(self, epoch: int) -> list[int]:
        """The epoch's shard order: a seeded permutation, the same on every node and worker."""
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.urls)).tolist()

    # -- state

    def state_dict(self) -> dict[str, Any]:
        """Exact position after the last yielded sequence (plain Python and numpy values)."""
        s = self._live if self._live is not None else self._pending
        if s is None:
            return {"version": 1, "epoch": self.epoch, "fresh": True}
        return {
            "version": 1, "fresh": False, "epoch": s["epoch"], "consumer": s["consumer"],
            "consumers": s["consumers"], "seq_len": self.seq_len, "seed": self.seed,
            "labels": None if self.labels is None else sorted(self.labels),
            "unit": s["unit"], "read": s["read"], "rng": s["rng"], "draws": s["draws"],
            "buffer": [a.copy() for a in s["buffer"]],
            "remainder": np.concatenate(s["rest"]) if s["rest"] else np.zeros(0, np.int64),
            "done": s["done"],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("version") != 1:
            raise ValueError("unknown reader state version")
        self.epoch = state["epoch"]
        self._live = None  # the loaded position replaces the one of any earlier pass
        if state["fresh"]:
            self._pending = None
            return
        if state["seq_len"] != self.seq_len or state["seed"] != self.seed:
            raise ValueError("state was saved with another seq_len or seed")
        if state.get("labels") != (None if self.labels is None else sorted(self.labels)):
            raise ValueError(f"state was saved with labels {state.get('labels')}, this reader has "
                             f"{None if self.labels is None else sorted(self.labels)}")
        self._pending = dict(state, buffer=list(state["buffer"]), rest=[np.asarray(state["remainder"])])

    # -- iteration

    def __iter__(self) -> Iterator:
        consumer, consumers = self._consumer()
        s = self._pending
        self._pending = None
        if s is not None and (s["consumer"], s["consumers"]) != (consumer, consumers):
            raise ValueError(f"state is for consumer {s['consumer']}/{s['consumers']}, "
                             f"this is {consumer}/{consumers}")
        if s is None:
            rng = np.random.default_rng([self.seed, self.epoch, consumer])
            s = {"epoch": self.epoch, "consumer": consumer, "consumers": consumers, "unit": 0, "read": 0,
                 "rng": rng.bit_generator.state, "draws": 0, "buffer": [], "rest": [], "done": False}
        self._live = s
        yield from self._run(s)
        self.epoch = s["epoch"] + 1
        self._live = None  # a finished epoch: state_dict() now points at the next one

    def _run(self, s: dict) -> Iterator:
        seq_len, torch_out = self.seq_len, self.as_torch
        if torch_out:
            import torch
        rest, count = s["rest"], sum(len(a) for a in s["rest"])
        eos = None if self.eos_id is None else np.array([self.eos_id], np.int64)
        if self.pad_id is not None:  # one document per sequence (CogView samples must not be packed)
            for tokens in self._shuffled(s):
                seq = np.full(seq_len, self.pad_id, np.int64)
                tokens = tokens[:seq_len]
                seq[:len(tokens)] = tokens
                self.stats["sequences"] += 1
                yield torch.from_numpy(seq) if torch_out else seq
            return
        for seq in self._cut(rest, count):  # sequences owed from the restored remainder
            yield torch.from_numpy(seq) if torch_out else seq
        count = sum(len(a) for a in rest)
        for tokens in self._shuffled(s):
            rest.append(tokens)
            count += len(tokens)
            if eos is not None:
                rest.append(eos)
                count += 1
            if count >= seq_len:
                for seq in self._cut(rest, count):
                    yield torch.from_numpy(seq) if torch_out else seq
                count = len(rest[0]) if rest else 0
        if not self.drop_last and count:
            seq = np.concatenate(rest).astype(np.int64)
            rest.clear()
            self.stats["sequences"] += 1
            yield torch.from_numpy(seq) if torch_out else seq

    def _cut(self, rest: list, count: int) -> Iterator[np.ndarray]:
        """Emit whole sequences from `rest`, leaving the remainder (one array) in `rest` at each yield."""
        n = self.seq_len
        if count < n:
            return
        flat = np.concatenate(rest, dtype=np.int64) if len(rest) > 1 else rest[0].astype(np.int64)
        full = (len(flat) // n) * n
        tail = flat[full:]
        rest.clear()
        for i in range(0, full, n):
            rest[:] = [flat[i + n:full], tail] if i + n < full else [tail]
            self.stats["sequences"] += 1
            yield flat[i:i + n]
        rest[:] = [tail] if len(tail) else []

    def _shuffled(self, s: dict) -> Iterator[np.ndarray]:
        """Samples through a shuffle buffer (webdataset's swap-out scheme), state kept in `s` at each yield."""
        buf, size = s["buffer"], self.shuffle_buffer
        rng = np.random.default_rng()
        rng.bit_generator.state = s["rng"]
        rand = rng.random(_RAND_BATCH)

        def pick() -> int:
            if s["draws"] >= _RAND_BATCH:
                s["rng"] = rng.bit_generator.state
                s["draws"] = 0
                rand[:] = rng.random(_RAND_BATCH)
            r = rand[s["draws"]]
            s["draws"] += 1
            return int(r * len(buf))

        for tokens in self._samples(s):
            if len(buf) < size:
                buf.append(tokens)
                continue
            if size == 0:
                yield tokens
                continue
            i = pick()
            buf[i], tokens = tokens, buf[i]
            yield tokens
        while buf:
            i = pick()
            buf[i], buf[-1] = buf[-1], buf[i]
            yield buf.pop()

    def _samples(self, s: dict) -> Iterator[np.ndarray]:
        """This consumer's samples in order; `s['unit']`/`s['read']` always count what was handed out."""
        if s["done"]:
            return
        units = assign(len(self.urls), s["consumers"], s["consumer"], self.shard_order(s["epoch"]))
        while s["unit"] < len(units):
            shard, stride, offset = units[s["unit"]]
            url = self.urls[shard]
            try:
                for key, tokens in iter_shard(url, skip=s["read"], labels=self.labels):
                    s["read"] += 1
                    if (s["read"] - 1) % stride == offset:
                        if tokens is None:  # not one of `labels`
                            self.stats["filtered"] += 1
                            continue
                        self.stats["samples"] += 1
                        yield tokens
            except (ShardError, OSError) as exc:
                if self.on_error == "raise":
                    raise ShardError(f"{url}: {exc}") if not isinstance(exc, ShardError) else exc
                self.stats["skipped_shards"] += 1
                self.stats["errors"].append(str(exc))
            self.stats["shards"] += 1
            s["unit"] += 1
            s["read"] = 0
        s["done"] = True


def iter_samples(source, *, split: str = "train") -> Iterator[tuple[str, str, np.ndarray]]:
    """(url, key, tokens) for every sample of every shard, in manifest order: for checks and tools."""
    for url in resolve_source(source, split):
        for key, tokens in iter_shard(url):
            yield url, key, tokens
