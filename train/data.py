"""Batches for training, streamed from our shards (shards/reader.py), resumable.

GLM: the reader packs documents (with `<|endoftext|>` between them) into windows a little shorter than the
model's `seq_len`, and `tokenizer.glm.GLMMasking` turns each batch of windows into blank-infilling samples (one
objective per batch, as GLM does). The masking rng of batch `b` is seeded by (seed, rank, b), so a resumed run
draws the same masks as an uninterrupted one without saving any rng state.
CogView: one sample per sequence (`pad_id` mode: samples are never packed), padded to `seq_len`; with a
`tokenizer.cogview.CaptionMix` as the batch builder, a share of them become image-to-text samples (rng seeded by
(seed, rank, batch number) as GLM's masks).
"""
from __future__ import annotations

import os
from collections import deque
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from shards.reader import StreamingShards
from tokenizer.vocab import Vocab

#: GLM windows leave room for the mask tokens: n tokens with k spans take n + 2k positions (tokenizer/glm.py)
GLM_WINDOW = 0.85


def load_vocab(shards: str, tokenizer_dir: str | None = None) -> Vocab:
    """The id space: `vocab.json` of `tokenizer_dir`, else the copy `wudao shards` leaves beside the shards."""
    for folder in (tokenizer_dir, shards if os.path.isdir(shards) else os.path.dirname(shards)):
        if folder and os.path.isfile(os.path.join(folder, "vocab.json")):
            return Vocab.load(folder)
    raise FileNotFoundError(f"no vocab.json in {tokenizer_dir or shards}: pass --tokenizer DIR")


def glm_masking(vocab: Vocab, shards: str, tokenizer_dir: str | None = None,
                objectives: tuple[float, float, float] = (0.5, 0.3, 0.2)):
    """GLMMasking mixing the [MASK] / [sMASK] / [gMASK] objectives by `objectives`, with sentence ends from the
    tokenizer model when one is at hand (without one the sentence share goes to the token-level objective), and
    `<|endoftext|>` as the document separator no span crosses."""
    from tokenizer.glm import GLMMasking, sentence_end_ids

    mask, sentence, gmask = objectives
    eot = frozenset({vocab.token_id("<|endoftext|>")})   # packed documents' separator: spans stay inside documents
    folder = tokenizer_dir or (shards if os.path.isdir(shards) else os.path.dirname(shards))
    if os.path.isfile(os.path.join(folder, "tokenizer.model")):
        from tokenizer.text import TextTokenizer

        ends = sentence_end_ids(TextTokenizer.load(folder)) - eot
        return GLMMasking(vocab, sentence_end_ids=frozenset(ends), boundary_ids=eot,
                          ratios={"mask": mask, "sentence": sentence, "gmask": gmask})
    return GLMMasking(vocab, ratios={"mask": mask + sentence, "sentence": 0.0, "gmask": gmask}, boundary_ids=eot)


def make_reader(kind: str, shards: str, vocab: Vocab, seq_len: int, *, split: str = "train", seed: int = 0,
                rank: int = 0, world_size: int = 1, shuffle_buffer: int = 1000) -> StreamingShards:
    if kind == "glm":
        return StreamingShards(shards, seed=seed, shuffle_buffer=shuffle_buffer, seq_len=int(seq_len * GLM_WINDOW),
                               rank=rank, world_size=world_size, split=split,
                               eos_id=vocab.token_id("<|endoftext|>"))
    if kind == "cogview":
        return StreamingShards(shards, seed=seed, shuffle_buffer=shuffle_buffer, seq_len=seq_len, rank=rank,
                               world_size=world_size, split=split, pad_id=vocab.token_id("[PAD]"))
    raise ValueError(f"unknown model kind {kind!r} (glm or cogview)")


def batches(kind: str, reader: StreamingShards, masking, batch_size: int, seq_len: int, *, seed: int, rank: int,
            first_batch: int = 0) -> Iterator[dict[str, torch.Tensor]]:
    """Endless batches (epoch after epoch); batch numbers start at `first_batch` (resume)."""
    number = first_batch
    for window in windows(reader, batch_size):
        yield to_tensors(_batch(kind, window, masking, seq_len, seed, rank, number))
        number += 1


def windows(reader: StreamingShards, batch_size: int) -> Iterator[list[np.ndarray]]:
    """The reader's sequences, `batch_size` at a time, epoch after epoch (a remainder smaller than a batch is
    dropped at each epoch's end)."""
    while True:
        window: list[np.ndarray] = []
        produced = False
        for seq in reader:
            window.append(seq)
            if len(window) < batch_size:
                continue
            yield window
            window, produced = [], True
        if not produced:
            raise ValueError(f"the shards hold fewer than one batch of {batch_size} sequences")


