"""Fixed histogram buckets for the run's ledger (`<stage>|hist|<name>|<bucket>` counts).

Fixed edges make the histograms exact on any runner: each record adds 1 to one bucket, and the counts sum
like every other ledger count, so nobody ever reads the corpus back to plot it.

- document length in characters (`chars`): lower edges 0, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000,
  50000, 100000; a bucket holds [edge, next edge), labelled `"50-99"`, the last `"100000+"`.
- scores (`score:<name>`): tenths of 0.0-1.0, labelled `"0.0-0.1"` ... `"0.9-1.0"`; a bucket holds
  [lo, hi) except the last, which holds 1.0 too. Scores below 0 count in the first bucket, above 1 in the last
  (the language score can come out as 1.0000001); a score that is not a finite number is not counted.
- cosine similarities (`alignment_score`): tenths of -1.0-1.0, labelled `"-1.0--0.9"` ... `"0.9-1.0"`, the same
  rules as scores at the ends.
- categories (`lang`): the value itself (`"zh"`, `"en"`; `"unknown"` when empty).
"""
from __future__ import annotations

import math
from bisect import bisect_right

CHAR_EDGES = (0, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000)
CHAR_LABELS = tuple(f"{lo}-{hi - 1}" for lo, hi in zip(CHAR_EDGES, CHAR_EDGES[1:])) + (f"{CHAR_EDGES[-1]}+",)
SCORE_EDGES = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)  # literals: 0.3 falls in "0.3-0.4", not below
SCORE_LABELS = tuple(f"{i / 10:.1f}-{(i + 1) / 10:.1f}" for i in range(10))
COSINE_EDGES = tuple(round(-1.0 + i / 10, 1) for i in range(20))
COSINE_LABELS = tuple(f"{lo:.1f}-{round(lo + 0.1, 1) + 0.0:.1f}" for lo in COSINE_EDGES)   # + 0.0: no "-0.0"
UNKNOWN = "unknown"

_ORDER = {label: i for labels in (CHAR_LABELS, SCORE_LABELS) for i, label in enumerate(labels)}
_COSINE_ORDER = {label: i for i, label in enumerate(COSINE_LABELS)}


def chars_bucket(n: int) -> str:
    """The `chars` bucket of a text of `n` characters."""
    return CHAR_LABELS[max(bisect_right(CHAR_EDGES, n) - 1, 0)]


def score_bucket(value: object) -> str | None:
    """The score bucket of `value`, or None for anything that is not a finite number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return SCORE_LABELS[min(max(bisect_right(SCORE_EDGES, value) - 1, 0), len(SCORE_LABELS) - 1)]


def cosine_bucket(value: object) -> str | None:
    """The bucket of a cosine similarity (-1..1), or None for anything that is not a finite number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return COSINE_LABELS[min(max(bisect_right(COSINE_EDGES, value) - 1, 0), len(COSINE_LABELS) - 1)]


def category_bucket(value: object) -> str:
    """A category's bucket: its text, `unknown` when empty; `|` (the ledger's separator) becomes `/`."""
    text = str(value or "").strip().replace("|", "/")
    return text or UNKNOWN


def ordered(buckets: dict[str, int]) -> dict[str, int]:
    """Buckets in a stable order: fixed buckets by their edges, categories by count (largest first), then name."""
    for order in (_ORDER, _COSINE_ORDER):
        if all(label in order for label in buckets):
            return dict(sorted(buckets.items(), key=lambda kv: order[kv[0]]))
    return dict(sorted(buckets.items(), key=lambda kv: (-kv[1], kv[0])))
