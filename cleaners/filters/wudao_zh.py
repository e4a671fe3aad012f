"""WuDaoCorpora's rule-based cleaning for Chinese web text (Yuan et al. 2021, "WuDaoCorpora: A super
large-scale Chinese corpora for pre-training language models", AI Open 2, section 3 "data cleaning").

The rules kept here, with the paper's numbers as the MNBVC project restates them (wiki.mnbvc.org, 数据清洗,
"基于规则对commoncrawl数据做初步清洗"): drop paragraphs with fewer than 10 Chinese characters; cut a
paragraph's last sentence when it has no end punctuation; drop pages whose Chinese share is under 70%.
The other WuDao rules live in their own steps (t2s, pii, wordlist, normalize).
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from cleaners.document import Document
from cleaners.filters.params import check_fraction, check_non_negative
from cleaners.filters.text_stats import count_alnum, count_han
from cleaners.step import Step, register

# Closing quotes and brackets that may follow the end punctuation of a sentence.
CLOSERS = "\u201d\u2019\u300d\u300f\uff09)\u300b\u3011\"'"
# A sentence end: Chinese/ASCII end punctuation (an ASCII period not inside a number), then closers.
_END = r"(?:[。！？!?…]|\.(?!\d))[" + re.escape(CLOSERS) + r"]*"
ENDS_WITH_SENTENCE_END = re.compile(_END + r"\s*$")
# A colon or semicolon at a paragraph's end closes a clause that introduces or continues a list: not cut.
ENDS_WITH_CLAUSE_MARK = re.compile(r"[：；:;]\s*$")
# Greedy prefix up to the last sentence end of a paragraph (the regex engine backtracks from the end).
UP_TO_LAST_SENTENCE_END = re.compile(r"(?s).*" + _END)


def cut_unfinished_sentence(paragraph: str) -> str:
    """The paragraph without a trailing sentence that lacks end punctuation.

    A paragraph with no sentence end at all (a heading, a list item, a caption) is returned unchanged:
    there is no complete sentence to keep, and the length rule judges it instead. Neither is a paragraph
    ending in a colon or semicolon (a list's lead-in or a list item).
    """
    if ENDS_WITH_SENTENCE_END.search(paragraph) or ENDS_WITH_CLAUSE_MARK.search(paragraph):
        return paragraph
    match = UP_TO_LAST_SENTENCE_END.match(paragraph)
    return paragraph[: match.end()] if match else paragraph


@register("wudao_zh")
@dataclass(kw_only=True)
class WudaoZh(Step):
    """WuDao paragraph cleaning (a transform) followed by document checks, for Chinese documents.

    Paragraphs are the non-empty lines (stripped); kept ones are joined with "\\n". Per paragraph:
    with `cut_trailing_fragment` (on), a trailing sentence without end punctuation (。！？!?…, optionally
    followed by closing quotes/brackets) is cut; then a paragraph with fewer than `min_paragraph_chars` (10,
    WuDao) Chinese characters is dropped, unless `keep_short_sentences` (on) and it is a complete sentence
    (ends with end punctuation and has a Chinese character): short dialogue lines are content, while
    navigation, bylines, dates and link labels do not end like sentences.

    Reasons: `zh-empty-after-cleaning` (no paragraph left), `zh-too-few-chinese-chars` (fewer than
    `min_doc_chinese_chars` (50, project default: WuDao gives no document minimum) Chinese characters left),
    `zh-low-chinese-ratio` (Chinese characters / letters and digits below `min_chinese_ratio` (0.7, WuDao)).
    The ratio leaves out whitespace and punctuation by default (`ratio_counts_punctuation: false`): on the
    magic-html-zh article ground truth in corpus-samples (33 real news articles), counting punctuation too
    dropped 2 of them after paragraph cleaning, leaving it out dropped none.
    """

    languages = ("zh",)

    min_paragraph_chars: int = 10
    keep_short_sentences: bool = True
    cut_trailing_fragment: bool = True
    min_doc_chinese_chars: int = 50
    min_chinese_ratio: float | None = 0.7
    ratio_counts_punctuation: bool = False

    def __post_init__(self) -> None:
        check_non_negative("wudao_zh", "min_paragraph_chars", self.min_paragraph_chars, allow_none=False)
        check_non_negative("wudao_zh", "min_doc_chinese_chars", self.min_doc_chinese_chars, allow_none=False)
        check_fraction("wudao_zh", "min_chinese_ratio", self.min_chinese_ratio)

    def clean_paragraphs(self, text: str) -> tuple[list[str], int]:
        """(kept paragraphs, their Chinese character count)."""
        kept: list[str] = []
        han_total = 0
        for raw in text.split("\n"):
            paragraph = raw.strip()
            if not paragraph:
                continue
            if self.cut_trailing_fragment:
                paragraph = cut_unfinished_sentence(paragraph)
            han = count_han(paragraph)
            if han < self.min_paragraph_chars and not (
                self.keep_short_sentences and han and ENDS_WITH_SENTENCE_END.search(paragraph)
            ):
                continue
            kept.append(paragraph)
            han_total += han
        return kept, han_total

    def apply(self, doc: Document) -> Document | str:
        kept, han = self.clean_paragraphs(doc.text)
        if not kept:
            return "zh-empty-after-cleaning"
        if han < self.min_doc_chinese_chars:
            return "zh-too-few-chinese-chars"
        text = "\n".join(kept)
        if self.min_chinese_ratio is not None:
            if self.ratio_counts_punctuation:
                denominator = len("".join(text.split()))
            else:
                denominator = count_alnum(text)
            if han / max(1, denominator) < self.min_chinese_ratio:
                return "zh-low-chinese-ratio"
        return doc if text == doc.text else dataclasses.replace(doc, text=text)
