"""trafilatura's attribute rules (`.//*[...]` XPath expressions) evaluated in Python, with the same matches.

Pruning is the largest share of trafilatura's time per page (`prune_unwanted_nodes`: about a third in a sampling
profile, `py-spy record -s`, of bench/throughput.py's run), and most of that is EXSLT `re:test`, which libxml2
evaluates by calling back into Python once per element and attribute, through lxml's conversion of node sets
to Python lists. A compiled rule walks the tree once in C (`iterdescendants` with the rule's tag names), reads
each candidate's attributes once and tests them with compiled `re` patterns: the same answer in less time
(bench/results/extraction.md: ours against the variant "with trafilatura's own XPath rules").

`compile_rule` translates the subset of XPath 1.0 these rules are written in, and nothing else:

    .//*  [predicate] ...                        every descendant element, each predicate must hold
    //*   [predicate] ...                        every element of the page, its root included
    .//*[...][1]   (.//*[...])[1]                the first match among each element's children / in the page
    predicate:  a or b,  a and b,  not(a),  (a)
    self::div                                    the element's tag
    @id  @id='x'  @id|@class                     attribute present / equal / first of several in source order
    contains(S, 'x')  starts-with(S, 'x')  re:test(S, 'regex'[, 'i'])  translate(@a, 'AB', 'ab')
    .//h1                                        (in a predicate) the element has such a descendant

Anything else (other positions, unions of paths, other functions) raises `UnsupportedXPath`, and that rule
stays an lxml XPath. XPath semantics kept: a string of a node set is its first node in document order (for
two attributes of one element: the one written first), `=` holds when any node equals, a missing attribute
is the empty string. `install` swaps the compiled rules into trafilatura's rule lists in place (the lists
trafilatura's modules share; `as_shipped` puts trafilatura's own back for a block, for references and tests);
`tests/test_xpath_rules.py` checks every swapped rule against its XPath on real pages, raw and as trafilatura
cleans them, and that extraction gives the same output with either.
"""
from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable, Iterator

from lxml import etree

_TOKEN = re.compile(r"""\s*(?:(?P<string>'[^']*'|"[^"]*")|(?P<path>\.?//(?:\*|[A-Za-z][\w-]*))|(?P<axis>self::)"""
                    r"""|(?P<name>[A-Za-z][\w:-]*)|(?P<attr>@[A-Za-z][\w:-]*)|(?P<number>[0-9]+)|(?P<punct>[\[\](),|=]))""")

#: a test of one element, given its attributes as a dict and in the order written (`element.items()`)
Predicate = Callable[[etree._Element, dict, list], bool]
#: a string of one element (an attribute's value, the first of several written, a translation of one)
Text = Callable[[dict, list], str]


class UnsupportedXPath(ValueError):
    """The expression uses XPath outside the subset `compile_rule` translates."""


@dataclass(frozen=True)
class _Node:
    """A parsed part of an expression. `kind`: "tags" (`value` = tag names), "test" (a `Predicate`),
    "attributes" (`value` = names: a node set of attributes) or "text" (a `Text`). `needs`: attribute names
    at least one of which an element must have for a test to hold or a text to be non-empty (None: no such
    names); a rule skips, untested, every element that has none of them."""

    kind: str
    value: Any
    needs: frozenset[str] | None = None


class CompiledRule:
    """A rule callable as its XPath is: `rule(tree)` -> the matching descendant elements in document order.
    `first`: "" (every match), "per-parent" (`.//*[...][1]`: the first match among each element's children)
    or "overall" (`(.//*[...])[1]`: the first match in document order)."""

    def __init__(self, xpath: etree.XPath, tags: tuple[str, ...], tests: list[Predicate],
                 needs: frozenset[str] | None, first: str = "", whole_document: bool = False) -> None:
        self.path = xpath.path
        self.xpath = xpath          # the original, kept for tests and for reference
        self._tags = tags
        self._test = _all(tests) if tests else (lambda element, attributes, items: True)
        self._needs = needs
        self._first = first
        self._whole_document = whole_document

    def __call__(self, tree: etree._Element) -> list[etree._Element]:
        if self._whole_document:       # //*: every element of the page, its root included
            root = tree.getroottree().getroot()
            candidates = root.iter(*self._tags) if self._tags else root.iter(etree.Element)
        else:
            candidates = tree.iterdescendants(*self._tags) if self._tags else tree.iterdescendants(etree.Element)
        test, needs, first, matches = self._test, self._needs, self._first, []
        parents = set()
        for element in candidates:
            items = element.items()
            if needs is not None and not items:
                continue
            attributes = dict(items)
            if needs is not None and needs.isdisjoint(attributes):
                continue
            if not test(element, attributes, items):
                continue
            if first == "overall":
                return [element]
            if first == "per-parent":
                parent = element.getparent()
                if parent in parents:
                    continue
                parents.add(parent)
            matches.append(element)
        return matches

    def __repr__(self) -> str:
        return f"CompiledRule({self.path.strip()[:60]!r}...)"


