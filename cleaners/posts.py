"""Posts of forum, Q&A and comment pages: the repeated containers that hold each post's body.

Article extractors keep one main block and lose the rest of a thread (trafilatura's `favor_precision` keeps
the first post of a Discuz thread, one zhihu answer, no Weibo comment). `find_posts(tree, url)` finds the
post bodies in document order:

1. the post-body containers of well-known engines and sites (`ENGINES`: Discuz `t_f` / `postmessage_*`, phpBB,
   vBulletin `post_message_*`, XenForo `bbWrapper` (1.x: `messageText`), Discourse `cooked`, Invision
   `commentContent`, Vanilla `Message userContent`, SMF `msg_*`, Kunena `kmsgtext`, MyBB `post_body`, Flarum
   `Post-body`, Stack Exchange `s-prose` / `post-text`, Homeland / ruby-china `markdown` replies; on their own
   hosts: Reddit, zhihu `RichText`, tieba `d_post_content`, douban `comment-content`, Weibo comments), when at
   least `MIN_POSTS` hold text;
2. else, on a page whose URL names a forum, Q&A or social site (`cleaners.domain.source_type`), the largest group
   of elements sharing a tag and class, not nested in each other, each with text that is not mostly links.

On any other page `find_replies(tree)` offers the largest such group whose class names a post or reply
(`POST_CLASS`); `cleaners.extract` adds it only to a text that already holds one of its posts (the thread's first
post, which trafilatura found, continued by its replies).

`post_lines(element)` is a post's text, one line per block, without quoted earlier posts, signatures, vote
counts and reply chrome (`CHROME`).
"""
from __future__ import annotations

import re
from collections import Counter, defaultdict
from typing import Callable
from urllib.parse import urlsplit

from lxml.etree import XPath
from lxml.html import HtmlElement

from cleaners.domain import source_type

MIN_POSTS = 2
MIN_POST_CHARS = 2          # a post of one or two characters ("顶", "+1") is still a post
MAX_LINK_SHARE = 0.5        # a "post" that is mostly link text is navigation
GENERIC_MIN_POSTS = 3
#: class names of post containers outside the known engines (`find_replies`): post, message / msg, reply /
#: replies, response, answer, discussion ("div.post", "div.msg-rightpanel", "div.spPostSection",
#: "div.post-response-item"). Not "comment": the comment section of a news story or blog post is no part of its
#: text (bench/extraction_quality.py: with "comment" English articles lost F1 0.012, without it 0.000).
POST_CLASS = re.compile(r"post|message|msg|repl|respon|answer|discussion", re.IGNORECASE)

