"""Resumable streaming reader for tokenized WebDataset shards.

`StreamingShards` streams `<key>.npy` token arrays out of tar shards, splits shards across nodes and
DataLoader workers, shuffles shard order and samples with a seed, and packs documents into fixed-length
sequences. Its `state_dict()` lets a restarted job continue with exactly the next sequence.

Sources: the shard layout and the shuffle buffer follow webdataset (tar shards as plain iterators,
`wds.shuffle(bufsize)`). A local shard with a token index (shards/index.py) is read as numpy views of its memory
map, as litdata reads its chunks; any other through `shards.tar.iter_tar`, the fast path of the project's one tar
module, and `shards.sample.npy_array`. Both give the same samples in the same positions, so a state saved on one
path resumes on the other (bench/reader_throughput.py measures both against litdata).
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from shards.index import label_hash, open_index
from shards.manifest import ManifestError, name_problem
from shards.sample import ShardError, npy_array, sample_label, sample_members
from shards.tar import TarError, iter_tar

try:  # torch is optional: without it the reader is a plain iterable
    from torch.utils.data import IterableDataset as _Base
    from torch.utils.data import get_worker_info as _worker_info
except ImportError:  # pragma: no cover - exercised only without torch
    _Base = object

    def _worker_info():
        return None

_RAND_BATCH = 4096
_SHA256 = re.compile("[0-9a-f]{64}")
_BATCH = 1024        # samples handed from one stage of the stream to the next at a time
_PACK_PARTS = 128    # arrays (documents and eos) joined into one int64 block when packing


# ---------------------------------------------------------------- sources and opening


def resolve_source(source: str | os.PathLike | Sequence[str], split: str = "train") -> list[str]:
    """Shard urls from a manifest path, a directory holding manifest.json, or a list of urls/paths.

    Urls and `pipe:` commands are taken only from a list the caller passes; names inside a manifest must be
    plain file names in the manifest's folder, else ManifestError (see `shards.manifest.name_problem`)."""
    return [url for url, _ in resolve_shards(source, split)]


def resolve_shards(source: str | os.PathLike | Sequence[str], split: str = "train"
                   ) -> list[tuple[str, str | None]]:
    """(url, sha256 from the manifest or None) for each shard of `resolve_source`."""
    if isinstance(source, (list, tuple)):
        urls = [str(u) for u in source]
        if not urls:
            raise ValueError("empty list of shards")
        return [(url, None) for url in urls]
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


def _manifest_urls(raw: bytes, base: str, split: str, where: str) -> list[tuple[str, str | None]]:
    """(`base/name`, sha256) for each shard of `split` in the manifest text `raw`; a malformed manifest is
    refused."""
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
            sha = entry.get("sha256")
            names.append((entry["name"], sha if isinstance(sha, str) and _SHA256.fullmatch(sha) else None))
    if not names:
        raise ManifestError(f"{where}: no shards with split={split!r}")
    return [(f"{base}/{name}", sha) for name, sha in names]


def _open(url: str):
    """Open a shard for binary streaming: local path, `pipe:cmd`, or any fsspec url (http, s3, gs, memory...)."""
    if url.startswith("pipe:"):
        from webdataset.gopen import gopen

        return gopen(url, "rb")
    if "://" in url and not url.startswith("file://"):
        import fsspec

        return fsspec.open(url, "rb").open()
    return open(url.removeprefix("file://"), "rb", buffering=1 << 20)


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


