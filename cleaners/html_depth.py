"""Flatten HTML nested deeper than libxml2 can parse, keeping every piece of text.

libxml2 (lxml's HTML parser) stops at 256 open elements ("Excessive depth in document") and drops
the rest of the page; `huge_tree` only moves the limit to 2048, and trafilatura's tree walks would
then recurse thousands of levels deep. `flatten_deep_html` rewrites such a page in one linear pass
over its tags: past `soft` open elements it drops the tags of generic wrappers (div, span, font, ...),
past `hard` the tags of every element, so the tree libxml2 builds stays under `hard` plus the implied
html and body. Text, comments, attributes and script/style content are copied unchanged; a dropped
block tag becomes one <br>, so lines stay apart. Only pages that hit the limit are flattened.

Depth is counted on a stack of open elements that pops only what the output closes explicitly: an
end tag pops up to its own element and writes end tags for the kept elements above it, and a <p>,
<li>, ... closes one of the same name on top, as libxml2 does; libxml2 may close elements sooner than
this stack, never later. Tags are read as the HTML5 tokenizer (and libxml2 2.14) reads them.
`extract_html` still checks the new parse: a page this misreads is reported, not lost silently.
"""
from __future__ import annotations

import re

#: elements libxml2 parses without content (an end tag is never needed)
VOID = frozenset("area base basefont br col frame hr img input isindex link meta param".split())
#: elements whose content libxml2 reads as text up to their end tag
RAW_TEXT = frozenset("script style textarea title xmp iframe noembed noframes".split())
#: libxml2 opens these once (a second start tag is ignored) and stops reading at </html>: their start
#: tags are copied and not counted, their end tags left out (libxml2 may also skip one after a misplaced start)
ROOTS = frozenset({"html", "head", "body"})
#: a start tag of these closes an open element of the same name on top
SIBLINGS = frozenset("p li option tr td th a".split())
#: wrappers, dropped from depth `soft` on; the inline ones leave nothing, the others a <br>
WRAPPERS = frozenset("div span font section center b i u em strong small big".split())
INLINE = frozenset("span font b i u em strong small big a".split())
BREAK = "<br>"

_START = re.compile(r"<(?:!--|/?[A-Za-z])")
#: one tag as the HTML5 tokenizer (and libxml2 2.14) reads it: quoted values may hold ">", a final "/"
#: makes it self-closing unless it belongs to an unquoted value; no match means no end before EOF
_TAG = re.compile(r"""
    <(/?)([A-Za-z][^\t\n\f\r\ />]*+)                 # start or end, name
    (?: [\t\n\f\r\ ]++ | /(?!>)                       # blanks, a stray "/"
      | [^\t\n\f\r\ />][^\t\n\f\r\ />=]*+            # attribute name, then "= value" or no "="
        (?: [\t\n\f\r\ ]*+=[\t\n\f\r\ ]*+ (?: "[^"]*+" | '[^']*+' | [^\t\n\f\r\ >"'][^\t\n\f\r\ >]*+ | (?=>) )
          | (?![\t\n\f\r\ ]*+=) )
    )*+ (/?)>""", re.X)
_COMMENT = re.compile(r"<!--(?:-?>|.*?--!?>)", re.S)
_RAW_END = {name: re.compile(f"</{name}(?=[\\t\\n\\f\\r />])", re.I) for name in RAW_TEXT}


def flatten_deep_html(html: str, soft: int = 100, hard: int = 200) -> str:
    """`html` without the tags of wrappers nested deeper than `soft` and of any element deeper than `hard`."""
    out: list[str] = []
    stack: list[tuple[str, bool]] = []  # (name, kept) of every open element, dropped ones too
    open_names: dict[str, int] = {}
    kept_depth = pos = 0

    def add_break() -> None:
        if not out or out[-1] is not BREAK:  # identity: only generated breaks, never a <br> of the page
            out.append(BREAK)

    def close(end_tag: str = "") -> None:
        """Close the top element: a kept one gets `end_tag` or a generated end tag, a dropped block a <br>."""
        nonlocal kept_depth
        name, kept = stack.pop()
        open_names[name] -= 1
        kept_depth -= kept
        if kept:
            out.append(end_tag or f"</{name}>")
        elif name not in INLINE:
            add_break()

    while start := _START.search(html, pos):
        text = html[pos:start.start()]
        if text and not (text.isspace() and out and out[-1] is BREAK):
            out.append(text)
        pos = start.start()
        if html.startswith("<!--", pos):  # a comment runs to "-->", or to the end of the page
            comment = _COMMENT.match(html, pos)
            end = comment.end() if comment else len(html)
            out.append(html[pos:end])
            pos = end
            continue
        tag = _TAG.match(html, pos)
        if tag is None:  # "<" + letter without an end: the rest of the page is one broken tag
            break
        name, pos = tag[2].lower(), tag.end()
        if name in ROOTS:
            if not tag[1]:
                out.append(tag[0])
        elif name in VOID or (tag[3] and not tag[1]):  # <x/> has no content
            out.append(tag[0])
        elif tag[1]:  # end tag
            if not open_names.get(name):
                out.append(tag[0])  # stray: libxml2 ignores it (or closes sooner)
                continue
            while stack[-1][0] != name:
                close()
            close(tag[0])
        elif name in RAW_TEXT:
            end = _RAW_END[name].search(html, pos)
            out.append(html[tag.start():end.start() if end else len(html)])
            pos = end.start() if end else len(html)
        else:
            if name in SIBLINGS and stack and stack[-1][0] == name:
                close()
            keep = kept_depth < soft or (kept_depth < hard and name not in WRAPPERS)
            stack.append((name, keep))
            open_names[name] = open_names.get(name, 0) + 1
            kept_depth += keep
            if keep:
                out.append(tag[0])
            elif name not in INLINE:
                add_break()
    out.append(html[pos:])
    return "".join(out)
