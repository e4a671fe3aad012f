"""Text preprocessing, training and model loading shared by every fastText model in the project.

Language ID (`cleaners.language`), the quality classifier (`cleaners.quality`) and the topic classifier
(`cleaners.topic`) train and predict on the same normalised line, made by `fasttext_line`:

- only the first `max_chars` characters are used (2000 by default: CCNet / lid.176 reach their verdict on
  far less text, and it bounds the cost per document on billion-page crawls);
- lone surrogates (not UTF-8) become spaces;
- lowercase, every run of whitespace (newlines included: fastText reads one line per example) -> one space;
- each CJK character (Han, kana) and each punctuation mark becomes its own token, so fastText's word
  n-grams over Chinese act as character n-grams (fastText splits on spaces only).

All of it is two C-backed regex passes, no per-character Python loop.
"""
from __future__ import annotations

import gzip
import json
import os
import re
import tempfile
import threading
from typing import Any, Iterable, Iterator

from cleaners.han import HAN_RANGES

DEFAULT_MAX_CHARS = 2000

# Punctuation and symbols: ASCII, general punctuation (quotes, dashes, ellipsis), CJK symbols and
# punctuation, fullwidth punctuation.
_PUNCT = ("!-/:-@\\[-`{-~\u00a1-\u00bf\u00d7\u00f7\u2000-\u206f\u3000-\u303f"
          "\uff01-\uff0f\uff1a-\uff20\uff3b-\uff40\uff5b-\uff65")
# Hiragana and katakana, and Han ideographs (`cleaners.han`): each CJK character is a token of its own.
_CJK = "\u3040-\u30ff" + HAN_RANGES
_SPLIT_CHARS = re.compile(f"[{_PUNCT}{_CJK}]+")         # each character of a run becomes a token of its own
_SPLIT_CJK = re.compile(f"[{_CJK}]+")
_SYMBOLS = re.compile(f"[{_PUNCT}\\d]+")                 # dropped when keep_symbols=False
_LETTER = re.compile(r"[^\W\d_]")
_WHITESPACE = re.compile(r"\s+")
_SURROGATE = re.compile("[\ud800-\udfff]")               # lone surrogates cannot cross into fastText (UTF-8)


def fasttext_line(text: str, max_chars: int = DEFAULT_MAX_CHARS, *, keep_symbols: bool = True) -> str:
    """The one-line, normalised form of `text` that fastText trains and predicts on ('' for blank text).

    `keep_symbols=False` (language ID) replaces punctuation and digits with spaces: they say little about
    the language and, being frequent in Chinese text, would pull symbol-only strings towards `zh`.
    The quality classifier keeps them (runs of `!!!` or `|` are signals of spam and boilerplate).
    """
    if not isinstance(text, str):
        raise TypeError(f"expected str, got {type(text).__name__}")
    text = _SURROGATE.sub(" ", text[:max_chars].lower())
    if keep_symbols:
        text = _SPLIT_CHARS.sub(_spaced, text)
    else:
        text = _SPLIT_CJK.sub(_spaced, _SYMBOLS.sub(" ", text))
    return _WHITESPACE.sub(" ", text).strip()


def _spaced(run: re.Match[str]) -> str:
    """A run of characters that are tokens of their own, each between spaces (one call per run, not per character:
    Python 3.11's re expands a replacement template such as r" \1 " in Python once per match)."""
    return f" {' '.join(run.group())} "


def has_letters(text: str) -> bool:
    """Whether `text` contains at least one letter of any script (one C-level regex search)."""
    return _LETTER.search(text) is not None


# ----------------------------------------------------------------------------------------- training data


