"""Record types of the dialogue pipeline.

`Session` is one multi-turn conversation (turns in order); `Post` is one message of a forum/Weibo thread dump
(`id`, `parent_id`), which the pipeline assembles into sessions (root-to-leaf paths). Output records are
`to_dialogue_record(session)`: `{"id", "turns", "lang", "source", "dataType": "dialogue"}` (+ `speakers` when known,
`meta` with the input's id and where a fragment came from).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cleaners.document import stable_hash

DATA_TYPE = "dialogue"


@dataclass
class Session:
    turns: list[str]
    id: str = ""                  # stable: stable_hash of the turns when not given
    source: str = ""              # input file
    key: str = ""                 # position in the input: "<file>#<line or index>"
    lang: str = ""                # "zh" / "en" / "" (unknown: decided by the pipeline)
    speakers: list[str] | None = None   # one per turn when the input names them (ShareGPT "from", LCCC none)
    meta: dict[str, Any] = field(default_factory=dict)
    #: positions of the turns the cleaning rules changed (never written; see cleaners/dialogue/rules.py)
    edited_turns: tuple[int, ...] = field(default=(), compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.id:
            self.id = session_id(self.turns)

    @property
    def edited(self) -> bool:
        return bool(self.edited_turns)

    def edited_within(self, start: int, stop: int) -> tuple[int, ...]:
        """The edited positions of turns start..stop-1, renumbered from 0 (for a fragment of the session)."""
        return tuple(i - start for i in self.edited_turns if start <= i < stop)


@dataclass
class Post:
    id: str
    text: str
    parent_id: str | None = None  # None / "" for a thread's root post
    author: str = ""
    source: str = ""
    key: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


def session_id(turns: list[str]) -> str:
    return stable_hash("\x1e".join(turns))


#: session meta fields written to the output record's `meta`
RECORD_META = ("source_id", "fragment_of", "turn_span")


def to_dialogue_record(session: Session) -> dict[str, Any]:
    """The output record; `meta` keeps the input's id (`source_id`), and for a piece of a longer input session the
    input session's id (`fragment_of`) and the turn positions it came from (`turn_span`, "first-last"); `scores`
    holds the session's quality score (`dialogue_quality`, cleaners/dialogue/quality.py) once it is scored."""
    record = {"id": session.id, "turns": list(session.turns), "lang": session.lang, "source": session.source,
              "dataType": DATA_TYPE}
    if session.speakers is not None:
        record["speakers"] = list(session.speakers)
    meta = {name: session.meta[name] for name in RECORD_META if name in session.meta}
    if meta:
        record["meta"] = meta
    if "quality" in session.meta:
        record["scores"] = {"dialogue_quality": session.meta["quality"]}
    return record