def _iter_labeled(url: str, skip: int, labels: frozenset[str]) -> Iterator[tuple[str, np.ndarray | None]]:
    with _open(url) as f:
        try:
            for i, (key, npy, meta, _) in enumerate(sample_members(f, url)):
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
                 labels: Sequence[str] | None = None, dtype: str | np.dtype = "int64"):
        if seq_len < 1 or shuffle_buffer < 0 or not 0 <= rank < world_size:
            raise ValueError("need seq_len >= 1, shuffle_buffer >= 0 and 0 <= rank < world_size")
        if on_error not in ("raise", "skip"):
            raise ValueError("on_error must be 'raise' or 'skip'")
        if labels is not None and (isinstance(labels, str) or not labels
                                   or not all(isinstance(x, str) for x in labels)):
            raise ValueError(f"labels must be a non-empty list of strings, got {labels!r:.80}")
        self.labels = None if labels is None else frozenset(labels)
        self.dtype = np.dtype(dtype)
        if self.dtype.kind not in "iu":
            raise ValueError(f"dtype must be an integer type, got {self.dtype}")
        for name, special in (("eos_id", eos_id), ("pad_id", pad_id)):
            if special is not None and not np.can_cast(np.min_scalar_type(special), self.dtype):
                raise ValueError(f"{name} {special} does not fit dtype {self.dtype}")
        shards = resolve_shards(source, split)
        self.urls = [url for url, _ in shards]
        self._sha256 = [sha for _, sha in shards]
        self.seed, self.shuffle_buffer, self.seq_len = seed, shuffle_buffer, seq_len
        self.rank, self.world_size, self.eos_id, self.epoch = rank, world_size, eos_id, epoch
        self.drop_last, self.as_torch, self.on_error = drop_last, as_torch, on_error
        self.pad_id = pad_id
        self.stats = {"shards": 0, "indexed_shards": 0, "samples": 0, "sequences": 0, "skipped_shards": 0,
                      "filtered": 0, "errors": []}
        self._batch = _BATCH if pad_id is None else 1  # unpacked: every document is a yield, state per document
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
        seq_len = self.seq_len
        if self.as_torch:
            import torch
        out = torch.from_numpy if self.as_torch else None
        rest = s["rest"]
        eos = None if self.eos_id is None else np.array([self.eos_id], self.dtype)
        if self.pad_id is not None:  # one document per sequence (CogView samples must not be packed)
            for docs in self._shuffled(s):
                for tokens in docs:
                    seq = np.full(seq_len, self.pad_id, self.dtype)
                    np.copyto(seq[:len(tokens)], tokens[:seq_len], casting="safe")
                    self.stats["sequences"] += 1
                    yield seq if out is None else out(seq)
            return
        count = sum(map(len, rest))
        yield from self._cut(rest, count, out)  # sequences owed from the restored remainder
        count = sum(map(len, rest))
        for docs in self._shuffled(s):
            count += sum(map(len, docs))
            if eos is not None:
                docs = [part for tokens in docs for part in (tokens, eos)]
                count += len(docs) // 2
            rest.extend(docs)
            if count >= seq_len:
                yield from self._cut(rest, count, out)
                count = sum(map(len, rest))
        if not self.drop_last and count:
            seq = np.concatenate(rest, dtype=self.dtype, casting="safe")
            rest.clear()
            self.stats["sequences"] += 1
            yield seq if out is None else out(seq)

    def _cut(self, rest: list, count: int, out: Any) -> Iterator:
        """Emit whole sequences (passed through `out` unless None) from the arrays in `rest` (`count` tokens in
        all) until fewer than `seq_len` tokens are left; at each yield `rest` holds exactly the tokens not yet
        yielded. Arrays are joined `_PACK_PARTS` at a time (more if a sequence needs more): a small block
        stays in the CPU cache."""
        n, stats = self.seq_len, self.stats
        while count >= n:
            k = min(len(rest), _PACK_PARTS)
            got = sum(map(len, rest[:k]))
            while got < n:
                got += len(rest[k])
                k += 1
            flat = np.concatenate(rest[:k], dtype=self.dtype, casting="safe")
            full = (got // n) * n
            rest[:k] = [flat]
            for i in range(0, full, n):
                rest[0] = flat[i + n:]
                stats["sequences"] += 1
                yield flat[i:i + n] if out is None else out(flat[i:i + n])
            if not len(rest[0]):
                del rest[0]
            count -= full

    def _shuffled(self, s: dict) -> Iterator[list[np.ndarray]]:
        """Samples through a shuffle buffer (webdataset's swap-out scheme), a batch at a time; at each yield the
        buffer, the random state and `s['read']` account for every sample handed on (the caller packs a whole
        batch before it yields a sequence, so a saved state is always exact)."""
        buf, size = s["buffer"], self.shuffle_buffer
        rng = np.random.default_rng()
        rng.bit_generator.state = s["rng"]
        rand = rng.random(_RAND_BATCH)
        draws = s["draws"]
        for batch in self._samples(s):
            if size == 0:
                yield batch
                continue
            out, j = [], 0
            if len(buf) < size:  # filling: nothing comes out yet
                j = size - len(buf)
                buf.extend(batch[:j])
            while j < len(batch):  # steady state: each sample swaps with a random one of the full buffer
                if draws >= _RAND_BATCH:
                    s["rng"], draws = rng.bit_generator.state, 0
                    rand = rng.random(_RAND_BATCH)
                m = min(len(batch) - j, _RAND_BATCH - draws)
                for tokens, i in zip(batch[j:j + m], (rand[draws:draws + m] * size).astype(np.intp).tolist()):
                    out.append(buf[i])
                    buf[i] = tokens
                j, draws = j + m, draws + m
            s["draws"] = draws
            if out:
                yield out
        while buf:
            out = []
            while buf and len(out) < self._batch:
                if draws >= _RAND_BATCH:
                    s["rng"], draws = rng.bit_generator.state, 0
                    rand = rng.random(_RAND_BATCH)
                i = int(rand[draws] * len(buf))
                draws += 1
                buf[i], buf[-1] = buf[-1], buf[i]
                out.append(buf.pop())
            s["draws"] = draws
            yield out

    def _samples(self, s: dict) -> Iterator[list[np.ndarray]]:
        """This consumer's samples in order, in batches; at each yield `s['unit']`/`s['read']` count what was
        handed out. A local shard with a valid token index (shards/index.py) is read through its memory map, any
        other through the tar reader; both give the same samples in the same positions."""
        if s["done"]:
            return
        units = assign(len(self.urls), s["consumers"], s["consumer"], self.shard_order(s["epoch"]))
        while s["unit"] < len(units):
            shard, stride, offset = units[s["unit"]]
            url = self.urls[shard]
            try:
                index = open_index(url.removeprefix("file://"), self._sha256[shard]) if _is_local(url) else None
                if isinstance(index, str):
                    index = None
                if index is not None:
                    self.stats["indexed_shards"] += 1
                    yield from self._indexed_batches(index, s, stride, offset)
                else:
                    yield from self._tar_batches(url, s, stride, offset)
            except (ShardError, OSError) as exc:
                if self.on_error == "raise":
                    raise ShardError(f"{url}: {exc}") if not isinstance(exc, ShardError) else exc
                self.stats["skipped_shards"] += 1
                self.stats["errors"].append(str(exc))
            self.stats["shards"] += 1
            s["unit"] += 1
            s["read"] = 0
        s["done"] = True

    def _indexed_batches(self, index, s: dict, stride: int, offset: int) -> Iterator[list[np.ndarray]]:
        """Views of this consumer's samples of an indexed shard, from position `s['read']` on."""
        total = len(index.starts)
        wanted = None if self.labels is None else np.array([label_hash(x) for x in self.labels], np.int64)
        while s["read"] < total:
            lo = s["read"]
            hi = min(total, lo + self._batch * stride)
            take = np.arange(lo + (offset - lo) % stride, hi, stride)
            if wanted is not None:
                keep = np.isin(index.labels[take], wanted)
                self.stats["filtered"] += len(take) - int(keep.sum())
                take = take[keep]
            tokens = index.tokens
            batch = [tokens[a:b] for a, b in zip(index.starts[take].tolist(), index.ends[take].tolist())]
            s["read"] = hi
            self.stats["samples"] += len(batch)
            if batch:
                yield batch

    def _tar_batches(self, url: str, s: dict, stride: int, offset: int) -> Iterator[list[np.ndarray]]:
        """This consumer's samples of a shard read through the tar reader, from position `s['read']` on; the
        samples read before a bad member are handed on before its error."""
        batch: list[np.ndarray] = []
        try:
            for _, tokens in iter_shard(url, skip=s["read"], labels=self.labels):
                s["read"] += 1
                if (s["read"] - 1) % stride == offset:
                    if tokens is None:  # not one of `labels`
                        self.stats["filtered"] += 1
                        continue
                    self.stats["samples"] += 1
                    batch.append(tokens)
                    if len(batch) == self._batch:
                        yield batch
                        batch = []
        except (ShardError, OSError):
            if batch:
                yield batch
            raise
        if batch:
            yield batch


def _is_local(url: str) -> bool:
    return url.startswith("file://") or ("://" not in url and not url.startswith("pipe:"))


def iter_samples(source, *, split: str = "train") -> Iterator[tuple[str, str, np.ndarray]]:
    """(url, key, tokens) for every sample of every shard, in manifest order: for checks and tools."""
    for url in resolve_source(source, split):
        for key, tokens in iter_shard(url):
            yield url, key, tokens
