"""The image-text recipe's `alignment` step: how well each caption matches its image, and a floor on it.

A trained alignment model folder (`cleaners.image.alignment_train`: `model.pt` + its SentencePiece tokenizer) is
loaded once per worker (`setup`). The Beam layer hands records over in batches (`score_batch`: one forward pass
per batch, images decoded from the record's training JPEG and prepared as CLIP does); `apply` then keeps or drops
each record on its own score: below `min_score` is `alignment-below-min-score`. The score (cosine similarity,
-1..1, rounded to 4 places) goes into the sample's `.json` as `alignment_score`, and its tenth (`0.2-0.3`,
`cleaners.histogram.cosine_bucket`) into stats.json's histograms. DataComp's CLIP-score filter (Gadre et al.
2023) keeps a share of the pool rather than a fixed score: `min_percentile` (0-100) drops the pairs under that
percentile of the run's scores, computed by the Beam layer from every score (stage `alignment_percentile`).

Several texts per image (the reader's `text_cols`: an img2dataset title and alt text, BriVL's alt plus surrounding
text; vetted by the caption checks): every text is scored against the image in the same forward pass. `texts: best`
(default) keeps one record whose caption is the best-scoring text (`texts:best-is-caption` / `texts:best-is-other`;
the others stay in the .json's `texts` with their scores); `texts: all` keeps one record per text over the floors
(the ledger counts the extra ones as created; `texts:below-min-score` those left out), each with its own
score, kind and id (the pair's id hashed with that text); the histograms count each input pair once.

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
BEST, ALL = "best", "all"
_TEXT_SCORES = "_other_text_scores"   # set by score_batch, consumed by apply
REASON_LOW = "alignment-below-min-score"
REASON_PERCENTILE = "alignment-below-percentile"
REASON_UNREADABLE = "alignment-image-unreadable"
MODEL_FILE = "model.pt"
OPENCLIP_MANIFEST = "openclip.json"
CHINESE_CLIP_CONTEXT = 52   # Chinese-CLIP's tokenize() default, which all its released models use


@register("alignment")
class AlignmentScore(Step):
    """Score each pair with a trained dual encoder; drop those under `min_score` (see module docstring)."""

    kind = "image_text"

    def __init__(self, *, model_path: str, min_score: float | None = None, min_percentile: float | None = None,
                 strong_score: float = 0.28, texts: str = "best", batch_size: int = 64, threads: int = 1):
        if not model_path:
            raise ValueError("alignment needs model_path: a folder written by `wudao alignment train`")
        if min_score is not None and not -1.0 <= float(min_score) <= 1.0:
            raise ValueError("min_score is a cosine similarity: -1..1")
        if min_percentile is not None and not 0.0 <= float(min_percentile) < 100.0:
            raise ValueError("min_percentile must be in [0, 100)")
        if not -1.0 <= float(strong_score) <= 1.0:
            raise ValueError("strong_score is a cosine similarity: -1..1")
        if texts not in (BEST, ALL):
            raise ValueError(f"texts must be {BEST!r} or {ALL!r}, not {texts!r}")
        if int(batch_size) < 1 or int(threads) < 1:
            raise ValueError("batch_size and threads must be >= 1")
        self.model_path, self.batch_size, self.threads = str(model_path), int(batch_size), int(threads)
        self.min_score = None if min_score is None else float(min_score)
        self.min_percentile = None if min_percentile is None else float(min_percentile)
        self.strong_score = float(strong_score)
        self.texts = texts
        self._model: Any = None
        self._tokenizer: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_model": None, "_tokenizer": None}

    def setup(self) -> None:
        """Load the model folder: ours (`model.pt` + SentencePiece tokenizer) or, when it holds `openclip.json`
        (`{"weights": "ViT-B-32.pt", "bpe": "bpe_simple_vocab_16e6.txt.gz", "quick_gelu": false}`, paths
        relative to the folder), a user's OpenCLIP / OpenAI CLIP ViT weights with CLIP's BPE tokenizer, or with
        `"vocab": "vocab.txt"` instead of `"bpe"`, Chinese-CLIP ViT weights with their WordPiece vocabulary (52
        tokens, images resized to the square uncropped, as Chinese-CLIP prepares them)."""
        if self._model is not None:
            return
        import torch

        torch.set_num_threads(self.threads)
        manifest = os.path.join(self.model_path, OPENCLIP_MANIFEST)
        if os.path.exists(manifest):
            self._model, self._tokenizer = _load_openclip_folder(self.model_path, manifest)
        else:
            from cleaners.image.alignment import DualEncoder
            from tokenizer.text import TextTokenizer

            self._model = DualEncoder.load(os.path.join(self.model_path, MODEL_FILE))
            self._tokenizer = TextTokenizer.load(self.model_path)

    def _encode(self, texts: list[str]) -> Any:
        from cleaners.image.alignment import pad_ids
        from cleaners.image.alignment_train import encode_captions
        from cleaners.image.bert_text import WordPiece
        from cleaners.image.clip_bpe import ClipBPE

        context = self._model.config.context_length
        if isinstance(self._tokenizer, WordPiece):
            context = min(context, CHINESE_CLIP_CONTEXT)
        if isinstance(self._tokenizer, (ClipBPE, WordPiece)):
            return pad_ids(self._tokenizer.encode_captions(texts, context), context)
        return encode_captions(self._tokenizer, texts, context)

    def score_batch(self, records: list[dict[str, Any]]) -> None:
        """Score every text of each record against its image, one forward pass for the batch: `alignment_score` is
        the caption's (None when the image cannot be decoded), the other texts' scores wait for `apply`."""
        import torch
        from PIL import Image

        from cleaners.image.alignment import preprocess

        self.setup()
        size = self._model.config.image_size
        pixels, readable = [], []
        for record in records:
            try:
                with Image.open(io.BytesIO(record["jpg"])) as image:
                    pixels.append(preprocess(image, size, crop=self._model.config.text_tower != "bert"))
                readable.append(record)
            except Exception:  # noqa: BLE001 - counted as a drop by apply
                record[SCORE_FIELD] = None
        if not readable:
            return
        candidates = [[r["caption"], *(t["text"] for t in r.get("texts") or [])] for r in readable]
        owner = torch.tensor([i for i, texts in enumerate(candidates) for _ in texts])
        ids, lengths = self._encode([t for texts in candidates for t in texts])
        with torch.no_grad():
            image_emb, text_emb = self._model(torch.stack(pixels), ids, lengths)
        scores = (image_emb[owner] * text_emb).sum(-1).tolist()
        start = 0
        for record, texts in zip(readable, candidates):
            mine = [round(float(s), 4) for s in scores[start:start + len(texts)]]
            start += len(texts)
            record[SCORE_FIELD] = mine[0]
            if len(mine) > 1:
                record[_TEXT_SCORES] = mine[1:]

    def apply(self, record: dict[str, Any]) -> Any:
        if SCORE_FIELD not in record:
            self.score_batch([record])
        if record[SCORE_FIELD] is None:
            return REASON_UNREADABLE
        others = record.pop(_TEXT_SCORES, [])
        if not others:
            return self._finish(record, {})
        texts = [dict(t, alignment_score=score) for t, score in zip(record["texts"], others)]
        if self.texts == ALL:
            return self._every_text(record, texts)
        best = max(range(len(texts)), key=lambda i: texts[i]["alignment_score"])
        if texts[best]["alignment_score"] <= record[SCORE_FIELD]:
            record["texts"] = texts
            return self._finish(record, {"texts:best-is-caption": 1})
        chosen = texts[best]
        texts[best] = {"text": record["caption"], "lang": record["lang"], "alignment_score": record[SCORE_FIELD]}
        record = _with_caption(record, chosen)
        record["texts"] = texts
        return self._finish(record, {"texts:best-is-other": 1})

    def _every_text(self, record: dict[str, Any], texts: list[dict[str, Any]]) -> Any:
        """`texts: all`: the record and one more per other text, each with its own score, kind and id."""
        records = [record, *(_with_caption(record, text) for text in texts)]
        for item in records:
            item.pop("texts", None)
        results = [self._finish(item, {}) for item in records]
        kept = [r for r in results if not isinstance(r.result, str)]
        counts: dict[str, int] = {}
        for r in kept:
            for name, n in r.counts.items():
                counts[name] = counts.get(name, 0) + n
        counts["texts:below-min-score"] = len(results) - len(kept)
        if not kept:
            return Counted(REASON_LOW, counts, hists={SCORE_FIELD: cosine_bucket(record[SCORE_FIELD])})
        hists = dict(kept[0].hists)
        return Counted([r.result for r in kept], {k: v for k, v in counts.items() if v}, hists=hists)

    def _finish(self, record: dict[str, Any], counts: dict[str, int]) -> Counted:
        score = record[SCORE_FIELD]
        hists = {SCORE_FIELD: cosine_bucket(score)}
        if self.min_score is not None and score < self.min_score:
            return Counted(REASON_LOW, counts, hists=hists)
        record[STRENGTH_FIELD] = STRONG if score >= self.strong_score else WEAK
        tier = f"{record[STRENGTH_FIELD]}/{record.get('caption_kind') or 'unknown'}"
        return Counted(record, {**counts, f"tier:{tier}": 1}, hists={**hists, STRENGTH_FIELD: record[STRENGTH_FIELD]})


def _load_openclip_folder(folder: str, manifest: str) -> tuple[Any, Any]:
    import json

    from cleaners.image.alignment import load_openclip
    from cleaners.image.bert_text import WordPiece
    from cleaners.image.clip_bpe import ClipBPE

    with open(manifest, encoding="utf-8") as f:
        spec = json.load(f)
    tokenizer = "vocab" if isinstance(spec, dict) and "vocab" in spec else "bpe"
    if not isinstance(spec, dict) or not isinstance(spec.get("weights"), str) or not isinstance(spec.get(tokenizer),
                                                                                                 str):
        raise ValueError(f"{manifest}: needs \"weights\" and \"bpe\" (CLIP) or \"vocab\" (Chinese-CLIP) file names")
    paths = {}
    for name in ("weights", tokenizer):
        path = os.path.realpath(os.path.join(folder, spec[name]))
        if not path.startswith(os.path.realpath(folder) + os.sep):
            raise ValueError(f"{manifest}: {name} {spec[name]!r} leads outside the model folder")
        paths[name] = path
    model = load_openclip(paths["weights"], quick_gelu=bool(spec.get("quick_gelu", False)))
    text = WordPiece(paths["vocab"]) if tokenizer == "vocab" else ClipBPE(paths["bpe"])
    if len(text) != model.config.vocab_size:
        raise ValueError(f"{manifest}: the {tokenizer} file gives {len(text)} ids, the weights' token embedding "
                         f"{model.config.vocab_size}")
    if (tokenizer == "vocab") != (model.config.text_tower == "bert"):
        raise ValueError(f"{manifest}: {tokenizer!r} does not go with these weights' text tower "
                         f"({'BERT: give vocab' if model.config.text_tower == 'bert' else 'CLIP: give bpe'})")
    return model, text


def _with_caption(record: dict[str, Any], text: dict[str, Any]) -> dict[str, Any]:
    """A copy of `record` whose caption is the other text `text` (its language, kind and score); its id hashes the
    record's id with that caption."""
    from cleaners.document import stable_hash
    from cleaners.image.caption_kind import caption_kind

    return {**record, "id": stable_hash(record["id"], text["text"]), "caption": text["text"], "lang": text["lang"],
            "caption_kind": caption_kind(text["text"], text["lang"]), SCORE_FIELD: text["alignment_score"]}


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
