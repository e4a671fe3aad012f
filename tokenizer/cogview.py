"""CogView text-to-image training samples in the shared id space.

Layout (Ding et al. 2021, sec. 2.2 and Fig. 3): `[ROI1] text [BASE] [BOI1] image codes [EOI1]`, the image codes
being the VQ-VAE grid flattened row-major (32x32 = 1024 codes for 256x256 images), each mapped to
`vocab.image_code_id(k)`. Errors are ValueError with a short reason, for a pipeline stage to count and report.

The image-to-text direction (captioning, which CogView's self-reranking scores with, sec. 4.2) uses the second
set of region tokens: `[BOI2] image codes [EOI2] [ROI2] text <|endoftext|>`, as long as the text-to-image sample
of the same pair; `CaptionMix` turns a share of a batch's samples into it, so one model learns both directions.
"""
from __future__ import annotations

import numbers
from typing import Sequence

import numpy as np

from tokenizer.vocab import Vocab

ROI, BASE, BOI, EOI = "[ROI1]", "[BASE]", "[BOI1]", "[EOI1]"


def _as_int_list(values, what: str) -> list[int]:
    if hasattr(values, "reshape") and hasattr(values, "tolist"):  # numpy arrays and torch tensors, any shape
        values = values.reshape(-1).tolist()
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            raise ValueError(f"{what} must be integers, got {type(v).__name__}")
        out.append(int(v))
    return out


def cogview_sample(text_ids: Sequence[int], image_codes, vocab: Vocab, expected_codes: int | None = None) -> list[int]:
    """`[ROI1] text [BASE] [BOI1] codes [EOI1]`; `image_codes` are raw codes 0..vocab.image_codes-1 (a flat
    sequence, or an array/tensor grid flattened row-major); `expected_codes` (e.g. 1024) checks the count."""
    text = _as_int_list(text_ids, "text ids")
    codes = _as_int_list(image_codes, "image codes")
    if not text:
        raise ValueError("empty text")
    bad_text = [t for t in text if not vocab.is_text(t)]
    if bad_text:
        raise ValueError(f"text id {bad_text[0]} is not a text piece (0..{vocab.text_vocab_size - 1})")
    if not codes:
        raise ValueError("no image codes")
    if expected_codes is not None and len(codes) != expected_codes:
        raise ValueError(f"{len(codes)} image codes, expected {expected_codes}")
    bad_code = [k for k in codes if not 0 <= k < vocab.image_codes]
    if bad_code:
        raise ValueError(f"image code {bad_code[0]} outside 0..{vocab.image_codes - 1}")
    offset = vocab.image_code_offset
    return ([vocab.token_id(ROI)] + text + [vocab.token_id(BASE), vocab.token_id(BOI)]
            + [offset + k for k in codes] + [vocab.token_id(EOI)])


def split_cogview_sample(ids: Sequence[int], vocab: Vocab) -> tuple[list[int], list[int]]:
    """Inverse of `cogview_sample`: (text ids, raw image codes); ValueError naming the first layout fault."""
    ids = _as_int_list(ids, "ids")
    roi, base, boi, eoi = (vocab.token_id(t) for t in (ROI, BASE, BOI, EOI))
    if len(ids) < 6:
        raise ValueError(f"sample of {len(ids)} ids is too short")
    if ids[0] != roi:
        raise ValueError("sample does not start with [ROI1]")
    if ids[-1] != eoi:
        raise ValueError("sample does not end with [EOI1]")
    try:
        b = ids.index(base)
    except ValueError:
        raise ValueError("no [BASE] in sample") from None
    if b + 1 >= len(ids) or ids[b + 1] != boi:
        raise ValueError("[BASE] is not followed by [BOI1]")
    text, codes = ids[1:b], ids[b + 2:-1]
    if not text:
        raise ValueError("empty text")
    if not codes:
        raise ValueError("no image codes")
    bad_text = [t for t in text if not vocab.is_text(t)]
    if bad_text:
        raise ValueError(f"id {bad_text[0]} in the text part is not a text piece")
    bad_code = [t for t in codes if not vocab.is_image_code(t)]
    if bad_code:
        raise ValueError(f"id {bad_code[0]} in the image part is not an image code")
    return text, [t - vocab.image_code_offset for t in codes]


BOI2, EOI2, ROI2, TEXT_END = "[BOI2]", "[EOI2]", "[ROI2]", "<|endoftext|>"


def caption_prefix(image_codes, vocab: Vocab) -> list[int]:
    """`[BOI2] codes [EOI2] [ROI2]`: the context a caption is scored or generated after."""
    codes = _as_int_list(image_codes, "image codes")
    bad_code = [k for k in codes if not 0 <= k < vocab.image_codes]
    if not codes or bad_code:
        raise ValueError(f"image codes must be a non-empty list in 0..{vocab.image_codes - 1}")
    offset = vocab.image_code_offset
    return [vocab.token_id(BOI2)] + [offset + k for k in codes] + [vocab.token_id(EOI2), vocab.token_id(ROI2)]


def caption_sample(text_ids: Sequence[int], image_codes, vocab: Vocab) -> list[int]:
    """`[BOI2] codes [EOI2] [ROI2] text <|endoftext|>` (image-to-text)."""
    text = _as_int_list(text_ids, "text ids")
    if not text or not all(vocab.is_text(t) for t in text):
        raise ValueError("text must be a non-empty list of text-piece ids")
    return caption_prefix(image_codes, vocab) + text + [vocab.token_id(TEXT_END)]


class CaptionMix:
    """Turns each sample of a CogView batch into the caption layout with probability `share` (drawn from the
    batch's rng, so a resumed run draws the same). Samples are `[PAD]`-padded rows of equal length."""

    def __init__(self, vocab: Vocab, share: float):
        if not 0.0 <= share <= 1.0:
            raise ValueError("caption share must be in [0, 1]")
        self.vocab, self.share, self.pad = vocab, float(share), vocab.token_id("[PAD]")

    def build_batch(self, window, rng) -> np.ndarray:
        rows = np.stack(window)
        for r in np.flatnonzero(rng.random(len(rows)) < self.share):
            ids = rows[r]
            n = len(ids) - int(np.argmax(ids[::-1] != self.pad)) if (ids != self.pad).any() else 0
            text, codes = split_cogview_sample(ids[:n], self.vocab)
            rows[r, :n] = caption_sample(text, codes, self.vocab)
        return rows