# (engine, pattern its page's host + path must match or "" for any page, strings one of which the page's class /
# id / slot attributes must contain before the XPath runs (one pass over the page instead of one per engine), XPath
# of the post bodies). Class names that
# news sites use for their comment sections too (`comment-content`, `md`, `text`) are limited to their site's
# thread pages: article pages (a douban note, a news story) keep their comments out.
ENGINES: tuple[tuple[str, str, tuple[str, ...], str], ...] = (
    ("discuz", "", ("t_f", "postmessage_"),
     "//td[contains(concat(' ', @class, ' '), ' t_f ')] | //*[starts-with(@id, 'postmessage_')]"),
    ("vbulletin", "", ("post_message_", "postcontent"),
     "//*[starts-with(@id, 'post_message_')] | //blockquote[contains(@class, 'postcontent')]"),
    ("phpbb", "", ("postbody",), "//div[contains(concat(' ', @class, ' '), ' postbody ')]//div[@class='content']"),
    ("xenforo", "", ("bbWrapper", "messageText"),
     "//article[contains(@class, 'message')]//div[contains(@class, 'bbWrapper')]"
     " | //li[contains(@class, 'message')]//blockquote[contains(@class, 'messageText')]"),   # XenForo 1.x
    ("discourse", "", ("cooked", "crawler-post"),
     "//div[contains(concat(' ', @class, ' '), ' cooked ')]"
     " | //div[contains(concat(' ', @class, ' '), ' crawler-post ')]/div[@itemprop='text']"),
    ("invision", "", ("ipsType_richText", "ipsRichText"), "//div[@data-role='commentContent']"),   # 4.x, 5.x
    ("vanilla", "", ("userContent",),
     "//div[contains(concat(' ', @class, ' '), ' Message ') and contains(concat(' ', @class, ' '), ' userContent ')]"),
    ("smf", "", ("msg_",), "//div[@class='inner' and starts-with(@id, 'msg_')]"),
    ("kunena", "", ("kmsgtext",), "//div[contains(concat(' ', @class, ' '), ' kmsgtext ')]"),
    ("stackexchange", "", ("s-prose", "post-text"),
     "//div[contains(concat(' ', @class, ' '), ' s-prose ')][ancestor::*[contains(@class, 'postcell')"
     " or contains(@class, 'answercell')]] | //div[@class='post-text']"),
    ("reddit", r"(^|\.)reddit\.com/", ("usertext-body", "comment", "text-body"),
     "//div[contains(@class, 'usertext-body')]/div[@class='md'] | //*[@slot='comment'] | //*[@slot='text-body']"),
    ("zhihu", r"(^|\.)zhihu\.com/", ("RichText",), "//span[contains(concat(' ', @class, ' '), ' RichText ')]"),
    ("tieba", r"^tieba\.baidu\.com/", ("d_post_content",),
     "//div[contains(concat(' ', @class, ' '), ' d_post_content ')]"),
    ("douban", r"(^|\.)douban\.com/(subject/\d+/(comments|reviews)|review/|group/topic/|status/)",
     ("comment-content", "review-content", "reply-content"),
     "//*[contains(concat(' ', @class, ' '), ' comment-content ')] | //div[@class='review-content']"
     " | //div[contains(@class, 'reply-content')]"),
    ("weibo", r"(^|\.)weibo\.(com|cn)/", ("detail_wbtext", "wbpro-list"),
     "//*[contains(@class, 'detail_wbtext')] | //div[contains(@class, 'wbpro-list')]//div[@class='text']"),
    ("flarum", "", ("PostStream-item",),
     "//*[contains(concat(' ', @class, ' '), ' PostStream-item ')]"
     "//div[contains(concat(' ', @class, ' '), ' Post-body ')]"),
    ("mybb", "", ("post_body",), "//div[contains(concat(' ', @class, ' '), ' post_body ')]"),
    ("homeland", "", ("topic-detail", "reply"),
     "//div[contains(@class, 'topic-detail')]//div[contains(@class, 'markdown')]"
     " | //div[contains(concat(' ', @class, ' '), ' reply ')]//div[contains(@class, 'markdown')]"),
)
CHROME = ("self::blockquote or self::script or self::style or self::button or self::noscript or self::form"
          " or contains(@class, 'quote') or contains(@class, 'signature') or contains(@class, 'sign')"
          " or contains(@class, 'pstl') or contains(@class, 'vote') or contains(@class, 'reply-btn')"
          " or contains(@class, 'edited') or contains(@class, 'attach')"
          " or contains(@class, 'share')")   # share buttons and "copy link" pop-ups (Baidu Zhidao's wgt-share-link)
_CHROME_XPATH = XPath(f".//*[{CHROME}]")
_BLOCK_TAGS = frozenset({"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "table",
                         "ul", "ol", "dd", "dt", "section", "article", "blockquote"})
