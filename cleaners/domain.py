"""Source type: what kind of page a record is (WuDaoCorpora's `dataType` labels 百科, 博客, 新闻 ...), from its URL
and, for hosts the table does not know, from cues in its text.

WuDaoCorpora labels every record with its domain (the released 200 GB base set counts 55 `dataType` values, led by
百科 and 博客). The source types here are the kinds of page such labels start from: 百科 (encyclopedia), 新闻
(news), 博客 (blog and self-media), 论坛 (forum), 问答 (Q&A), 经验 (how-to), 文学 (literature), 政务 (government),
学术 (academic), 商品 (shopping), 社交 (social media: an extension of ours, for Weibo-like posts) and 其他.

Rules, first match wins:

1. the host table `cleaners/data/source_hosts.tsv` (host suffix, optional path pattern, label): a host matches its
   suffix at a dot boundary (`news.sina.com.cn` matches `sina.com.cn`), an entry ending in a dot is a host prefix
   (`bbs.` matches every `bbs.*` forum host);
2. URL paths that name the kind of page (`/question/`, `/thread`, `viewthread.php`, `/wiki/`, `/blog/`, ...; a
   `/news/`, `/story/` or `/article/` section: news);
3. cues in the text: reply floors and "楼主" (forum), "最佳答案" / "个回答" (Q&A), chapter headings (literature),
   news datelines and bylines ("本报讯", "记者", "责任编辑", "(Reuters) -");
4. a dated article URL (`/2024-05-10/`, `/20240510/`, `/2024/05/10/`, `/2019/11/`, `/n1/2024/0510/`): news (a
   blog on dated URLs is counted as news here: the URL alone cannot tell them apart);
5. else 其他.
"""
from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

from cleaners.document import Document, data_type
from cleaners.step import Counted, Step, register
from cleaners.topic import TOPIC_NAMES, TopicModel, chinese_name

SOURCE_TYPES = {"百科": "encyclopedia", "新闻": "news", "博客": "blog", "论坛": "forum", "问答": "qa", "经验": "howto",
                "文学": "literature", "政务": "government", "学术": "academic", "商品": "shopping", "社交": "social",
                "其他": "other"}
OTHER = "其他"
TOPIC_LANGUAGES = ("zh",)   # the bundled topic model is reliable on Chinese only (English: held-out accuracy 0.50)
MIN_TOPIC_SCORE = 0.8       # see DomainLabel

_PATH_RULES = (
    (re.compile(r"/(questions?|ask|answers?)/|/wenda/", re.I), "问答"),
    # forum software's URL shapes: phpBB viewtopic.php, vBulletin showthread.php, Discourse /t/<slug>/<id>,
    # XenForo /threads/, Vanilla /discussion/<id>, Invision /topic/<id>-, MyBB /thread-<id>, Reddit /comments/
    (re.compile(r"/(thread|threads|topics?|forums?|bbs|discussions?|comments)/|viewthread\.php|showthread\.php"
                r"|forumdisplay\.php|viewtopic\.php|/t/[^/]|/thread-\d", re.I), "论坛"),
    (re.compile(r"/wiki/|/baike/|/item/", re.I), "百科"),
    (re.compile(r"/blogs?/|/posts?/\d|/p/\d", re.I), "博客"),
    (re.compile(r"/(product|item|goods|sku)s?/|/dp/[A-Z0-9]{10}", re.I), "商品"),
    (re.compile(r"/(novel|chapter|book)s?/", re.I), "文学"),
    (re.compile(r"/(news|story|stories|articles?|opinion|world|politics|business|sports?)(/|[-_.])", re.I), "新闻"),
)
_DATED_PATH = re.compile(r"/(19|20)\d\d[-/]?[01]?\d([-/]?[0-3]?\d)?/|/n\d/20\d\d/[01]\d[0-3]\d/"
                         r"|[/-]20\d\d[01]\d[0-3]\d[/_-]|/t20\d\d[01]\d[0-3]\d_")
_TEXT_CUES = (
    ("问答", re.compile(r"最佳答案|提问者|问题补充|\d+\s*个回答|已采纳|Accepted answer|\d+ Answers?\b"), 1),
    ("论坛", re.compile(r"楼主|沙发|板凳|\d+\s*楼|回复于|发表于|只看该作者|Reply #\d+|Quote from:"), 2),
    ("文学", re.compile(r"^\s*第[一二三四五六七八九十百千零〇0-9]+[章回节卷]", re.M), 2),
    ("新闻", re.compile(r"本报讯|本报记者|责任编辑|新华社|中新网|\(记者|（记者|记者\s*\S{2,4}\s*(摄|报道)"
                        r"|\d{1,2}月\d{1,2}日(电|讯)|\((Reuters|AP|AFP)\)\s*[-—]|Associated Press"), 1),
)


def english_name(label: str) -> str:
    """The English name of a source type or topic label (`新闻` -> `news`, `体育` -> `sports`); others unchanged."""
    return SOURCE_TYPES.get(label) or _TOPIC_ENGLISH.get(label, label)


_TOPIC_ENGLISH = {chinese: english for english, chinese in TOPIC_NAMES.items()}


