"""Pure session helpers the dialogue stages share (no Beam): validity, the normalized form replies are compared
in, where a session splits, and the trigram units of the generic-reply rule.

The splitting rule follows LCCC (Wang et al. 2020, "A Large-Scale Chinese Short-Text Conversation Dataset",
NLPCC, section 3.2): a removed reply splits its session there, and only fragments of at least 2 turns are kept.
`runs_between` is that rule, written once; the session rules (`cleaners.dialogue.rules`) and the corpus-wide
stages (`pipelines.dialogue_stages`) both cut sessions with it.
"""
from __future__ import annotations

import re
from typing import Any

from cleaners.dialogue.records import Session, session_id
from cleaners.document import stable_hash
from cleaners.han import HAN_RANGES

MIN_FRAGMENT_TURNS = 2


def runs_between(n: int, removed: set[int]) -> list[range]:
    """The maximal runs of positions 0..n-1 not in `removed`, in order; empty runs are left out."""
    runs, start = [], 0
    for end in [*sorted(i for i in removed if 0 <= i < n), n]:
        if end > start:
            runs.append(range(start, end))
        start = end + 1
    return runs


def is_valid_session(session: Any) -> bool:
    return (isinstance(session, Session) and isinstance(session.turns, list)
            and all(isinstance(turn, str) for turn in session.turns))


def normalize_turn(text: str) -> str:
    """The form replies are compared in: whitespace removed, case folded."""
    return "".join(text.split()).casefold()


def turn_hash(text: str) -> str:
    return stable_hash(normalize_turn(text))[:20]


def join_key(session: Session) -> str:
    """Key a session is joined back on; identical sessions share it and get identical results."""
    return stable_hash(session.id, session.key)


def split_session(session: Session, removed: set[int], min_turns: int = MIN_FRAGMENT_TURNS) -> list[Session]:
    """The fragments of `session` between removed turns that keep at least `min_turns` turns.

    With nothing removed the session comes back unchanged; a fragment gets the id of its turns and the key
    `<key>@<first turn>-<last turn>` (turn positions in the original session)."""
    if not removed:
        return [session]
    fragments = []
    for run in runs_between(len(session.turns), removed):
        if len(run) >= min_turns:
            start, end = run.start, run.stop
            turns = session.turns[start:end]
            speakers = session.speakers[start:end] if session.speakers is not None else None
            fragments.append(Session(turns=turns, id=session_id(turns), source=session.source,
                                     key=f"{session.key}@{start}-{end - 1}", lang=session.lang,
                                     speakers=speakers, meta=fragment_meta(session, start, end),
                                     edited_turns=session.edited_within(start, end)))
    return fragments


def fragment_meta(session: Session, start: int, stop: int) -> dict[str, Any]:
    """Meta of the piece turns start..stop-1 of `session`: `fragment_of` names the input session (the first one
    split, when a fragment is split again) and `turn_span` ("first-last") the positions in it."""
    meta = dict(session.meta)
    offset = int(str(meta.get("turn_span", "0-0")).split("-")[0])
    meta.setdefault("fragment_of", session.id)
    meta["turn_span"] = f"{offset + start}-{offset + stop - 1}"
    return meta


# -- trigram units of the generic-reply rule --------------------------------------------------------------

_TOKEN = re.compile(f"[{HAN_RANGES}]" + r"|[^\W_]+|[^\s]", re.UNICODE)


def tokens(text: str) -> list[str]:
    """Units for trigrams: each CJK character alone (character trigrams for Chinese), a run of other letters or
    digits as one unit (word trigrams for English), each other non-space character alone; case folded."""
    return _TOKEN.findall(text.casefold())


def trigrams(units: list[str]) -> list[str]:
    return ["\x1f".join(units[i:i + 3]) for i in range(len(units) - 2)]


def generic_cover(units: list[str], generic: set[str]) -> float:
    """Fraction of the units of a reply inside at least one generic trigram (0 for replies under 3 units)."""
    covered = [False] * len(units)
    for i, gram in enumerate(trigrams(units)):
        if gram in generic:
            covered[i] = covered[i + 1] = covered[i + 2] = True
    return sum(covered) / len(units) if units else 0.0
