"""A quality score for each cleaned session, written into its record (`scores.dialogue_quality`), with a
`min_score` filter (step `dialogue_quality`, the recipe's `quality:` section).

The score is this project's, not a paper's: 1 minus a weighted sum of four shares, each in [0, 1]:

- `edited` (weight 0.35): turns the cleaning rules changed (URLs, names, PII, repeats, ... erased);
- `generic` (0.25): stock replies ("哈哈", "好的", "谢谢", "ok", ...: `GENERIC_REPLIES`, normalized whole turns),
  what LCCC's generic-reply rule and DialoGPT's filtering count against a dialogue;
- `repetition` (0.25): turns that repeat an earlier turn of the session;
- `short` (0.15): how far the mean turn falls short of `SHORT_TURN_CHARS` (10) characters, placeholders counting
  one.

So an untouched session of varied, substantive turns scores 1.0; every share costs at most its weight. The parts
go to the session's meta (`quality_parts`, not written) and the score is bucketed in stats.json's `write`
histograms (`score:dialogue_quality`), which `wudao report` plots.
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar

from cleaners.dialogue.records import Session
from cleaners.dialogue.rules import visible_length
from cleaners.dialogue.sessions import normalize_turn
from cleaners.step import Counted, Step

WEIGHTS = {"edited": 0.35, "generic": 0.25, "repetition": 0.25, "short": 0.15}
SHORT_TURN_CHARS = 10
#: whole-turn stock replies (normalized: no spaces, case folded, trailing punctuation removed)
GENERIC_REPLIES = frozenset({
    "哈", "哈哈", "哈哈哈", "呵呵", "嘿嘿", "嘻嘻", "好", "好的", "好吧", "嗯", "嗯嗯", "恩恩", "哦", "噢", "对",
    "对的", "是", "是的", "对啊", "是啊", "谢谢", "谢谢你", "多谢", "加油", "晚安", "早安", "早", "顶", "沙发", "赞",
    "同意", "不知道", "好的呢", "可以", "行", "ok", "okay", "yes", "no", "yeah", "yep", "thanks", "thankyou",
    "thx", "lol", "haha", "hahaha", "sure", "cool", "nice", "right", "hmm", "ok.", "great",
})
_TRAILING = "。.!！?？~～…,，、 "


def quality_parts(session: Session) -> dict[str, float]:
    """The four shares of `session` (see the module docstring)."""
    turns = list(session.turns)
    n = len(turns) or 1
    keys = [normalize_turn(turn).rstrip(_TRAILING) for turn in turns]
    seen: set[str] = set()
    repeats = 0
    for key in keys:
        repeats += key in seen
        seen.add(key)
    mean_chars = sum(visible_length(turn) for turn in turns) / n
    return {"edited": len(set(session.edited_turns)) / n,
            "generic": sum(key in GENERIC_REPLIES for key in keys) / n,
            "repetition": repeats / n,
            "short": max(0.0, 1.0 - mean_chars / SHORT_TURN_CHARS)}


def quality_score(parts: dict[str, float]) -> float:
    return round(max(0.0, 1.0 - sum(WEIGHTS[name] * parts[name] for name in WEIGHTS)), 4)


class QualityStep(Step):
    """`dialogue_quality`: scores every session (`meta["quality"]`) and drops those under `min_score`
    (reason `low-quality`; 0, the default, keeps all)."""

    name: ClassVar[str] = "dialogue_quality"
    kind: ClassVar[str] = "dialogue"

    def __init__(self, *, min_score: float = 0.0) -> None:
        if not 0.0 <= min_score <= 1.0:
            raise ValueError(f"dialogue_quality: min_score must be in [0, 1], got {min_score}")
        self.min_score = float(min_score)

    def steps(self) -> list[Step]:
        """The recipe's `quality:` section is this one step (`cleaners.recipe.build_section_steps`)."""
        return [self]

    def apply(self, session: Session) -> Counted:
        parts = quality_parts(session)
        score = quality_score(parts)
        if score < self.min_score:
            return Counted("low-quality")
        meta = {**session.meta, "quality": score, "quality_parts": {k: round(v, 4) for k, v in parts.items()}}
        return Counted(dataclasses.replace(session, meta=meta))
