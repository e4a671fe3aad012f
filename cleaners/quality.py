"""A fastText quality classifier: training (`train_quality`) and the recipe step `quality`.

The classifier separates "high quality" text (`__label__hq`: e.g. curated reference text, as GPT-3 used
WebText/Wikipedia/books and DCLM used OpenHermes + ELI5) from crawl text (`__label__lq`), and the step keeps
documents whose P(hq) reaches `min_score`. Text goes through the same `fasttext_line` normalisation as
language ID (lowercase, one line, CJK characters split, first 2000 characters), punctuation kept.

Training defaults follow fastText's supervised defaults (Joulin et al. 2017, "Bag of Tricks"): lr 0.1,
dim 100, epoch 5, with word bigrams (`wordNgrams=2`) as in that paper's n-gram setting and in DCLM's
fastText quality filter (Li et al. 2024). `min_score` 0.5 is the classifier's own decision boundary.
"""
from __future__ import annotations

import math
from typing import Any, Iterable

import numpy as np

from cleaners.document import Document, stable_hash
from cleaners.fasttext_text import (DEFAULT_MAX_CHARS, LABEL_PREFIX, fasttext_line, jsonl_objects, load_model,
                                    train_classifier)
from cleaners.step import Step, register

HQ, LQ = "hq", "lq"


# ------------------------------------------------------------------------------------------- reading


def read_texts(paths: Iterable[str]) -> tuple[list[str], int]:
    """Texts from JSONL / JSONL.gz files (field `text`, else `content`), and how many lines were skipped
    (not JSON, not an object, no non-empty text). A missing file raises FileNotFoundError."""
    texts: list[str] = []
    skipped = 0
    for path in paths:
        for record in jsonl_objects(path):
            text = record.get("text") or record.get("content") if record is not None else None
            if isinstance(text, str) and text.strip():
                texts.append(text)
            else:
                skipped += 1
    return texts, skipped


def _held_out(text: str, fraction: float) -> bool:
    """Deterministic split by content hash, so duplicates land on the same side."""
    return int(stable_hash(text)[:8], 16) < fraction * 0x1_0000_0000


# ------------------------------------------------------------------------------------------ training


def train_quality(positive_paths: list[str], negative_paths: list[str], output_path: str, *,
                  epoch: int = 5, lr: float = 0.1, dim: int = 100, word_ngrams: int = 2,
                  min_count: int = 1, bucket: int = 2_000_000, holdout_fraction: float = 0.1,
                  seed: int = 0, max_chars: int = DEFAULT_MAX_CHARS, quantize: bool = False) -> dict[str, Any]:
    """Train a `__label__hq` / `__label__lq` fastText model and write it to `output_path` (atomically).

    Returns held-out metrics: counts, accuracy / precision / recall / F1 of `hq` at 0.5, ROC AUC of P(hq),
    and `skipped_records`. Single-threaded with a fixed seed, so reruns give the same model.
    """
    if not 0.0 <= holdout_fraction < 1.0:
        raise ValueError(f"holdout_fraction must be in [0, 1), got {holdout_fraction!r}")
    positives, skipped_pos = read_texts(positive_paths)
    negatives, skipped_neg = read_texts(negative_paths)
    labelled = [(HQ, t) for t in positives] + [(LQ, t) for t in negatives]
    train = [(y, t) for y, t in labelled if not _held_out(t, holdout_fraction)]
    held = [(y, t) for y, t in labelled if _held_out(t, holdout_fraction)]
    for label in (HQ, LQ):
        if not any(y == label for y, _ in train):
            side = "positive" if label == HQ else "negative"
            raise ValueError(f"no {side} training texts (read {len(positives)} positive, {len(negatives)} negative)")

    order = np.random.default_rng(seed).permutation(len(train))
    model, _ = train_classifier((train[i] for i in order), output_path, seed, max_chars=max_chars,
                                quantize=dict(qnorm=True, retrain=False) if quantize else None, epoch=epoch,
                                lr=lr, dim=dim, wordNgrams=word_ngrams, minCount=min_count, bucket=bucket,
                                loss="softmax", thread=1, verbose=0)

    metrics = _metrics(model, held, max_chars)
    metrics.update(n_train=len(train), n_positive=len(positives), n_negative=len(negatives),
                   skipped_records=skipped_pos + skipped_neg, output=str(output_path))
    return metrics


