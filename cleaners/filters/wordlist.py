"""Term lists (ads, gambling, pornography) matched with an Aho-Corasick automaton (pyahocorasick).

C4 drops a page on any single bad word (Raffel et al. 2020, section 2.2); Dodge et al. 2021 ("Documenting
Large Webtext Corpora") showed that zero tolerance removes much benign text (news, health, minority
dialects), so this step drops only on repeated or dense hits. WuDaoCorpora (Yuan et al. 2021, section 3)
removes pages with dirty, pornographic and gambling content the same way, from its own (unpublished) lists.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import ahocorasick

from cleaners.document import Document
from cleaners.filters.params import check_non_negative
from cleaners.step import Filter, register

# A character that continues a Latin-script word: a Latin term must not be glued to one ("cialis" is not
# a hit inside "specialist"). Han characters do not count, so "买viagra" still matches.
LATIN_WORD_CHAR = re.compile(r"[0-9A-Za-z\u00c0-\u024f]")


def bundled_lists() -> dict[str, Any]:
    """Name -> resource of every list shipped in cleaners/data/wordlists."""
    folder = resources.files("cleaners").joinpath("data/wordlists")
    return {item.name[:-4]: item for item in folder.iterdir() if item.name.endswith(".txt")}


def read_terms(text: str) -> list[str]:
    """Terms of a list file: one per line, lowercased; blank lines and '#' comments skipped."""
    terms = []
    for line in text.splitlines():
        term = line.strip().lower()
        if term and not term.startswith("#"):
            terms.append(term)
    return terms


def _resolve(entry: str, bundled: dict[str, Any]) -> tuple[str, Any]:
    """(list name, readable source) for a bundled list name or a file path."""
    if entry in bundled:
        return entry, bundled[entry]
    if os.path.isfile(entry):
        name = os.path.splitext(os.path.basename(entry))[0]
        return name, entry
    raise ValueError(f"wordlist: {entry!r} is neither a bundled list ({', '.join(sorted(bundled))}) nor a file")


def _read(source: Any) -> str:
    if isinstance(source, str):
        with open(source, encoding="utf-8") as fh:
            return fh.read()
    return source.read_text("utf-8")


@register("wordlist")
@dataclass(kw_only=True)
class WordList(Filter):
    """Drop a document that mentions a list's terms too often (reason `wordlist:<listname>`).

    - `lists`: bundled list names (zh_ads, zh_gambling, zh_porn, en_spam, en_gambling, en_adult) or paths
      to files in the same format; default every bundled list. A file's list name is its file stem.
    - `max_hits` (2): drop when a list has more hits than this in the document.
    - `max_hit_ratio` (2.0): drop when a list's hits per 1000 characters exceed this. With both defaults a
      single mention survives in a text of 500+ characters, three mentions never do.
      Both limits are project choices (see the module docstring); null turns a limit off.

    Matching is case-insensitive (text and terms are lowercased) and counts non-overlapping longest
    matches; Latin-script terms must stand as whole words, Chinese terms match anywhere.
    The automaton is built in `setup()` (or on first use), never pickled.
    """

    languages = None

    lists: list[str] | None = None
    max_hits: int | None = 2
    max_hit_ratio: float | None = 2.0
    _sources: list[tuple[str, Any]] = field(default_factory=list, init=False, repr=False, compare=False)
    _automaton: Any = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_non_negative("wordlist", "max_hits", self.max_hits)
        check_non_negative("wordlist", "max_hit_ratio", self.max_hit_ratio)
        if self.lists is not None and (isinstance(self.lists, str) or not all(isinstance(x, str) for x in self.lists)):
            raise ValueError(f"wordlist: lists must be a list of names or paths, got {self.lists!r}")
        bundled = bundled_lists()
        entries = sorted(bundled) if self.lists is None else list(self.lists)
        if not entries:
            raise ValueError("wordlist: lists is empty")
        self._sources = [_resolve(entry, bundled) for entry in entries]

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_automaton"] = None
        return state

    @property
    def list_names(self) -> list[str]:
        return [name for name, _ in self._sources]

    def setup(self) -> None:
        term_lists: dict[str, list[str]] = {}
        for name, source in self._sources:
            for term in read_terms(_read(source)):
                owners = term_lists.setdefault(term, [])
                if name not in owners:
                    owners.append(name)
        automaton = ahocorasick.Automaton()
        for term, owners in term_lists.items():
            left = bool(LATIN_WORD_CHAR.match(term[0]))
            right = bool(LATIN_WORD_CHAR.match(term[-1]))
            automaton.add_word(term, (len(term), tuple(owners), left, right))
        if term_lists:
            automaton.make_automaton()
        self._automaton = automaton

    def count_hits(self, text: str) -> dict[str, int]:
        """Hits per list name (lists without hits are absent)."""
        if self._automaton is None:
            self.setup()
        automaton = self._automaton
        if not len(automaton):
            return {}
        lowered = text.lower()
        size = len(lowered)
        hits: dict[str, int] = {}
        for end, (length, owners, left, right) in automaton.iter_long(lowered):
            start = end - length + 1
            if left and start > 0 and LATIN_WORD_CHAR.match(lowered[start - 1]):
                continue
            if right and end + 1 < size and LATIN_WORD_CHAR.match(lowered[end + 1]):
                continue
            for owner in owners:
                hits[owner] = hits.get(owner, 0) + 1
        return hits

    def filter(self, doc: Document) -> str | None:
        hits = self.count_hits(doc.text)
        if not hits:
            return None
        per_thousand = 1000.0 / max(1, len(doc.text))
        worst_name, worst_hits = None, 0
        for name in self.list_names:
            n = hits.get(name, 0)
            over = (self.max_hits is not None and n > self.max_hits) or (
                self.max_hit_ratio is not None and n * per_thousand > self.max_hit_ratio
            )
            if over and n > worst_hits:
                worst_name, worst_hits = name, n
        return None if worst_name is None else f"wordlist:{worst_name}"