class BatchStream:
    """Endless training batches numbered from `first_batch`, the GLM masking done `workers` processes away.

    With `workers` > 0 the windows of the next `depth` batches are read here and masked in a process pool while
    the model trains on the current batch (masking a 64 x 512 GLM batch is tens of milliseconds of Python). The
    reader is then ahead of the batches handed out: `pending()` gives the windows read but not yet handed out,
    which a checkpoint saves beside the reader's state and a resumed stream (`pending=`) hands out first, so a
    resumed run gets exactly the batches an uninterrupted one gets. Masks depend on (seed, rank, batch number)
    only, so they are the same wherever they are drawn. With `workers=0` everything runs on this thread."""

    def __init__(self, kind: str, reader: StreamingShards, masking, batch_size: int, seq_len: int, *, seed: int,
                 rank: int, first_batch: int = 0, workers: int = 0, depth: int = 2,
                 pending: Sequence[Sequence[np.ndarray]] = ()):
        self._args = (kind, masking, seq_len, seed, rank)
        self._next_number = first_batch
        self._windows = windows(reader, batch_size)
        self._queue: deque = deque()
        self._depth = max(1, depth)
        self._pool = None
        if workers > 0 and kind == "glm":
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            self._pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_set_worker_masking, initargs=(masking,))
        for window in pending:
            self._push([np.asarray(seq) for seq in window])

    def _push(self, window: list[np.ndarray]) -> None:
        number, self._next_number = self._next_number, self._next_number + 1
        kind, masking, seq_len, seed, rank = self._args
        if self._pool is None:
            self._queue.append((window, None))
        else:
            self._queue.append((window, self._pool.submit(_worker_batch, window, seq_len, seed, rank, number)))

    def __iter__(self) -> BatchStream:
        return self

    def __next__(self) -> dict[str, torch.Tensor]:
        while len(self._queue) < (self._depth if self._pool is not None else 1):
            self._push(next(self._windows))
        window, future = self._queue.popleft()
        if future is not None:
            return to_tensors(future.result())
        kind, masking, seq_len, seed, rank = self._args
        number = self._next_number - len(self._queue) - 1
        return to_tensors(_batch(kind, window, masking, seq_len, seed, rank, number))

    def pending(self) -> list[list[np.ndarray]]:
        """Windows read from the reader but not handed out yet, oldest first."""
        return [window for window, _ in self._queue]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


_WORKER_MASKING = None


def _set_worker_masking(masking) -> None:
    global _WORKER_MASKING
    _WORKER_MASKING = masking


def _worker_batch(window: list[np.ndarray], seq_len: int, seed: int, rank: int, number: int) -> dict[str, np.ndarray]:
    return _batch("glm", window, _WORKER_MASKING, seq_len, seed, rank, number)


def to_tensors(batch: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {name: torch.from_numpy(np.asarray(value)) for name, value in batch.items()}


def _batch(kind: str, window: list[np.ndarray], masking, seq_len: int, seed: int, rank: int,
           number: int) -> dict[str, np.ndarray]:
    """Batch `number` of this rank as numpy arrays: CogView's stacked ids (some turned into captions by a
    `CaptionMix`), or GLM's masked samples; both draw from the rng (seed, rank, number)."""
    rng = np.random.default_rng([seed, rank, number])
    if kind == "cogview":
        return {"ids": np.stack(window) if masking is None else masking.build_batch(window, rng)}
    sample = masking.build_batch(window, rng, max_len=seq_len)
    return {name: np.asarray(sample[name]) for name in ("input_ids", "position_ids", "sep", "targets", "loss_mask")}


def to_device(batch: dict[str, torch.Tensor], device: str) -> dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in batch.items()}


def reader_state_to_tensors(state: Any) -> Any:
    """The reader's state with numpy arrays as tensors, so a checkpoint loads with `weights_only=True`."""
    if isinstance(state, np.ndarray):
        return {"__ndarray__": torch.from_numpy(np.ascontiguousarray(state)), "dtype": str(state.dtype)}
    if isinstance(state, dict):
        return {k: reader_state_to_tensors(v) for k, v in state.items()}
    if isinstance(state, (list, tuple)):
        return [reader_state_to_tensors(v) for v in state]
    if isinstance(state, np.generic):
        return state.item()
    return state


def reader_state_from_tensors(state: Any) -> Any:
    if isinstance(state, dict) and "__ndarray__" in state:
        return state["__ndarray__"].numpy().astype(state["dtype"])
    if isinstance(state, dict):
        return {k: reader_state_from_tensors(v) for k, v in state.items()}
    if isinstance(state, list):
        return [reader_state_from_tensors(v) for v in state]
    return state