def hq_probabilities(model: Any, texts: list[str], max_chars: int = DEFAULT_MAX_CHARS) -> np.ndarray:
    """P(hq) for each text (0.0 for text that normalises to nothing)."""
    out = np.zeros(len(texts), dtype=np.float64)
    lines = [fasttext_line(t, max_chars) for t in texts]
    idx = [i for i, line in enumerate(lines) if line]
    if idx:
        labels, probs = model.predict([lines[i] for i in idx], k=-1, threshold=0.0)
        for i, labs, ps in zip(idx, labels, probs):
            out[i] = _hq_from(labs, ps)
    return out


def _hq_from(labels: Any, probs: Any) -> float:
    for label, p in zip(labels, probs):
        if label == LABEL_PREFIX + HQ:
            return float(min(p, 1.0))
    return 0.0


def _roc_auc(scores: np.ndarray, truth: np.ndarray) -> float:
    """Probability that a random positive outranks a random negative (ties count half)."""
    pos, neg = scores[truth], scores[~truth]
    if not len(pos) or not len(neg):
        return math.nan
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(pos) * len(neg)))


def _metrics(model: Any, held: list[tuple[str, str]], max_chars: int) -> dict[str, Any]:
    truth = np.array([y == HQ for y, _ in held], dtype=bool)
    scores = hq_probabilities(model, [t for _, t in held], max_chars)
    predicted = scores >= 0.5
    tp = int((predicted & truth).sum())
    precision = tp / predicted.sum() if predicted.sum() else math.nan
    recall = tp / truth.sum() if truth.sum() else math.nan
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else math.nan
    return {
        "n_holdout": len(held), "n_holdout_positive": int(truth.sum()),
        "accuracy": float((predicted == truth).mean()) if len(held) else math.nan,
        "precision": float(precision), "recall": float(recall), "f1": float(f1),
        "auc": _roc_auc(scores, truth),
    }


# ---------------------------------------------------------------------------------------------- step


@register("quality")
class QualityClassifier(Step):
    """Scores `doc.scores[field] = P(hq)` and drops below `min_score` with reason `quality-low`.

    Without `model_path` the step is off: it keeps every document and scores nothing.
    """

    def __init__(self, *, model_path: str | None = None, min_score: float = 0.5, field: str = "quality",
                 max_chars: int = DEFAULT_MAX_CHARS) -> None:
        if not 0.0 <= float(min_score) <= 1.0:
            raise ValueError(f"min_score must be in [0, 1], got {min_score!r}")
        if not field or not isinstance(field, str):
            raise ValueError(f"field must be a non-empty string, got {field!r}")
        self.model_path = model_path
        self.min_score = float(min_score)
        self.field = field
        self.max_chars = int(max_chars)
        self._model: Any = None

    def setup(self) -> None:
        if not self.model_path:
            return
        model = load_model(self.model_path)
        if LABEL_PREFIX + HQ not in model.get_labels():
            raise ValueError(f"{self.model_path} has no {LABEL_PREFIX}{HQ} label "
                             f"(labels: {', '.join(model.get_labels())}); train it with train_quality")
        self._model = model

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_model"] = None          # fastText models do not pickle; workers reload in setup()
        return state

    def apply(self, doc: Document) -> Document | str:
        if not self.model_path:
            return doc
        if self._model is None:
            self.setup()
        line = fasttext_line(doc.text, self.max_chars)
        score = 0.0
        if line:
            labels, probs = self._model.predict(line, k=-1, threshold=0.0)
            score = _hq_from(labels, probs)
        doc.scores[self.field] = score
        return doc if score >= self.min_score else "quality-low"
