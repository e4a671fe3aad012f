"""Choosing the next token: greedy, temperature / top-k / top-p sampling, and beam search.

* top-k (Fan et al. 2018): keep the k highest logits.
* top-p, nucleus sampling (Holtzman et al. 2020): keep the smallest set of tokens whose probabilities sum to at
  least p (the most likely token always stays).
* beam search keeps the ``num_beams`` best partial sequences by summed log-probability; a finished hypothesis
  (it chose ``end_id``) scores ``sum log p / len ** length_penalty`` (len counts the end token), Wu et al. 2016's
  length normalisation as Hugging Face's ``BeamScorer`` applies it. The search stops when ``num_beams`` hypotheses
  are finished and the best open beam, ended at the next step at no cost, would not beat the worst of them (Hugging
  Face's stopping heuristic), or at ``max_new_tokens``.

Both GLM blank filling (`train/glm_generate.py`) and CogView sampling (`train/cogview_model.py`) decode through
this module.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch


@dataclass(frozen=True)
class Decoding:
    """How to pick tokens: ``strategy`` greedy, sample or beam."""

    strategy: str = "greedy"
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    num_beams: int = 4
    length_penalty: float = 1.0
    max_new_tokens: int = 64

    def __post_init__(self) -> None:
        if self.strategy not in ("greedy", "sample", "beam"):
            raise ValueError(f"strategy must be greedy, sample or beam, not {self.strategy!r}")
        if self.temperature <= 0:
            raise ValueError("temperature must be > 0")
        if self.top_k is not None and self.top_k < 1:
            raise ValueError("top_k must be >= 1 (None: no cut)")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ValueError("top_p must be in (0, 1] (None: no cut)")
        if self.num_beams < 1 or self.max_new_tokens < 1:
            raise ValueError("num_beams and max_new_tokens must be >= 1")


def filter_logits(logits: torch.Tensor, top_k: int | None = None, top_p: float | None = None) -> torch.Tensor:
    """`logits` [..., V] with everything outside the top-k and the top-p nucleus set to -inf."""
    if top_k is not None and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = torch.softmax(sorted_logits, dim=-1)
        before = probs.cumsum(-1) - probs          # mass of the more likely tokens
        drop_sorted = before >= top_p              # the nucleus is reached before this token
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def pick_next(logits: torch.Tensor, decoding: Decoding, generator: torch.Generator | None = None) -> torch.Tensor:
    """Next token per row of `logits` [B, V] (LongTensor [B]) by greedy choice or sampling."""
    if decoding.strategy == "greedy":
        return logits.argmax(-1)
    if decoding.strategy != "sample":
        raise ValueError("pick_next does greedy or sample; beam search is beam_search")
    scaled = filter_logits(logits.float() / decoding.temperature, decoding.top_k, decoding.top_p)
    probs = torch.softmax(scaled, -1)
    return torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(-1).to(logits.device)


@dataclass(frozen=True)
class Hypothesis:
    tokens: tuple[int, ...]       # generated tokens, the end token excluded
    logprob: float                # summed log-probability, the end token's included when finished
    score: float                  # logprob / length ** length_penalty
    finished: bool


def beam_search(step: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], first: torch.Tensor, end_id: int,
                decoding: Decoding) -> list[Hypothesis]:
    """Beam search. `first` [V]: log-probs of the first token. `step(tokens [N], parents [N])` must reorder the
    caller's state to rows `parents` (indices into the previous call's rows; row 0 for the first call), feed
    `tokens` and return log-probs [N, V] of the next token. Returns up to ``num_beams`` hypotheses, best first
    (finished ones; open ones only when too few finished by ``max_new_tokens``)."""
    beams, penalty = decoding.num_beams, decoding.length_penalty
    finished: list[Hypothesis] = []
    open_tokens: list[tuple[int, ...]] = [()]
    open_logp = torch.zeros(1, dtype=torch.float64)
    logp = first.double()[None]
    for length in range(1, decoding.max_new_tokens + 1):
        vocab = logp.size(-1)
        total = (open_logp[:, None] + logp).flatten()
        order = torch.argsort(total, descending=True)[: 2 * beams]  # enough to refill after ends are taken
        rows, tokens, sums = [], [], []
        for flat in order.tolist():
            row, token, value = flat // vocab, flat % vocab, float(total[flat])
            if value == float("-inf"):
                break
            if token == end_id:
                finished.append(Hypothesis(open_tokens[row], value, value / length ** penalty, True))
            else:
                rows.append(row)
                tokens.append(token)
                sums.append(value)
            if len(rows) == beams:
                break
        finished.sort(key=lambda h: -h.score)
        del finished[beams:]
        if not rows:
            break
        if len(finished) == beams and finished[-1].score >= max(sums) / (length + 1) ** penalty:
            break
        open_tokens = [open_tokens[r] + (t,) for r, t in zip(rows, tokens)]
        open_logp = torch.tensor(sums, dtype=torch.float64)
        if length == decoding.max_new_tokens:
            break
        logp = step(torch.tensor(tokens), torch.tensor(rows)).double()
    if len(finished) < beams:
        finished += [Hypothesis(t, float(s), float(s) / max(len(t), 1) ** penalty, False)
                     for t, s in zip(open_tokens, open_logp.tolist())][: beams - len(finished)]
    return sorted(finished, key=lambda h: (not h.finished, -h.score))
