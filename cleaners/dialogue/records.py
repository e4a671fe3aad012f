"""Record types of the dialogue pipeline.

`Session` is one multi-turn conversation (turns in order); `Post` is one message of a forum/Weibo thread dump
(`id`, `parent_id`), which the pipeline assembles into sessions (root-to-leaf paths). Output records are
`to_dialogue_record(session)`: `{"id", "turns", "lang", "source", "dataType": "dialogue"}` (+ `speakers` when known).
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
    #: set by the cleaning steps once a turn changed (never written; see cleaners/dialogue/rules.py)
    edited: bool = field(default=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.id:
            self.id = session_id(self.turns)


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


def to_dialogue_record(session: Session) -> dict[str, Any]:
    record = {"id": session.id, "turns": list(session.turns), "lang": session.lang, "source": session.source,
              "dataType": DATA_TYPE}
    if session.speakers is not None:
        record["speakers"] = list(session.speakers)
    return record
