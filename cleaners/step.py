"""The step protocol and the registry that recipes are built from.

A step is a small named object with one job (datatrove's one-class-per-step shape):
`apply(doc)` returns the (possibly changed) `Document` to keep it, or a short reason string to drop it.
Filters only implement `filter(doc) -> reason | None`. Heavy resources (models, automata) are loaded in
`setup()`, which the Beam layer calls once per worker (DoFn.setup), never in `__init__`, so steps pickle.
Steps are configured with keyword arguments, straight from the recipe YAML.
"""
from __future__ import annotations

from typing import Callable, ClassVar

from cleaners.document import Document

STEPS: dict[str, type["Step"]] = {}


def register(name: str) -> Callable[[type["Step"]], type["Step"]]:
    """Class decorator: make a step available to recipes under `name`."""

    def deco(cls: type["Step"]) -> type["Step"]:
        if name in STEPS and STEPS[name] is not cls:
            raise ValueError(f"step name {name!r} registered twice")
        cls.name = name
        STEPS[name] = cls
        return cls

    return deco


class Step:
    """Base class. Subclasses set params in __init__ (keyword only) and implement `apply`."""

    name: ClassVar[str] = "step"
    #: languages the step applies to; None = every document. Documents of other languages pass untouched.
    languages: tuple[str, ...] | None = None
    #: the name in stats.json and rejects/ (a recipe's `as:` key sets it; default: the registered name)
    stage_name: str | None = None

    def setup(self) -> None:
        """Load models and build automata; called once per worker before the first `apply`."""

    def applies_to(self, doc: Document) -> bool:
        return self.languages is None or doc.lang in self.languages

    def apply(self, doc: Document) -> Document | str:
        raise NotImplementedError


class Filter(Step):
    """A step that only keeps or drops: implement `filter(doc)` returning a reason to drop or None to keep."""

    def filter(self, doc: Document) -> str | None:
        raise NotImplementedError

    def apply(self, doc: Document) -> Document | str:
        reason = self.filter(doc)
        return doc if reason is None else reason