_SPACES = re.compile(r"[ \t\r\f\v\u00a0\u3000]+")
THREAD_KINDS = frozenset({"论坛", "问答", "社交"})
#: every class, id and slot value of the page as plain strings (lxml's default "smart" strings, which know their
#: element, cost twice the time)
_ATTRIBUTES = XPath("//@class | //@id | //@slot", smart_strings=False)
#: HTML elements whose descendants are page chrome, not posts (see `_generic_group`): sidebars, navigation, the
#: page's header and footer (WHATWG HTML, "sections": aside, nav, header, footer) and hyperlinks
NOT_POSTS_INSIDE = ("aside", "nav", "header", "footer", "a")
#: WAI-ARIA roles of the same chrome (the landmark roles complementary, navigation, banner, contentinfo, search)
#: and of pop-ups (dialog, menu: a hidden modal's help text, an editor's cheat sheet)
NOT_POSTS_ROLES = ("complementary", "navigation", "banner", "contentinfo", "search", "dialog", "menu")


def find_posts(tree: HtmlElement, url: str | None = None) -> tuple[str, list[list[str]]] | None:
    """(engine, posts as lists of lines) of a thread page, in document order; None when the page is no thread."""
    where = _host_and_path(url)
    attributes = " ".join(_ATTRIBUTES(tree))
    for engine, site, markers, xpath in ENGINES:
        if (site and not re.search(site, where)) or not any(marker in attributes for marker in markers):
            continue
        posts = _texts(_outermost(tree.xpath(xpath)))
        if len(posts) >= MIN_POSTS:
            return engine, posts
    if is_discussion(url):
        posts = _texts(_generic_group(tree))
        if len(posts) >= GENERIC_MIN_POSTS:
            return "generic", _without_template_lines(posts)
    return None


def find_replies(tree: HtmlElement) -> list[list[str]]:
    """The posts of the largest group of at least GENERIC_MIN_POSTS elements whose class matches `POST_CLASS`
    (see `_generic_group`), on a page whose URL names no forum; [] when there is none. Forums on their own
    domains and URL shapes (pistonheads `topic.asp`, a `message_board/index.php`, phpBB-like themes) keep every
    post in such a group, but so can a page's list of teasers ("div.post-preview": a member's latest posts), so
    `cleaners.extract` only adds a group one of whose posts trafilatura already found (`_holds_a_post` there)."""
    posts = _texts(_generic_group(tree, POST_CLASS))
    return _without_template_lines(posts) if len(posts) >= GENERIC_MIN_POSTS else []


def is_discussion(url: str | None) -> bool:
    """Whether the URL alone names a forum, Q&A or social page (`cleaners.domain.source_type`: its host table
    and forum software's URL shapes)."""
    return bool(url) and source_type(url) in THREAD_KINDS


def _host_and_path(url: str | None) -> str:
    try:
        parts = urlsplit(url or "")
    except ValueError:
        return ""
    return (parts.hostname or "").lower() + (parts.path or "/")


def post_lines(element: HtmlElement) -> list[str]:
    """The post's text, one line per block element or <br>, without quotes, signatures and chrome."""
    pieces: list[str] = []
    skip = set(_CHROME_XPATH(element))

    def walk(node: HtmlElement) -> None:
        if isinstance(node.tag, str) and node not in skip:
            block = node.tag in _BLOCK_TAGS
            pieces.append("\n" if block else "")
            pieces.append(node.text or "")
            for child in node:
                walk(child)
            pieces.append("\n" if block else "")
        if node is not element and node.tail:
            pieces.append(node.tail)

    walk(element)
    lines = (_SPACES.sub(" ", line).strip() for line in "".join(pieces).split("\n"))
    return [line for line in lines if line]


def _texts(elements: list[HtmlElement]) -> list[list[str]]:
    posts = []
    for element in elements:
        lines = post_lines(element)
        chars = sum(len(line) for line in lines)
        if chars >= MIN_POST_CHARS and _link_chars(element) <= MAX_LINK_SHARE * max(chars, 1):
            posts.append(lines)
    return posts


