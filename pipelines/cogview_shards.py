"""CogView samples for `wudao shards --format cogview`: image-text WebDataset tars (from `wudao image-text`) ->
`[ROI1] caption [BASE] [BOI1] image codes [EOI1]` token ids (Ding et al. 2021, sec. 2.2), written by the same
deterministic shard writer as text shards (pipelines/shards_job.py).

The caption is tokenized with the project's text tokenizer and cut to `max_text_tokens`; the image (already
resized and cropped by the pipeline) is encoded by the VQ-VAE, loaded once per worker in `DoFn.setup()`, and its
grid of codes is taken row by row into the image-code range of the shared id space.
"""
from __future__ import annotations

import hashlib
import io
import logging
from typing import Any, Iterable

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from pipelines import progress
from shards.writer import encode_sample, split_of

LOG = logging.getLogger("wudao.shards")


class CogViewTokenizer:
    """Text tokenizer + VQ-VAE. Pickles as paths; `load()` builds the models (in the driver and in each worker)."""

    def __init__(self, tokenizer_dir: str, vq_path: str, max_text_tokens: int = 64):
        from tokenizer.text import tokenizer_hash
        from tokenizer.vocab import file_sha256

        if max_text_tokens < 1:
            raise ValueError("max_text_tokens must be >= 1")
        self.tokenizer_dir, self.vq_path, self.max_text_tokens = tokenizer_dir, vq_path, max_text_tokens
        self._text = self._vq = None
        text, vq = self.load()
        if vq.config.codebook_size > text.vocab.image_codes:
            raise ValueError(f"the VQ has {vq.config.codebook_size} codes but the id space reserves "
                             f"{text.vocab.image_codes}")
        self.vocab_size = len(text)
        self.resolution = vq.config.resolution
        self.image_codes = vq.config.grid ** 2
        digest = hashlib.sha256()
        for part in (tokenizer_hash(tokenizer_dir), file_sha256(vq_path), f"cogview:{max_text_tokens}"):
            digest.update(part.encode("utf-8"))
        self.hash = digest.hexdigest()

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_text": None, "_vq": None}

    def load(self):
        if self._text is None:
            from tokenizer.text import TextTokenizer
            from tokenizer.vq import VQVAE

            self._text = TextTokenizer.load(self.tokenizer_dir)
            self._vq = VQVAE.load(self.vq_path).eval()
        return self._text, self._vq

    def encode_pairs(self, captions: list[str], images: list[bytes]) -> list[list[int] | str]:
        """One id list per pair, or a drop reason (`image-undecodable`, `caption-empty`)."""
        import torch
        from PIL import Image

        from tokenizer.cogview import cogview_sample
        from tokenizer.vq_train import preprocess

        text, vq = self.load()
        tensors, positions, out = [], [], [None] * len(images)
        for i, data in enumerate(images):
            try:
                with Image.open(io.BytesIO(data)) as image:
                    image.load()
                    tensors.append(preprocess(image, self.resolution))
                positions.append(i)
            except Exception:
                out[i] = "image-undecodable"
        codes = vq.encode(torch.stack(tensors)).flatten(1).tolist() if tensors else []
        code_of = dict(zip(positions, codes))
        text_ids = text.encode_batch(captions)
        for i, ids in enumerate(text_ids):
            if out[i] is not None:
                continue
            ids = ids[: self.max_text_tokens]
            out[i] = cogview_sample(ids, code_of[i], text.vocab) if ids else "caption-empty"
        return out


class ReadImagePairs(beam.DoFn):
    """One image-text tar -> {"id", "source", "lang", "caption", "jpg"} per sample; unusable ones counted."""

    def process(self, metadata: fileio.FileMetadata) -> Iterable[dict[str, Any]]:
        from cleaners.image.record import ImageText
        from pipelines.readers.image_text import iter_image_text_file

        with FileSystems.open(metadata.path, compression_type=CompressionTypes.UNCOMPRESSED) as stream:
            for item in iter_image_text_file(stream, metadata.path):
                if not isinstance(item, ImageText) or not item.image:
                    progress.counter("shards|pairs-skipped").inc()
                    continue
                record_id = str(item.meta.get("id") or item.key.rsplit("#", 1)[-1])
                progress.counter("shards|pairs-read").inc()
                yield {"id": record_id, "source": str(item.meta.get("source") or item.source),
                       "lang": str(item.meta.get("lang", "")), "caption": item.caption, "jpg": item.image}


class TokenizeCogView(beam.DoFn):
    """A batch of pairs -> (split, sample) with the CogView ids; models loaded once per worker."""

    def __init__(self, tokenizer: CogViewTokenizer, val_fraction: float):
        from shards.writer import dtype_for

        self.tokenizer, self.val_fraction = tokenizer, val_fraction
        self.dtype = dtype_for(tokenizer.vocab_size)

    def setup(self) -> None:
        self.tokenizer.load()

    def process(self, rows: list[dict[str, Any]]):
        encoded = self.tokenizer.encode_pairs([r["caption"] for r in rows], [r["jpg"] for r in rows])
        for row, ids in zip(rows, encoded):
            if isinstance(ids, str):
                progress.counter(f"shards|dropped-{ids}").inc()
                continue
            progress.counter("shards|tokens").inc(len(ids))
            yield split_of(row["id"], self.val_fraction), encode_sample(row, ids, self.dtype)
