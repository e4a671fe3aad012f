"""trafilatura's XPath rules compiled to Python (`cleaners.xpath_rules`) match exactly what lxml's XPath matches."""
from __future__ import annotations

import gzip
from copy import deepcopy
from pathlib import Path

import pytest
from lxml import etree, html
from trafilatura import xpaths as trafilatura_xpaths
from trafilatura.htmlprocessing import convert_tags, tree_cleaning
from trafilatura.settings import Extractor

from cleaners import extract as extract_module
from cleaners.charset import decode_html
from cleaners.extract import extract_html, parse_html
from cleaners.xpath_rules import CompiledRule, UnsupportedXPath, as_shipped, compile_rule, install, uninstall

PAGES = Path(__file__).resolve().parents[1] / "bench" / "data" / "extraction" / "html"
NS = {"re": "http://exslt.org/regular-expressions"}

# Every construct of the subset, with the edges XPath defines: the first of two attributes *as written*,
# a missing attribute as "", '=' on a present empty attribute, translate() dropping characters, nested
# not() and parentheses, re:test's "i" flag, .//tag inside a predicate, comments among the elements.
TRICKY_PAGE = """<html><body>
<div class="cookie-bar" id="top">a</div><div id="cookie" class="top">b</div>
<div id="x" class="reply-to">c</div><div class="reply-to" id="x">d</div>
<section style="display:none">e</section><span role="NAVigation">f</span><span role="">g</span>
<p data-lp-replacement-content="">h</p><p class="">i</p><p>j<!-- a comment --></p>
<div class="infinite-scroll"><h1>k</h1></div><div class="infinite-scroll">l</div>
<ul class="FullText">m</ul><div class="MAIN-content">n</div><div id="comments-1">o</div>
<aside class="teaser" aria-hidden="true">p</aside><div class=" hidden bottom">q</div>
</body></html>"""
TRICKY_RULES = [
    ".//*[re:test(@id|@class, 'cookie')]",
    ".//*[re:test(@id|@class, '^top')]",
    ".//*[starts-with(@id|@class, 'reply-')]",
    ".//*[starts-with(@class|@id, 'x')]",
    ".//*[@class='']",
    ".//*[@class]",
    ".//*[@id|@class]",
    ".//*[@data-lp-replacement-content or contains(translate(@role, 'NAV', 'na'), 'nigtion')]",
    ".//*[contains(@style, 'display:none') or contains(@role, '')]",
    ".//*[self::div or self::section][re:test(@class, 'infinite-?scroll')][not(.//h1) or @id='y']",
    ".//*[self::ul or self::div][re:test(@class, 'fulltext', 'i')]",
    ".//*[self::div and (contains(translate(@class, 'MC', 'mc'), 'main-content') or re:test(@id, '^comm'))]",
    ".//*[not(self::p or self::span)][re:test(@class, '(^|\\s)bottom|bottom(\\s|$)') or @aria-hidden='true']",
    ".//*[self::p][not(@class)]",
    ".//*[self::p][re:test(@class, '^$')]",     # matches "": elements without attributes are candidates too
    ".//*[self::div or self::p][@class or @id][1]",          # the first match among each element's children
    ".//*[self::div][contains(@class, 'scroll')][1]",
    "(.//*[self::div or self::span][@id or @role])[1]",       # the first match in the page
    "(.//*[self::ol][@id])[1]",                               # none
    "//*[self::html or self::div][not(@class)]",              # the whole page, its root included
    "//*[@class='c' or contains(@id, 'o')]",
]
NESTED_PAGE = """<html><body><div><p>a</p><div class="c">b<div id="i">c</div><div class="c">d</div></div>
<div class="c">e</div><span><p class="c">f</p><p>g</p><p id="i">h</p></span></div></body></html>"""


def _names(elements: list) -> list[str]:
    return [f"{element.tag}:{(element.text or '').strip()}" for element in elements]


@pytest.mark.parametrize("path", TRICKY_RULES)
@pytest.mark.parametrize("page", [TRICKY_PAGE, NESTED_PAGE])
def test_compiled_rule_matches_xpath_on_the_edges(path, page):
    tree = html.fromstring(page)
    xpath = etree.XPath(path, namespaces=NS)
    expected = xpath(tree)
    assert _names(compile_rule(xpath)(tree)) == _names(expected)


@pytest.mark.parametrize("path", [rule for rule in TRICKY_RULES if rule.startswith("//")])
def test_whole_page_rule_from_inside_the_page(path):
    """`//*` starts at the page's root whatever element it is asked from; `.//*` at that element."""
    tree = html.fromstring(NESTED_PAGE)
    inner = tree.find(".//span")
    xpath = etree.XPath(path, namespaces=NS)
    assert _names(compile_rule(xpath)(inner)) == _names(xpath(inner)) == _names(xpath(tree))


def test_first_match_per_parent():
    rule = compile_rule(etree.XPath(".//*[self::div or self::p][@class or @id][1]"))
    assert _names(rule(html.fromstring(NESTED_PAGE))) == ["div:b", "div:c", "p:f"]


