"""Inverse prompting (Zou et al., KDD 2021): rank generations by how well each one predicts its prompt back.

Beam search gives candidates c_g for the forward text (a template holding the prompt c_p and a blank). Each is
re-scored under an inverse template in which the generation is given and the prompt is the blank:
``inverse = log p(c_p | inverse text with c_g) / (len(c_p) + 1)`` (per token, `[eop]` counted), next to
``forward = log p(c_g | forward text) / (len(c_g) + 1)``; candidates rank by
``(1 - weight) * forward + weight * inverse``. ``weight = 1`` is the paper's score ``log p(c_p' | c_g')`` alone;
the paper applies it to the beams after every generated sentence, here to the finished hypotheses of one beam
search (the same when the generation is one sentence or line, as in its poems' lines and short answers).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from train.decoding import Decoding


@dataclass(frozen=True)
class Ranked:
    tokens: tuple[int, ...]
    forward: float     # mean log-prob per token of the generation given the prompt
    inverse: float     # mean log-prob per token of the prompt given the generation
    score: float


def rerank(candidates: Sequence[tuple[Sequence[int], float]], inverse: Callable[[tuple[int, ...]], float],
           weight: float) -> list[Ranked]:
    """`candidates`: (tokens, forward score); `inverse(tokens)` -> inverse score. Best first."""
    if not 0.0 <= weight <= 1.0:
        raise ValueError("weight must be in [0, 1]")
    ranked = []
    for tokens, forward in candidates:
        tokens = tuple(int(t) for t in tokens)
        back = float(inverse(tokens))
        ranked.append(Ranked(tokens, float(forward), back, (1.0 - weight) * float(forward) + weight * back))
    return sorted(ranked, key=lambda r: -r.score)


def inverse_prompting(filler, tokenizer, prompt: str, forward_template: str, inverse_template: str,
                      decoding: Decoding, weight: float = 1.0) -> list[Ranked]:
    """Beam-search `forward_template` (``{prompt}`` and one blank, e.g. ``"问题：{prompt} 回答：[gMASK]"``), then
    rerank by `inverse_template` (``{generation}`` and one ``[MASK]`` where the prompt goes, e.g.
    ``"{generation} 这回答了问题：[MASK]"``) with a ``BlankFiller``."""
    if "{prompt}" not in forward_template or "{generation}" not in inverse_template:
        raise ValueError("the forward template needs {prompt} and the inverse template {generation}")
    if inverse_template.count("[MASK]") != 1:
        raise ValueError("the inverse template needs exactly one [MASK], where the prompt goes")
    if decoding.strategy != "beam":
        raise ValueError("inverse prompting re-scores beam search candidates: use strategy beam")
    hyps = filler.candidates(filler.encode(tokenizer, forward_template.replace("{prompt}", prompt)), decoding)
    prompt_ids = tokenizer.encode(prompt)

    def back(tokens: tuple[int, ...]) -> float:
        text = inverse_template.replace("{generation}", tokenizer.decode(tokens))
        return filler.span_logprob(filler.encode(tokenizer, text), prompt_ids) / (len(prompt_ids) + 1)

    forward = [(h.tokens, h.logprob / (len(h.tokens) + int(h.finished))) for h in hyps]
    return rerank(forward, back, weight)