@lru_cache(maxsize=1)
def host_rules() -> tuple[tuple[str, re.Pattern[str] | None, str], ...]:
    """The rows of `cleaners/data/source_hosts.tsv`: (host suffix or prefix, path pattern or None, label)."""
    rows = []
    text = resources.files("cleaners").joinpath("data", "source_hosts.tsv").read_text("utf-8")
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        host, path, label = line.split("\t")
        if label not in SOURCE_TYPES:
            raise ValueError(f"source_hosts.tsv line {number}: unknown label {label!r}")
        rows.append((host.lower(), None if path == "-" else re.compile(path), label))
    return tuple(rows)


@lru_cache(maxsize=4096)
def _host_rows(host: str) -> tuple[tuple[re.Pattern[str] | None, str], ...]:
    """(path pattern, label) of the table's rows whose host part `host` matches, in table order (a crawl holds many
    pages of one host: the table is walked once per host, not once per page)."""
    return tuple((pattern, label) for rule, pattern, label in host_rules() if host and _host_matches(host, rule))


def _host_matches(host: str, rule: str) -> bool:
    if rule.endswith("."):
        return host.startswith(rule) or f".{rule}" in f".{host}"
    return host == rule or host.endswith("." + rule)


def source_type(url: str, text: str = "") -> str:
    """The source type of a page at `url` with main text `text` (see the module docstring); never raises."""
    try:
        parts = urlsplit(url or "")
        host = (parts.hostname or "").lower().removeprefix("www.")
    except ValueError:
        parts, host = urlsplit(""), ""
    path = parts.path + ("?" + parts.query if parts.query else "")
    for pattern, label in _host_rows(host):
        if pattern is None or pattern.search(parts.path):
            return label
    for pattern, label in _PATH_RULES:
        if pattern.search(path):
            return label
    sample = (text or "")[:5000]
    for label, pattern, needed in _TEXT_CUES:
        if len(pattern.findall(sample)) >= needed:
            return label
    if _DATED_PATH.search(parts.path):
        return "新闻"
    return OTHER


@register("domain")
class DomainLabel(Step):
    """`domain`: every document's source type (`source_type`) and topic (`cleaners.topic`, the bundled model or
    `model_path`) go into its record's `domain: {"source_type", "topic", "topic_score"}`; its WuDao `dataType` is
    the input's own label, else the source type, else the topic's Chinese name when `topic_score` reaches
    `min_topic_score`, else 其他. Counted per `dataType` in stats.json's histograms.

    `min_topic_score` 0.8: on held-out THUCNews headlines the bundled model reaches it for 91% of them, which it
    labels 91.5% right (87% right over all; `scripts/train_topic.py` prints these as `covered` and
    `accuracy_covered`). The topic is asked only of documents in `topic_languages` (by default
    Chinese, where the bundled model is reliable; `[]`: all) and
    is left out of the record otherwise. `keep: [labels]` keeps only documents with one of these labels as their
    `dataType`, source type or topic (either name); the others drop as `domain:<dataType>`. `topic: false` turns
    the classifier off."""

    def __init__(self, keep: list[str] | None = None, model_path: str | None = None, topic: bool = True,
                 min_topic_score: float = MIN_TOPIC_SCORE, topic_languages: list[str] | None = None):
        if keep is not None and (isinstance(keep, str) or not all(isinstance(label, str) for label in keep)):
            raise ValueError(f"domain: keep must be a list of labels, got {keep!r}")
        if not 0.0 <= float(min_topic_score) <= 1.0:
            raise ValueError(f"domain: min_topic_score must be in [0, 1], got {min_topic_score!r}")
        if topic_languages is not None and (isinstance(topic_languages, str)
                                            or not all(isinstance(x, str) for x in topic_languages)):
            raise ValueError(f"domain: topic_languages must be a list of language codes, got {topic_languages!r}")
        self.keep = None if keep is None else frozenset(keep)
        self.model_path, self.topic, self.min_topic_score = model_path, bool(topic), float(min_topic_score)
        self.topic_languages = frozenset(TOPIC_LANGUAGES if topic_languages is None else topic_languages)
        self._model: TopicModel | None = None

    def setup(self) -> None:
        if self.topic and self._model is None:
            self._model = TopicModel(self.model_path)

    def __getstate__(self) -> dict[str, Any]:
        return dict(self.__dict__, _model=None)    # fastText models do not pickle; workers load in setup()

    def apply(self, doc: Document) -> Any:
        domain: dict[str, Any] = {"source_type": source_type(doc.url, doc.text)}
        if self.topic and (not self.topic_languages or doc.lang in self.topic_languages):
            self.setup()
            topic, score = self._model.predict(doc.text)
            if topic:
                domain.update(topic=topic, topic_score=round(score, 4))
        doc.meta["domain"] = domain
        label = domain["source_type"]
        if label == OTHER and domain.get("topic_score", 0.0) >= self.min_topic_score:
            label = chinese_name(domain["topic"])
        doc.meta["domain_label"] = label
        label = data_type(doc, OTHER)
        if self.keep is not None and self.keep.isdisjoint(
                (label, domain["source_type"], domain.get("topic"), chinese_name(domain.get("topic", "")))):
            return Counted(f"domain:{label}", hists={"dataType": label})
        return Counted(doc, hists={"dataType": label})
