"""Batches for training, streamed from our shards (shards/reader.py), resumable.

GLM: the reader packs documents (with `<|endoftext|>` between them) into windows a little shorter than the
model's `seq_len`, and `tokenizer.glm.GLMMasking` turns each batch of windows into blank-infilling samples (one
objective per batch, as GLM does). The masking rng of batch `b` is seeded by (seed, rank, b), so a resumed run
draws the same masks as an uninterrupted one without saving any rng state.
CogView: one sample per sequence (`pad_id` mode: samples are never packed), padded to `seq_len`.
"""
from __future__ import annotations

import os
from typing import Any, Iterator

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
    while True:
        window: list[np.ndarray] = []
        produced = False
        for seq in reader:
            window.append(seq)
            if len(window) < batch_size:
                continue
            yield _batch(kind, window, masking, seq_len, seed, rank, number)
            number += 1
            window, produced = [], True
        if not produced:
            raise ValueError(f"the shards hold fewer than one batch of {batch_size} sequences")


def _batch(kind: str, window: list[np.ndarray], masking, seq_len: int, seed: int, rank: int,
           number: int) -> dict[str, torch.Tensor]:
    if kind == "cogview":
        return {"ids": torch.from_numpy(np.stack(window))}
    rng = np.random.default_rng([seed, rank, number])
    sample = masking.build_batch(window, rng, max_len=seq_len)
    return {name: torch.from_numpy(np.asarray(sample[name])) for name in
            ("input_ids", "position_ids", "sep", "targets", "loss_mask")}


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
