"""The image-text recipe's `alignment` step: how well each caption matches its image, and a floor on it.

A trained alignment model folder (`cleaners.image.alignment_train`: `model.pt` + its SentencePiece tokenizer) is
loaded once per worker (`setup`). The Beam layer hands records over in batches (`score_batch`: one forward pass
per batch, images decoded from the record's training JPEG and prepared as CLIP does); `apply` then keeps or drops
each record on its own score: below `min_score` is `alignment-below-min-score`. The score (cosine similarity,
-1..1, rounded to 4 places) goes into the sample's `.json` as `alignment_score`, and its tenth (`0.2-0.3`,
`cleaners.histogram.cosine_bucket`) into stats.json's histograms. DataComp's CLIP-score filter (Gadre et al.
2023) keeps a share of the pool rather than a fixed score: `min_percentile` (0-100) drops the pairs under that
percentile of the run's scores, computed by the Beam layer from every score (stage `alignment_percentile`).

Strength: a kept pair is `strong` when its score is at least `strong_score`, else `weak` (`strength` in the .json
and a histogram); stats.json counts each tier with the caption's kind, `tier:strong/description`,
`tier:weak/alt`, ... The default 0.28 is LAION-5B's cut for English pairs under OpenAI's ViT-B/32 (Schuhmann et
al. 2022); another model scores on its own scale, so read the run's `alignment_score` histogram and set it. The
kind does not move the bar: a description that does not match its image is as weak as any, and WuDaoMM's strong
pairs are not all descriptions (30 M of its 50 M).
"""
from __future__ import annotations

import io
import os
from typing import Any

from cleaners.histogram import cosine_bucket
from cleaners.step import Counted, Step, register

SCORE_FIELD = "alignment_score"
STRENGTH_FIELD, STRONG, WEAK = "strength", "strong", "weak"
REASON_LOW = "alignment-below-min-score"
REASON_PERCENTILE = "alignment-below-percentile"
REASON_UNREADABLE = "alignment-image-unreadable"
MODEL_FILE = "model.pt"


@register("alignment")
class AlignmentScore(Step):
    """Score each pair with a trained dual encoder; drop those under `min_score` (see module docstring)."""

    kind = "image_text"

    def __init__(self, *, model_path: str, min_score: float | None = None, min_percentile: float | None = None,
                 strong_score: float = 0.28, batch_size: int = 64, threads: int = 1):
        if not model_path:
            raise ValueError("alignment needs model_path: a folder written by `wudao alignment train`")
        if min_score is not None and not -1.0 <= float(min_score) <= 1.0:
            raise ValueError("min_score is a cosine similarity: -1..1")
        if min_percentile is not None and not 0.0 <= float(min_percentile) < 100.0:
            raise ValueError("min_percentile must be in [0, 100)")
        if not -1.0 <= float(strong_score) <= 1.0:
            raise ValueError("strong_score is a cosine similarity: -1..1")
        if int(batch_size) < 1 or int(threads) < 1:
            raise ValueError("batch_size and threads must be >= 1")
        self.model_path, self.batch_size, self.threads = str(model_path), int(batch_size), int(threads)
        self.min_score = None if min_score is None else float(min_score)
        self.min_percentile = None if min_percentile is None else float(min_percentile)
        self.strong_score = float(strong_score)
        self._model: Any = None
        self._tokenizer: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_model": None, "_tokenizer": None}

    def setup(self) -> None:
        if self._model is not None:
            return
        import torch

        from cleaners.image.alignment import DualEncoder
        from tokenizer.text import TextTokenizer

        torch.set_num_threads(self.threads)
        self._model = DualEncoder.load(os.path.join(self.model_path, MODEL_FILE))
        self._tokenizer = TextTokenizer.load(self.model_path)

    def score_batch(self, records: list[dict[str, Any]]) -> None:
        """Set `alignment_score` on each record (None when its image cannot be decoded), one forward pass."""
        import torch
        from PIL import Image

        from cleaners.image.alignment import preprocess
        from cleaners.image.alignment_train import encode_captions

        self.setup()
        size = self._model.config.image_size
        pixels, readable = [], []
        for record in records:
            try:
                with Image.open(io.BytesIO(record["jpg"])) as image:
                    pixels.append(preprocess(image, size))
                readable.append(record)
            except Exception:  # noqa: BLE001 - counted as a drop by apply
                record[SCORE_FIELD] = None
        if not readable:
            return
        ids, lengths = encode_captions(self._tokenizer, [r["caption"] for r in readable],
                                       self._model.config.context_length)
        with torch.no_grad():
            image_emb, text_emb = self._model(torch.stack(pixels), ids, lengths)
        for record, score in zip(readable, (image_emb * text_emb).sum(-1).tolist()):
            record[SCORE_FIELD] = round(float(score), 4)

    def apply(self, record: dict[str, Any]) -> Any:
        if SCORE_FIELD not in record:
            self.score_batch([record])
        score = record[SCORE_FIELD]
        if score is None:
            return REASON_UNREADABLE
        hists = {SCORE_FIELD: cosine_bucket(score)}
        if self.min_score is not None and score < self.min_score:
            return Counted(REASON_LOW, hists=hists)
        record[STRENGTH_FIELD] = STRONG if score >= self.strong_score else WEAK
        tier = f"{record[STRENGTH_FIELD]}/{record.get('caption_kind') or 'unknown'}"
        return Counted(record, {f"tier:{tier}": 1}, hists={**hists, STRENGTH_FIELD: record[STRENGTH_FIELD]})


def percentile_threshold(histogram: dict[int, int], percentile: float, bins: int) -> float:
    """The score under which `percentile`% of the run's pairs fall, from counts per bin of width 2 / `bins` over
    [-1, 1] (bin i holds scores in [-1 + 2i/bins, -1 + 2(i+1)/bins)): the lower edge of the bin where the
    cumulative count first exceeds the share, so at most one bin's width (0.002 for 1000 bins) from exact."""
    total = sum(histogram.values())
    if total == 0:
        return -1.0
    wanted = total * percentile / 100.0
    seen = 0
    for index in sorted(histogram):
        if seen + histogram[index] > wanted:
            return -1.0 + 2.0 * index / bins
        seen += histogram[index]
    return 1.0


def score_bin(score: float, bins: int) -> int:
    return min(bins - 1, max(0, int((score + 1.0) / 2.0 * bins)))