def compile_rule(xpath: etree.XPath) -> CompiledRule:
    """The Python form of one `.//*[...]` rule; `UnsupportedXPath` when it uses anything beyond the subset."""
    parser = _Parser(xpath.path)
    first = ""
    if parser.peek() == ("punct", "("):      # (.//*[...])[1]
        parser.next()
        first = "overall"
    kind, path = parser.next()
    if kind != "path" or path not in (".//*", "//*"):
        raise UnsupportedXPath("not a .//*[...] or //*[...] rule")
    tags: tuple[str, ...] = ()
    tests: list[Predicate] = []
    needs: list[frozenset[str] | None] = []
    while parser.peek() == ("punct", "["):
        parser.next()
        if parser.peek() == ("number", "1") and not first:      # .//*[...][1], the last predicate
            parser.next()
            parser.expect("punct", "]")
            first = "per-parent"
            break
        node = parser.or_expr()
        parser.expect("punct", "]")
        if not tests and not tags and node.kind == "tags":   # the first predicate names the tags: filter in C
            tags = node.value
            continue
        tests.append(_as_test(node))
        needs.append(node.needs)
    if first == "overall":
        for token in (")", "[", "1", "]"):
            parser.expect("number" if token == "1" else "punct", token)
    if parser.peek() is not None:
        raise UnsupportedXPath(f"unsupported token {parser.peek()[1]!r}")
    if not tags and not tests:
        raise UnsupportedXPath("a rule without predicates")
    return CompiledRule(xpath, tags, tests, _needs_all(needs), first, whole_document=path == "//*")


def install(module: ModuleType) -> list[str]:
    """Replace, in place, every rule of `module`'s lists of XPath expressions that compiles; the names
    (`LIST[i]`) of the rules replaced. Each rule is compiled once per process (`_COMPILED`)."""
    replaced = []
    for name, value in vars(module).items():
        if not isinstance(value, list):
            continue
        for index, rule in enumerate(value):
            if not isinstance(rule, etree.XPath):
                continue
            compiled = _COMPILED.get(id(rule))
            if compiled is None or compiled.xpath is not rule:
                try:
                    compiled = _COMPILED[id(rule)] = compile_rule(rule)
                except UnsupportedXPath:
                    continue
            value[index] = compiled
            replaced.append(f"{name}[{index}]")
    return replaced


def uninstall(module: ModuleType) -> list[str]:
    """Put the original XPath objects back in `module`'s lists; the names of the rules restored."""
    restored = []
    for name, value in vars(module).items():
        if isinstance(value, list):
            for index, rule in enumerate(value):
                if isinstance(rule, CompiledRule):
                    value[index] = rule.xpath
                    restored.append(f"{name}[{index}]")
    return restored


@contextmanager
def as_shipped(module: ModuleType) -> Iterator[None]:
    """`module`'s own XPath rules for the duration of the block (a reference run, a test), compiled after."""
    installed = bool(uninstall(module))
    try:
        yield
    finally:
        if installed:
            install(module)


_COMPILED: dict[int, CompiledRule] = {}   # id of an XPath object -> its compiled rule (which holds the object)


def _needs_all(needs: list[frozenset[str] | None]) -> frozenset[str] | None:
    """What tests that must all hold need: the smallest of their `needs` (an element without any of those
    attributes fails that test, so the conjunction)."""
    known = [names for names in needs if names is not None]
    return min(known, key=len) if known else None


def _any(tests: list[Predicate]) -> Predicate:
    def any_test(element: etree._Element, attributes: dict, items: list) -> bool:
        for test in tests:
            if test(element, attributes, items):
                return True
        return False
    return any_test


def _all(tests: list[Predicate]) -> Predicate:
    if len(tests) == 1:
        return tests[0]

    def all_test(element: etree._Element, attributes: dict, items: list) -> bool:
        for test in tests:
            if not test(element, attributes, items):
                return False
        return True
    return all_test


def _as_test(node: _Node) -> Predicate:
    if node.kind == "tags":
        names = frozenset(node.value)
        return lambda element, attributes, items: element.tag in names
    if node.kind == "test":
        return node.value
    if node.kind == "attributes":       # a node set as a boolean: not empty
        names = frozenset(node.value)
        return lambda element, attributes, items: not names.isdisjoint(attributes)
    raise UnsupportedXPath(f"not a boolean: {node.kind}")


def _as_text(node: _Node) -> Text:
    """XPath string(): the first node's value in document order, "" for an empty node set."""
    if node.kind == "text":
        return node.value
    if node.kind != "attributes":
        raise UnsupportedXPath("a function argument that is not an attribute or a string")
    if len(node.value) == 1:
        name = node.value[0]
        return lambda attributes, items: attributes.get(name, "")
    names = frozenset(node.value)

    def first_written(attributes: dict, items: list) -> str:   # a loop, not next() over a generator
        for key, value in items:
            if key in names:
                return value
        return ""
    return first_written