def jsonl_objects(path: str) -> Iterator[dict[str, Any] | None]:
    """Each non-blank line of a JSONL / JSONL.gz file of training examples as a dict, or None for a line that is
    not a JSON object (the callers count those). A missing file raises FileNotFoundError."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                record = None
            yield record if isinstance(record, dict) else None


# ---------------------------------------------------------------------------------------------- models

_MODELS: dict[str, Any] = {}
_MODELS_LOCK = threading.Lock()


def load_model(path: str) -> Any:
    """The fastText model at `path`, loaded once per process (models cannot be pickled, so steps call
    this from `setup()` and hold the result in an unpickled attribute). Missing files raise a clear error."""
    key = os.path.realpath(path)
    model = _MODELS.get(key)
    if model is not None:
        return model
    if not os.path.isfile(key):
        raise FileNotFoundError(f"fastText model not found: {path}")
    import fasttext  # imported lazily: modules that never predict do not pay for it

    with _MODELS_LOCK:
        model = _MODELS.get(key)
        if model is None:
            try:
                model = fasttext.load_model(key)
            except ValueError as exc:
                raise ValueError(f"not a fastText model: {path} ({exc})") from exc
            _MODELS[key] = model
    return model


LABEL_PREFIX = "__label__"


def predict_top(model: Any, line: str) -> tuple[str, float]:
    """The most likely label of `model` (prefix removed) and its probability, for a normalised line."""
    labels, probs = model.predict(line, k=1)
    label = labels[0]
    if label.startswith(LABEL_PREFIX):
        label = label[len(LABEL_PREFIX):]
    return label, float(min(probs[0], 1.0))


def train_classifier(examples: Iterable[tuple[str, str]], output_path: str, seed: int, *,
                     max_chars: int = DEFAULT_MAX_CHARS, quantize: dict[str, Any] | None = None,
                     **params: Any) -> tuple[Any, dict[str, int]]:
    """Train a supervised model on (label, text) examples, in their order, and write it to `output_path`
    atomically (temporary name, then rename). Returns the model and the lines trained on per label (text that
    normalises to nothing is left out)."""
    counts: dict[str, int] = {}
    output_path = str(output_path)
    os.makedirs(os.path.dirname(os.path.abspath(output_path)), exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        train_file = os.path.join(tmp, "train.txt")
        with open(train_file, "w", encoding="utf-8") as fh:
            for label, text in examples:
                line = fasttext_line(text, max_chars)
                if line:
                    fh.write(f"{LABEL_PREFIX}{label} {line}\n")
                    counts[label] = counts.get(label, 0) + 1
        model = train_supervised(train_file, seed, quantize=quantize, **params)
    partial = output_path + ".partial"
    model.save_model(partial)
    os.replace(partial, output_path)
    return model, dict(sorted(counts.items()))


def train_supervised(train_file: str, seed: int, attempts: int = 3, quantize: dict[str, Any] | None = None,
                     **params: Any) -> Any:
    """Train a supervised fastText model in a fresh `spawn`ed process and load it here; with `quantize`
    (`Model.quantize` arguments), quantized there too.

    The fastText build reads memory it never initialised: in a process that has trained before, the same file,
    seed and settings can give other bytes, or fail with "Encountered NaN.". A fresh process gives the same bytes
    every time (single thread, fixed seed), so training always runs in one; a NaN there is retried (same seed)
    and data that keeps failing raises a clear ValueError.
    """
    import multiprocessing

    import fasttext

    context = multiprocessing.get_context("spawn")
    error = "no attempt"
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.bin")
        for _ in range(attempts):
            with context.Pool(1) as pool:
                message = pool.apply(_train_to_file, (train_file, path, seed, params, quantize))
            if message is None:
                return fasttext.load_model(path)
            error = message
    raise ValueError(f"fastText training failed ({error}); use more, and more varied, texts or a lower lr")


def _train_to_file(train_file: str, path: str, seed: int, params: dict[str, Any],
                   quantize: dict[str, Any] | None) -> str | None:
    """Child-process side of `train_supervised`: train (and quantize), save, and return None or the error."""
    import fasttext

    try:
        model = fasttext.train_supervised(input=train_file, seed=seed, **params)
        if quantize is not None:
            model.quantize(input=train_file, **quantize)
        model.save_model(path)
        return None
    except RuntimeError as exc:
        return str(exc)
