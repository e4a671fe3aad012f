"""Topic (industry) of a text: a fastText classifier, how to train it and how to measure it.

WuDaoCorpora labels records with industries ("包含教育、科技等50+个行业的数据标签"). The bundled model
(`cleaners/data/topic/topic.bin`, rebuilt byte for byte by `scripts/train_topic.py`) knows THUCNews's ten
classes under THUCNews's own names; `TOPIC_NAMES` gives each its Chinese name, which is what `dataType` carries.
A user's own model (any labels, trained with `train_topic` or `wudao domain train`) is used through the same code.

Text goes through `cleaners.fasttext_text.fasttext_line` (lowercase, first 2000 characters, each Han
character a token), so fastText's word bigrams act as character bigrams over Chinese.
"""
from __future__ import annotations

from collections import Counter
from importlib import resources
from typing import Any

import numpy as np

from cleaners.fasttext_text import (DEFAULT_MAX_CHARS, LABEL_PREFIX, fasttext_line, jsonl_objects, load_model,
                                    train_classifier)

TOPIC_NAMES = {"finance": "财经", "realty": "房产", "stocks": "股票", "education": "教育", "science": "科技",
               "society": "社会", "politics": "时政", "sports": "体育", "game": "游戏",
               "entertainment": "娱乐", "health": "健康", "travel": "旅游", "geography": "地理",
               "agriculture": "农业", "military": "军事", "law": "法律"}
BUNDLED_MODEL = "data/topic/topic.bin"

# fastText supervised settings of the bundled model: bag of character uni- and bigrams (Joulin et al. 2017,
# "Bag of Tricks"; its n-gram setting), single thread and a fixed seed so that a rerun gives the same bytes.
TRAIN_PARAMS = dict(lr=0.5, epoch=25, dim=16, wordNgrams=2, minn=0, maxn=0, minCount=1, bucket=20_000,
                    loss="softmax", thread=1, verbose=0)


def bundled_model_path() -> str:
    return str(resources.files("cleaners").joinpath(BUNDLED_MODEL))


def chinese_name(label: str) -> str:
    """The Chinese name of a topic label (a label of a user's model without one is returned as it is)."""
    return TOPIC_NAMES.get(label, label)


# ------------------------------------------------------------------------------------------- reading


def read_labeled(path: str) -> tuple[list[tuple[str, str]], int]:
    """(text, label) pairs from a JSONL / JSONL.gz file of `{"text": ..., "label": ...}` lines, and how many
    lines were skipped (not JSON, not an object, empty text or label, or a label with whitespace)."""
    pairs: list[tuple[str, str]] = []
    skipped = 0
    for record in jsonl_objects(path):
        text, label = (record.get("text"), record.get("label")) if record is not None else (None, None)
        if (isinstance(text, str) and text.strip() and isinstance(label, str) and label
                and not any(c.isspace() for c in label)):
            pairs.append((text, label))
        else:
            skipped += 1
    return pairs, skipped


# ------------------------------------------------------------------------------------------ training


def train_topic(pairs: list[tuple[str, str]], output_path: str, *, seed: int = 0, quantize: bool = False,
                max_chars: int = DEFAULT_MAX_CHARS, **params: Any) -> dict[str, int]:
    """Train a topic model on (text, label) pairs and write it to `output_path` (atomically).

    The pairs are sorted, then shuffled with `seed`; settings default to `TRAIN_PARAMS`. The same pairs in any
    order and the same seed give the same bytes. `quantize` makes a smaller `.ftz` (fastText's product
    quantization, at some cost in accuracy: `scripts/train_topic.py --quantize` shows it for the bundled data).
    Returns the number of training lines per label."""
    labels = {label for _, label in pairs}
    if len(labels) < 2:
        raise ValueError(f"need texts of at least two labels to train a topic model, got {sorted(labels)}")
    settings = dict(TRAIN_PARAMS, **params)
    pairs = sorted(pairs, key=lambda pair: (pair[1], pair[0]))
    order = np.random.default_rng(seed).permutation(len(pairs))
    _, counts = train_classifier(((pairs[i][1], pairs[i][0]) for i in order), output_path, seed,
                                 max_chars=max_chars, **settings,
                                 quantize=dict(qnorm=True, retrain=False, cutoff=100_000) if quantize else None)
    return counts


# -------------------------------------------------------------------------------------- predicting


class TopicModel:
    """A loaded topic model: `predict(text) -> (label, probability)`; ("", 0.0) for text with nothing to judge."""

    def __init__(self, path: str | None = None, max_chars: int = DEFAULT_MAX_CHARS):
        self.path = path or bundled_model_path()
        self.max_chars = max_chars
        self._model = load_model(self.path)
        self.labels = [label[len(LABEL_PREFIX):] for label in self._model.get_labels()]

    def predict(self, text: str) -> tuple[str, float]:
        line = fasttext_line(text, self.max_chars)
        if not line:
            return "", 0.0
        labels, probs = self._model.predict(line, k=1)
        return labels[0][len(LABEL_PREFIX):], float(min(probs[0], 1.0))


def evaluate(model: TopicModel, pairs: list[tuple[str, str]], min_score: float | None = None) -> dict[str, Any]:
    """Accuracy over (text, label) pairs and per true label: `{"accuracy", "per_label", "n"}`; with `min_score`,
    also the share of pairs whose top score reaches it (`"covered"`) and the accuracy on those
    (`"accuracy_covered"`), as the `domain` step's `min_topic_score` uses the model."""
    right: Counter = Counter()
    seen: Counter = Counter()
    covered = covered_right = 0
    for text, label in pairs:
        predicted, score = model.predict(text)
        seen[label] += 1
        right[label] += predicted == label
        if min_score is not None and score >= min_score:
            covered += 1
            covered_right += predicted == label
    n = sum(seen.values())
    result: dict[str, Any] = {"accuracy": round(sum(right.values()) / n, 4) if n else 0.0,
                              "per_label": {label: round(right[label] / seen[label], 4) for label in sorted(seen)},
                              "n": n}
    if min_score is not None:
        result.update(covered=round(covered / n, 4) if n else 0.0,
                      accuracy_covered=round(covered_right / covered, 4) if covered else 0.0)
    return result