class _Parser:
    """Recursive descent over the tokens of one expression, into `_Node`s."""

    def __init__(self, text: str) -> None:
        self.tokens = list(self._tokenize(text))
        self.position = 0

    @staticmethod
    def _tokenize(text: str) -> Iterator[tuple[str, str]]:
        position, end = 0, len(text.rstrip())
        while position < end:
            match = _TOKEN.match(text, position)
            if match is None or match.end() == position:
                raise UnsupportedXPath(f"cannot read {text[position:position + 20]!r}")
            position = match.end()
            kind = match.lastgroup
            yield kind, match.group(kind)

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def next(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise UnsupportedXPath("unexpected end")
        self.position += 1
        return token

    def expect(self, kind: str, text: str) -> None:
        token = self.next()
        if token != (kind, text):
            raise UnsupportedXPath(f"expected {text!r}, found {token[1]!r}")

    def or_expr(self) -> _Node:
        terms = [self.and_expr()]
        while self.peek() == ("name", "or"):
            self.next()
            terms.append(self.and_expr())
        if len(terms) == 1:
            return terms[0]
        if all(term.kind == "tags" for term in terms):
            return _Node("tags", tuple(tag for term in terms for tag in term.value))
        needs = None if any(term.needs is None for term in terms) else frozenset().union(*(t.needs for t in terms))
        return _Node("test", _any([_as_test(term) for term in terms]), needs)

    def and_expr(self) -> _Node:
        terms = [self.atom()]
        while self.peek() == ("name", "and"):
            self.next()
            terms.append(self.atom())
        if len(terms) == 1:
            return terms[0]
        return _Node("test", _all([_as_test(term) for term in terms]), _needs_all([term.needs for term in terms]))

    def atom(self) -> _Node:
        kind, text = self.next()
        if kind == "axis":
            tag_kind, tag = self.next()
            if tag_kind != "name":
                raise UnsupportedXPath("self:: needs a tag name")
            return _Node("tags", (tag,))
        if (kind, text) == ("punct", "("):
            node = self.or_expr()
            self.expect("punct", ")")
            return node
        if kind == "attr":
            return self._attributes(text[1:])
        if kind == "path":      # .//tag: the element has such a descendant
            if not text.startswith(".//") or text == ".//*":
                raise UnsupportedXPath(f"the path {text} inside a predicate")
            tag = text[3:]
            return _Node("test", lambda element, attributes, items: next(element.iterdescendants(tag), None)
                         is not None)
        if kind == "name" and self.peek() == ("punct", "("):
            self.next()
            return self._function(text)
        raise UnsupportedXPath(f"unsupported token {text!r}")

    def _attributes(self, first: str) -> _Node:
        names = [first]
        while self.peek() == ("punct", "|"):
            self.next()
            kind, text = self.next()
            if kind != "attr":
                raise UnsupportedXPath("a union of non-attributes")
            names.append(text[1:])
        node = _Node("attributes", tuple(names), frozenset(names))
        if self.peek() != ("punct", "="):
            return node
        self.next()
        literal = self._literal()
        if len(names) == 1:
            name = names[0]
            return _Node("test", lambda element, attributes, items: attributes.get(name) == literal, node.needs)
        wanted = frozenset(names)
        return _Node("test", lambda element, attributes, items: any(key in wanted and value == literal
                                                                      for key, value in items), node.needs)

    def _function(self, name: str) -> _Node:
        if name == "not":
            test = _as_test(self.or_expr())
            self.expect("punct", ")")
            return _Node("test", lambda element, attributes, items: not test(element, attributes, items))
        if name == "translate":
            argument = self.atom()
            source = _as_text(argument)
            self.expect("punct", ",")
            table = str.maketrans(*self._translate_table())
            self.expect("punct", ")")
            return _Node("text", lambda attributes, items: source(attributes, items).translate(table), argument.needs)
        if name not in ("contains", "starts-with", "re:test"):
            raise UnsupportedXPath(f"function {name}()")
        argument = self.atom()
        source = _as_text(argument)
        self.expect("punct", ",")
        literal = self._literal()
        flags = ""
        if name == "re:test" and self.peek() == ("punct", ","):
            self.next()
            flags = self._literal()
        self.expect("punct", ")")
        if name == "contains":
            return _Node("test", lambda element, attributes, items: literal in source(attributes, items),
                         argument.needs if literal else None)
        if name == "starts-with":
            return _Node("test", lambda element, attributes, items: source(attributes, items).startswith(literal),
                         argument.needs if literal else None)
        if set(flags) - {"i"}:
            raise UnsupportedXPath(f"re:test flags {flags!r}")
        # lxml's EXSLT re:test: re.search with the pattern as written, IGNORECASE for the "i" flag
        pattern = re.compile(literal, re.IGNORECASE if "i" in flags else 0)
        return _Node("test", lambda element, attributes, items: pattern.search(source(attributes, items))
                     is not None, argument.needs if pattern.search("") is None else None)

    def _translate_table(self) -> tuple[str, str, str]:
        """translate()'s two strings as str.maketrans arguments: characters without a counterpart are removed."""
        source = self._literal()
        self.expect("punct", ",")
        target = self._literal()
        return source[:len(target)], target[:len(source)], source[len(target):]

    def _literal(self) -> str:
        kind, text = self.next()
        if kind != "string":
            raise UnsupportedXPath(f"expected a string literal, found {text!r}")
        return text[1:-1]