def test_union_takes_the_attribute_written_first():
    tree = html.fromstring(TRICKY_PAGE)
    rule = compile_rule(etree.XPath(".//*[re:test(@id|@class, 'cookie')]", namespaces=NS))
    assert _names(rule(tree)) == ["div:a", "div:b"]
    rule = compile_rule(etree.XPath(".//*[re:test(@id|@class, '^top')]", namespaces=NS))
    assert _names(rule(tree)) == []      # "top" is never the attribute written first


@pytest.mark.parametrize("path", [
    ".//*[self::div][2]",                       # a position other than the first
    ".//*[self::div][1][@id]",                  # a predicate after the position
    "(.//*[self::div])[2]",
    "(.//*[self::div])[1]|(.//main)[1]",        # a union of paths
    ".//div[@id]",                              # a named step
    ".//*[string-length(@id) > 2]",             # another function, a comparison
    ".//*[re:replace(@id, 'a', 'g', 'b')]",
    ".//*[re:test(@id, 'a', 'gx')]",            # flags other than "i"
    ".//*[.//*]",
])
def test_outside_the_subset_is_refused(path):
    with pytest.raises(UnsupportedXPath):
        compile_rule(etree.XPath(path, namespaces=NS))


def test_install_replaces_the_rules_in_place_and_only_once():
    # the extraction module installs them at import: the pruning rules that dominated trafilatura's time
    assert {"OVERALL_DISCARD_XPATH[0]", "OVERALL_DISCARD_XPATH[1]", "REMOVE_COMMENTS_AND_LISTS_XPATH[0]",
            "RAW_TREE_PRUNE_XPATH[0]", "PRECISION_DISCARD_XPATH[1]"} <= set(extract_module.COMPILED_RULES)
    before = _compiled_rules()
    assert len(before) == len(extract_module.COMPILED_RULES)
    assert install(trafilatura_xpaths) == []           # a second install finds nothing left to compile
    with as_shipped(trafilatura_xpaths):
        assert install(trafilatura_xpaths) == extract_module.COMPILED_RULES
        assert uninstall(trafilatura_xpaths) == extract_module.COMPILED_RULES
    after = _compiled_rules()
    assert [id(rule) for rule in after] == [id(rule) for rule in before]   # compiled once, reused


def _real_pages(step: int = 1) -> list[str]:
    files = sorted(PAGES.glob("*.html.gz"))[::step]
    assert len(files) >= 100 // step
    return [decode_html(gzip.decompress(path.read_bytes()), None)[0] for path in files]


def _compiled_rules() -> list[CompiledRule]:
    return [rule for value in vars(trafilatura_xpaths).values() if isinstance(value, list)
            for rule in value if isinstance(rule, CompiledRule)]


def test_every_compiled_rule_matches_its_xpath_on_real_pages():
    """Every fourth of the 304 real pages of many sites in bench/data/extraction (all of them: 1 min), raw and
    as trafilatura's cleaning leaves them (converted tags such as list/item/head only exist there)."""
    rules = _compiled_rules()
    options = Extractor(output_format="txt", precision=True, tables=True)
    checked = 0
    for page in _real_pages(step=4):
        raw, _ = parse_html(page)
        if raw is None:
            continue
        cleaned = convert_tags(tree_cleaning(deepcopy(raw), options), options)
        for tree in (raw, cleaned):
            for rule in rules:
                assert rule(tree) == rule.xpath(tree), (rule.path, page[:200])
                checked += 1
    assert checked > 2 * 70 * len(rules)


def test_extraction_is_unchanged_by_the_compiled_rules():
    pages = _real_pages(step=8)
    fast = [extract_html(page) for page in pages]
    with as_shipped(trafilatura_xpaths):
        assert not _compiled_rules()
        slow = [extract_html(page) for page in pages]
    assert len(_compiled_rules()) == len(extract_module.COMPILED_RULES)
    assert fast == slow
    assert sum(result is not None for result in fast) > len(pages) * 0.8


def test_extraction_is_unchanged_by_the_c_element_lookup():
    """trafilatura's parser gives every element the plain HtmlElement class (`cleaners.extract`); lxml.html's own
    lookup (form fields with classes of their own) extracts the same text from real pages, forms included."""
    from lxml.html import FormElement, HtmlElement

    form_page = ("<html><body><article><p>" + "A paragraph long enough to be the main text of this page. " * 12
                 + "</p><form><input name='q'><select name='s'><option>one</option></select></form></article>"
                 "</body></html>")
    pages = [form_page, *_real_pages(step=8)]
    tree, _ = parse_html(form_page)
    assert type(tree.find(".//form")) is HtmlElement and type(tree.find(".//p")) is HtmlElement
    fast = [extract_html(page) for page in pages]
    with extract_module.shipped_element_lookup():
        assert isinstance(parse_html(form_page)[0].find(".//form"), FormElement)
        slow = [extract_html(page) for page in pages]
    assert type(parse_html(form_page)[0].find(".//form")) is HtmlElement   # put back after the block
    assert fast == slow and fast[0] is not None