def _without_template_lines(posts: list[list[str]]) -> list[list[str]]:
    """The posts without the lines that at least half of them hold word for word (and at least
    GENERIC_MIN_POSTS): the group's template, not what was written (NodeBB's "Offline", "wrote on", "last edited
    by" in every post, Baidu Zhidao's "展开全部", "评论", "举报" in every answer; bench/extraction_quality.py: no
    page lower, Baidu Zhidao +0.012). Posts left empty are dropped."""
    counts = Counter(line for post in posts for line in set(post))
    least = max(GENERIC_MIN_POSTS, (len(posts) + 1) // 2)
    template = {line for line, n in counts.items() if n >= least}
    kept = [[line for line in post if line not in template] for post in posts]
    return [post for post in kept if post]


def _link_chars(element: HtmlElement) -> int:
    return sum(len(a.text_content().strip()) for a in element.iter("a"))


def _outermost(elements: list[HtmlElement]) -> list[HtmlElement]:
    """Elements not inside another of them (a quoted post nested in a post is part of that post), in order."""
    chosen = set(elements)
    below: dict[HtmlElement, bool] = {}
    return [e for e in elements if not _below(e, chosen.__contains__, below)]


def _in_chrome(element: HtmlElement, below: dict[HtmlElement, bool]) -> bool:
    """Whether the element is inside a `NOT_POSTS_INSIDE` element or one with a `NOT_POSTS_ROLES` role (`below`:
    the answers so far, see `_below`)."""
    return _below(element, _is_chrome, below)


def _is_chrome(element: HtmlElement) -> bool:
    return element.tag in NOT_POSTS_INSIDE or element.get("role") in NOT_POSTS_ROLES


def _below(element: HtmlElement, marked: Callable[[HtmlElement], bool], below: dict[HtmlElement, bool]) -> bool:
    """Whether an ancestor of `element` (not the element itself) is `marked`. `below` maps each element walked
    so far to "it or one of its ancestors is marked", so that the members of a group, which share most of their
    ancestors, walk each ancestor once (a group of n posts at depth d: n + d steps, not n * d)."""
    walked = []
    node = element.getparent()
    answer = False
    while node is not None:
        known = below.get(node)
        if known is not None:
            answer = known
            break
        walked.append(node)
        if marked(node):
            answer = True
            break
        node = node.getparent()
    for node in walked:
        below[node] = answer
    return answer


def _generic_group(tree: HtmlElement, names: re.Pattern[str] | None = None) -> list[HtmlElement]:
    """The (tag, class) group with the most text among groups of >= GENERIC_MIN_POSTS elements (only classes that
    `names` finds a match in, when given).

    Elements inside page chrome (`NOT_POSTS_INSIDE`: HTML's sectioning elements for sidebars, navigation, page
    header and footer, and links; `NOT_POSTS_ROLES`: their ARIA landmark roles and dialogs) are no posts: the
    largest repeated group there is a widget of recent activity or topics in an `<aside>` sidebar, a list of
    related questions whose items are `<a>` links, or the rows of a hidden modal's help (bench/extraction_quality.py:
    on WordPress BuddyPress / wpForo, Apache Answer and FlaskBB thread pages such a group was taken for the
    thread and cost F1 0.2-0.6 per page)."""
    groups: dict[tuple[str, str], list[HtmlElement]] = defaultdict(list)
    named: dict[str, bool] = {}    # class -> `names` finds a match in it (a page repeats its classes)
    for element in tree.iter("div", "td", "li", "article", "section", "p", "span"):
        cls = (element.get("class") or "").strip()
        if not cls:
            continue
        if names is not None:
            if cls not in named:
                named[cls] = names.search(cls) is not None
            if not named[cls]:
                continue
        groups[(element.tag, cls)].append(element)
    best, best_chars = [], 0
    in_chrome: dict[HtmlElement, bool] = {}
    for members in groups.values():
        if len(members) < GENERIC_MIN_POSTS:
            continue
        members = _outermost([e for e in members if not _in_chrome(e, in_chrome)])
        if len(members) < GENERIC_MIN_POSTS:
            continue
        chars = sum(len(e.text_content()) for e in members) - sum(_link_chars(e) for e in members)
        if chars > best_chars:
            best, best_chars = members, chars
    return best
