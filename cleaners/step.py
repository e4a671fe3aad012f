"""The step protocol and the registry that recipes are built from: one protocol for every record kind.

A step is a small named object with one job (datatrove's one-class-per-step shape), for any record: a web
`Document`, a dialogue `Session`, an `ImageText` pair. `apply(record)` returns

- the (possibly changed) record to keep it,
- a short reason string to drop it,
- a list of records when it splits the record (a dialogue session cut at noise; the ledger counts the extra
  records as `created`), or
- `Counted(result, counts)` for any of these plus counts of what it did (`{"pii:phone": 2}`), which land in the
  step's `counts` in stats.json. Steps never write to side channels or touch accounting: `cleaners.runner` and
  `pipelines.ledger` do that.

Filters only implement `filter(record) -> reason | None`. Heavy resources (models, automata) are loaded in
`setup()`, which the Beam layer calls once per worker (DoFn.setup), never in `__init__`, so steps pickle.
Steps are configured with keyword arguments, straight from the recipe YAML. `kind` says which recipe a step
belongs to ("text", "dialogue", "image_text"); names are unique over all kinds.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Mapping

STEPS: dict[str, type["Step"]] = {}


def register(name: str) -> Callable[[type["Step"]], type["Step"]]:
    """Class decorator: make a step available to recipes of its `kind` under `name`."""

    def deco(cls: type["Step"]) -> type["Step"]:
        if name in STEPS and STEPS[name] is not cls:
            raise ValueError(f"step name {name!r} registered twice")
        cls.name = name
        STEPS[name] = cls
        return cls

    return deco


@dataclass(frozen=True)
class Counted:
    """A step's result (record, list of records, or reason) with counts of what the step did, and histogram
    buckets of the record (`{"chars": "100-1k"}`, buckets from `cleaners.histogram`)."""

    result: Any
    counts: Mapping[str, int] = field(default_factory=dict)
    hists: Mapping[str, str] = field(default_factory=dict)


class Step:
    """Base class. Subclasses set params in __init__ (keyword only) and implement `apply`."""

    name: ClassVar[str] = "step"
    #: the recipe kind the step belongs to
    kind: ClassVar[str] = "text"
    #: languages the step applies to; None = every record. Records of other languages pass untouched.
    languages: tuple[str, ...] | None = None
    #: the name in stats.json and rejects/ (a recipe's `as:` key sets it; default: the registered name)
    stage_name: str | None = None

    def setup(self) -> None:
        """Load models and build automata; called once per worker before the first `apply`."""

    def applies_to(self, record: Any) -> bool:
        return self.languages is None or getattr(record, "lang", None) in self.languages

    def apply(self, record: Any) -> Any:
        raise NotImplementedError


class Filter(Step):
    """A step that only keeps or drops: implement `filter(record)` returning a reason to drop or None to keep."""

    def filter(self, record: Any) -> str | None:
        raise NotImplementedError

    def apply(self, record: Any) -> Any:
        reason = self.filter(record)
        return record if reason is None else reason
