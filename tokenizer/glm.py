"""GLM autoregressive blank-infilling samples (Du et al., ACL 2022, sec. 2.1-2.3) in the shared id space.

For tokens x, spans are blanked out in one of three ways (the objective is drawn per batch, `choose_objective`):

- `mask` ([MASK]): span lengths ~ Poisson(3) (lengths 1..39, renormalised, as THUDM/GLM's
  `ConstructBlockStrategy`), drawn until at least 15% of x is covered; spans placed at random, non-overlapping,
  at least one unmasked token apart (GLM's `sample_spans`).
- `sentence` ([sMASK]): whole sentences (a sentence ends with and includes an id of `sentence_end_ids`; the
  remainder after the last end is a sentence too), taken in random order until at least 15% of x is covered.
- `gmask` ([gMASK]): one span from a random point to the end, of a length uniform over 50%-100% of x.

Packed windows hold several documents separated by `boundary_ids` (`<|endoftext|>`): spans then stay inside
documents, as THUDM/GLM samples them per document. [MASK] spans are drawn for each document (15% of it), sentences
never reach over a separator, and the [gMASK] span covers 50-100% of the window's last document, up to its end. A
separator is never masked and never a target.

Layout (`layout`): Part A = x with each span replaced by its mask token; Part B = the spans in shuffled order, each
fed as `[sop] span` with target `span [eop]`. `position_ids[0]` is the position in Part A (for Part B: the position
of the span's mask token), `position_ids[1]` is 0 on Part A and 1, 2, ... inside a Part B span (1 on `[sop]`).
`sep` = len(Part A): attention is bidirectional over Part A and causal over Part B (`attention_mask`). Targets
are -100 (IGNORE) outside Part B; `loss_mask` is 1 on Part B only. A sample is padded with [PAD] to `max_len`.

Length and truncation: a sample of n tokens and k spans takes n + 2k positions. `build` samples spans on
x[:m], m = min(len(x), max_len - 2); if m + 2k > max_len it cuts x to m = max_len - 2k and samples again (m falls
every round, so this ends). `n_tokens` in the result says how many tokens of x the sample holds; pick the reader's
`seq_len` a little under `max_len` (about 0.9 x max_len for the default mix) so that cuts are rare.

Default mix `{"mask": 0.5, "sentence": 0.3, "gmask": 0.2}`: THUDM/GLM's GLM-Large multi-task pretraining
script (`--bert-prob 0.5 --gap-sentence-prob 0.3`, the rest generation); the gMASK range 50-100% is the paper's.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

from tokenizer.vocab import Vocab

IGNORE = -100
MASK_TOKENS = {"mask": "[MASK]", "sentence": "[sMASK]", "gmask": "[gMASK]"}
OBJECTIVES = tuple(MASK_TOKENS)
STRUCTURAL = ("[MASK]", "[sMASK]", "[gMASK]", "[sop]", "[eop]", "[PAD]")  # never allowed inside x
SENTENCE_MARKS = ("。", "！", "？", "；", ".", "!", "?", "\n")


def poisson_lengths(lam: float, max_length: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """Span lengths 1..max_length-1 and their Poisson(lam) probabilities renormalised (zero excluded)."""
    lengths = np.arange(1, max_length)
    pmf = np.array([math.exp(-lam + k * math.log(lam) - math.lgamma(k + 1)) for k in lengths])
    return lengths, pmf / pmf.sum()


def attention_mask(sep: int, total_len: int) -> np.ndarray:
    """bool [L, L], True where query i may attend to key j: any j < sep (Part A), or j <= i (causal Part B)."""
    if not 0 <= sep <= total_len:
        raise ValueError(f"sep {sep} outside 0..{total_len}")
    i = np.arange(total_len)[:, None]
    j = np.arange(total_len)[None, :]
    return (j < sep) | (j <= i)


def _as_tokens(tokens) -> np.ndarray:
    x = np.asarray(tokens)
    if x.ndim != 1:
        raise ValueError(f"tokens must be 1-D, got shape {x.shape}")
    if x.size == 0:
        raise ValueError("empty tokens: a GLM sample needs at least one token")
    if not np.issubdtype(x.dtype, np.integer):
        raise ValueError(f"tokens must be integers, got dtype {x.dtype}")
    return x.astype(np.int64)


def layout(tokens, spans: Sequence[tuple[int, int]], mask_id: int, order, *, vocab: Vocab, max_len: int) -> dict:
    """The sample for explicit `spans` ([start, end) pairs, sorted, disjoint, non-empty) of `tokens`, each replaced
    in Part A by `mask_id`; `order` is the Part B order (a permutation of span indices) or a Generator to draw it."""
    x = _as_tokens(tokens)
    n, k = len(x), len(spans)
    if k == 0:
        raise ValueError("no spans: a GLM sample masks at least one span")
    prev_end = 0
    for s, e in spans:
        if not prev_end <= s < e <= n:
            raise ValueError(f"spans must be sorted, disjoint, non-empty and inside 0..{n}: got {list(spans)}")
        prev_end = e
    if isinstance(order, np.random.Generator):
        order = order.permutation(k)
    order = [int(o) for o in order]
    if sorted(order) != list(range(k)):
        raise ValueError(f"order {order} is not a permutation of the {k} spans")
    if n + 2 * k > max_len:
        raise ValueError(f"{n} tokens and {k} spans need {n + 2 * k} positions, max_len is {max_len}")

    pad, sop, eop = (vocab.token_id(t) for t in ("[PAD]", "[sop]", "[eop]"))
    part_a: list[int] = []
    mask_pos: list[int] = []
    cursor = 0
    for s, e in spans:
        part_a.extend(x[cursor:s].tolist())
        mask_pos.append(len(part_a))
        part_a.append(mask_id)
        cursor = e
    part_a.extend(x[cursor:].tolist())
    sep = len(part_a)

    input_ids = np.full(max_len, pad, dtype=np.int64)
    targets = np.full(max_len, IGNORE, dtype=np.int64)
    loss_mask = np.zeros(max_len, dtype=np.float32)
    position_ids = np.zeros((2, max_len), dtype=np.int64)
    input_ids[:sep] = part_a
    position_ids[0, :sep] = np.arange(sep)
    at = sep
    for j in order:
        s, e = spans[j]
        length = e - s + 1  # [sop] + span as input, span + [eop] as target
        input_ids[at:at + length] = [sop] + x[s:e].tolist()
        targets[at:at + length] = x[s:e].tolist() + [eop]
        loss_mask[at:at + length] = 1.0
        position_ids[0, at:at + length] = mask_pos[j]
        position_ids[1, at:at + length] = np.arange(1, length + 1)
        at += length
    return {"input_ids": input_ids, "targets": targets, "loss_mask": loss_mask, "position_ids": position_ids,
            "sep": sep}


def restore_tokens(sample: dict, vocab: Vocab) -> np.ndarray:
    """Inverse of `layout`: the original tokens, each mask in Part A refilled from its Part B span."""
    ids, targets, pos = sample["input_ids"], sample["targets"], sample["position_ids"]
    sep = int(sample["sep"])
    sop, eop = vocab.token_id("[sop]"), vocab.token_id("[eop]")
    masks = {vocab.token_id(t) for t in MASK_TOKENS.values()}
    fills: dict[int, list[int]] = {}
    starts = [i for i in range(sep, len(ids)) if ids[i] == sop and pos[1, i] == 1]
    for i in starts:
        end = i
        while end < len(ids) and targets[end] != eop:
            end += 1
        if end == len(ids):
            raise ValueError(f"Part B span at {i} has no [eop] target")
        fills[int(pos[0, i])] = targets[i:end].tolist()
    out: list[int] = []
    for p in range(sep):
        if ids[p] in masks:
            if p not in fills:
                raise ValueError(f"mask at Part A position {p} has no span in Part B")
            out.extend(fills.pop(p))
        else:
            out.append(int(ids[p]))
    if fills:
        raise ValueError(f"Part B spans for positions {sorted(fills)} have no mask in Part A")
    return np.array(out, dtype=np.int64)


def collate(samples: Sequence[dict]) -> dict[str, np.ndarray]:
    """Stack samples of one length: input_ids/targets/loss_mask [B, L], position_ids [B, 2, L], sep [B]."""
    if not samples:
        raise ValueError("collate needs at least one sample")
    lengths = {len(s["input_ids"]) for s in samples}
    if len(lengths) != 1:
        raise ValueError(f"samples have different lengths {sorted(lengths)}; build them with one max_len")
    out = {key: np.stack([s[key] for s in samples]) for key in ("input_ids", "targets", "loss_mask", "position_ids")}
    out["sep"] = np.array([s["sep"] for s in samples], dtype=np.int64)
    return out


def sentence_end_ids(tokenizer, marks: Iterable[str] = SENTENCE_MARKS) -> frozenset[int]:
    """Ids of the text pieces that end a sentence (the piece, stripped of spaces, ends with a mark) and the
    newline id, for a `TextTokenizer` (anything with `.sp` and `.newline_id`)."""
    marks = tuple(marks)
    sp = tokenizer.sp
    ids = {int(tokenizer.newline_id)}
    for i in range(sp.get_piece_size()):
        piece = sp.id_to_piece(i).replace("\u2581", " ").strip()
        if piece and not sp.is_control(i) and piece.endswith(marks):
            ids.add(i)
    return frozenset(ids)


@dataclass
class GLMMasking:
    """Draws GLM samples; `build` for one, `build_batch` for a batch sharing one objective."""

    vocab: Vocab
    mask_ratio: float = 0.15
    poisson_lambda: float = 3.0
    max_span: int = 40
    gmask_min: float = 0.5
    gmask_max: float = 1.0
    ratios: dict[str, float] = field(default_factory=lambda: {"mask": 0.5, "sentence": 0.3, "gmask": 0.2})
    sentence_end_ids: frozenset[int] = frozenset()
    boundary_ids: frozenset[int] = frozenset()   # document separators in packed windows: never inside a span

    def __post_init__(self) -> None:
        if not 0 < self.mask_ratio <= 1:
            raise ValueError("mask_ratio must be in (0, 1]")
        if self.poisson_lambda <= 0 or self.max_span < 2:
            raise ValueError("poisson_lambda must be positive and max_span at least 2")
        if not 0 < self.gmask_min <= self.gmask_max <= 1:
            raise ValueError("need 0 < gmask_min <= gmask_max <= 1")
        unknown = set(self.ratios) - set(OBJECTIVES)
        if unknown or any(v < 0 for v in self.ratios.values()) or sum(self.ratios.values()) <= 0:
            raise ValueError(f"ratios must map some of {OBJECTIVES} to non-negative weights with a positive sum")
        self.sentence_end_ids = frozenset(int(i) for i in self.sentence_end_ids)
        self.boundary_ids = frozenset(int(i) for i in self.boundary_ids)
        if self.sentence_end_ids & self.boundary_ids:
            raise ValueError("a document separator cannot also end sentences: spans never include separators")
        if self.ratios.get("sentence", 0) > 0 and not self.sentence_end_ids:
            raise ValueError("the sentence objective needs sentence_end_ids (see sentence_end_ids(tokenizer)); "
                             "pass them or set ratios['sentence'] to 0")
        self._lengths, self._pmf = poisson_lengths(self.poisson_lambda, self.max_span)
        self._names = [o for o in OBJECTIVES if self.ratios.get(o, 0) > 0]
        weights = np.array([self.ratios[o] for o in self._names], dtype=np.float64)
        self._weights = weights / weights.sum()
        self._structural = np.array([self.vocab.token_id(t) for t in STRUCTURAL])

    def choose_objective(self, rng: np.random.Generator) -> str:
        return self._names[int(rng.choice(len(self._names), p=self._weights))]

    # span samplers: sorted [start, end) lists on n tokens
    def mask_spans(self, n: int, rng: np.random.Generator) -> list[tuple[int, int]]:
        target = max(1, math.ceil(self.mask_ratio * n - 1e-9))
        draws = rng.choice(self._lengths, size=target, p=self._pmf)  # each >= 1, so target draws always suffice
        k = int(np.searchsorted(np.cumsum(draws), target)) + 1
        lengths = [int(v) for v in draws[:k]]
        while sum(lengths) + len(lengths) - 1 > n:  # short x: shorten or drop the last span until all fit
            over = sum(lengths) + len(lengths) - 1 - n
            if over < lengths[-1]:
                lengths[-1] -= over
            else:
                lengths.pop()
        free = n - sum(lengths) - (len(lengths) - 1)
        places = np.sort(rng.integers(0, free + 1, size=len(lengths)))
        spans, offset = [], 0
        for place, length in zip(places.tolist(), lengths):
            spans.append((place + offset, place + offset + length))
            offset += length + 1
        return spans

    def documents(self, x: np.ndarray) -> list[tuple[int, int]]:
        """[start, end) of each run of tokens between document separators (all of x without `boundary_ids`)."""
        if not self.boundary_ids:
            return [(0, len(x))]
        cuts = np.flatnonzero(np.isin(x, list(self.boundary_ids))).tolist()
        bounds = zip([-1, *cuts], [*cuts, len(x)])
        return [(a + 1, b) for a, b in bounds if b > a + 1]

    def sentence_spans(self, x: np.ndarray, rng: np.random.Generator) -> list[tuple[int, int]]:
        sentences = []
        for start, stop in self.documents(x):
            ends = (np.flatnonzero(np.isin(x[start:stop], list(self.sentence_end_ids))) + 1 + start).tolist()
            bounds = [start] + ends + ([stop] if not ends or ends[-1] != stop else [])
            sentences += list(zip(bounds[:-1], bounds[1:]))
        target = self.mask_ratio * sum(stop - start for start, stop in sentences)
        chosen, covered = [], 0
        for j in rng.permutation(len(sentences)).tolist():
            chosen.append(sentences[j])
            covered += sentences[j][1] - sentences[j][0]
            if covered >= target:
                break
        return sorted(chosen)

    def gmask_spans(self, n: int, rng: np.random.Generator) -> list[tuple[int, int]]:
        low = max(1, math.ceil(self.gmask_min * n - 1e-9))
        high = max(low, math.floor(self.gmask_max * n + 1e-9))
        length = int(rng.integers(low, high + 1))
        return [(n - length, n)]

    def spans(self, x: np.ndarray, objective: str, rng: np.random.Generator) -> list[tuple[int, int]]:
        documents = self.documents(x)
        if not documents:
            raise ValueError("a window of document separators only has nothing to mask")
        if objective == "mask":
            return [(start + s, start + e) for start, stop in documents
                    for s, e in self.mask_spans(stop - start, rng)]
        if objective == "sentence":
            if not self.sentence_end_ids:
                raise ValueError("the sentence objective needs sentence_end_ids")
            return self.sentence_spans(x, rng)
        if objective == "gmask":
            start, stop = documents[-1]
            return [(start + s, start + e) for s, e in self.gmask_spans(stop - start, rng)]
        raise ValueError(f"unknown objective {objective!r}; expected one of {OBJECTIVES}")

    def build(self, tokens, rng: np.random.Generator, objective: str | None = None, *, max_len: int) -> dict:
        """One sample of `max_len` positions (see the module docstring for the truncation rule); adds
        `objective` and `n_tokens` (how many leading tokens of `tokens` it holds) to `layout`'s dict."""
        x = _as_tokens(tokens)
        if max_len < 3:
            raise ValueError(f"max_len {max_len} is too small: a sample needs at least 3 positions "
                             "(one token, its mask and [sop])")
        bad = np.isin(x, self._structural) | (x < 0) | (x >= self.vocab.total_size)
        if bad.any():
            raise ValueError(f"token {int(x[np.argmax(bad)])} cannot be in a GLM input "
                             f"(outside the vocab or one of {STRUCTURAL})")
        if objective is None:
            objective = self.choose_objective(rng)
        if objective not in OBJECTIVES:
            raise ValueError(f"unknown objective {objective!r}; expected one of {OBJECTIVES}")
        m = min(len(x), max_len - 2)
        while True:
            spans = self.spans(x[:m], objective, rng)
            if m + 2 * len(spans) <= max_len:
                break
            m = max(1, max_len - 2 * len(spans))  # falls every round; m = 1 (one span) always fits
        sample = layout(x[:m], spans, self.vocab.token_id(MASK_TOKENS[objective]), rng,
                        vocab=self.vocab, max_len=max_len)
        sample.update(objective=objective, n_tokens=m)
        return sample

    def build_batch(self, windows: Iterable, rng: np.random.Generator, *, max_len: int,
                    objective: str | None = None) -> dict[str, np.ndarray]:
        """`collate` of one sample per window, all with one objective (drawn once per batch, as GLM does)."""
        if objective is None:
            objective = self.choose_objective(rng)
        return collate([self.build(w, rng, objective, max_len=max_len) for w in windows])
