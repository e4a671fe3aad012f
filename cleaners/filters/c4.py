"""C4's line-level cleaning and page-level drops for English (Raffel et al. 2020, "Exploring the Limits of
Transfer Learning with a Unified Text-to-Text Transformer", section 2.2).

Numbers and order follow the reference implementation that built C4, tensorflow/datasets
`text/c4_utils.py` (`clean_page`): `_MIN_WORDS_PER_LINE = 5`, `_MIN_NUM_SENTENCES = 3`,
`_MAX_WORD_LENGTH = 1000`, the citation regex and the policy substrings. (datatrove's C4QualityFilter
swaps the two counts to 3 words and 5 sentences.) The bad-words rule lives in the `wordlist` step.
Sentences are counted with a regex instead of NLTK punkt (its data cannot be downloaded here).
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from cleaners.document import Document
from cleaners.filters.params import check_non_negative
from cleaners.step import Step, register

CITATION = re.compile(r"\[\d*\]|\[edit\]|\[citation needed\]")
# Paper: "a period, exclamation mark, question mark, or end quotation mark"; c4_utils adds '"', datatrove "'".
END_MARKS = (".", "?", "!", '"', "'", "\u201d", "\u2019")
ELLIPSIS = "..."
POLICY_SUBSTRINGS = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies")
POLICY = re.compile("|".join(map(re.escape, POLICY_SUBSTRINGS)))
# Sentence ends: terminal punctuation (and closing quotes/brackets) followed by whitespace or the line end.
SENTENCE_END = re.compile(r"[.!?]+[\"'\u201d\u2019)\]]*(?=\s|$)")
# Periods after common abbreviations and initials that are followed by more text do not end a sentence.
ABBREVIATION = re.compile(
    r"\b(?:Mr|Mrs|Ms|Dr|Prof|Sr|Jr|St|Mt|vs|etc|Inc|Ltd|Co|Corp|No|Vol|Fig|Gen|Gov|Sen|Rep|Rev|Jan|Feb|Mar|"
    r"Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec|e\.g|i\.e|a\.m|p\.m|[A-Z])\.(?=\s)"
)


def count_sentences(line: str) -> int:
    """Sentences in one line: at least 1 for a non-empty line (punkt returns the line as one sentence)."""
    ends = len(SENTENCE_END.findall(line)) - len(ABBREVIATION.findall(line))
    return max(1, ends) if line else 0


@register("c4")
@dataclass(kw_only=True)
class C4(Step):
    """C4 cleaning as a transform: keeps the good lines, drops the page when too little is left.

    Per line (stripped; blank lines go): a line with a word longer than `max_word_length` (1000) goes;
    citation markers ([1], [edit], [citation needed]) are cut (`remove_citations`); a line that does not end
    in . ? ! or a closing quote, or ends in "...", goes (`filter_no_terminal_punct`); a line with fewer than
    `min_words_per_line` (5) words goes; a line mentioning "javascript" goes (`filter_javascript`); a line
    with a cookie/privacy/terms-of-use phrase goes (`filter_policy`).

    Page drops (reasons): `c4-lorem-ipsum` ("lorem ipsum" in a kept line, `filter_lorem_ipsum`),
    `c4-curly-bracket` ("{" in a kept line, `filter_curly_bracket`), `c4-too-few-sentences` (fewer than
    `min_sentences` (3) sentences in the kept lines; also when nothing is kept). As in c4_utils, lorem ipsum
    and "{" are checked only on lines that passed the punctuation and length rules. Numbers set to 0 and
    booleans set to false turn their rule off. Kept lines are joined with "\\n".
    """

    languages = ("en",)

    remove_citations: bool = True
    filter_no_terminal_punct: bool = True
    min_words_per_line: int = 5
    max_word_length: int = 1000
    min_sentences: int = 3
    filter_lorem_ipsum: bool = True
    filter_javascript: bool = True
    filter_curly_bracket: bool = True
    filter_policy: bool = True

    def __post_init__(self) -> None:
        for name in ("min_words_per_line", "max_word_length", "min_sentences"):
            check_non_negative("c4", name, getattr(self, name), allow_none=False)

    def apply(self, doc: Document) -> Document | str:
        kept: list[str] = []
        sentences = 0
        for raw in doc.text.splitlines():
            line = raw.strip()
            if not line:
                continue
            if self.max_word_length and len(line) > self.max_word_length:
                if max(map(len, line.split())) > self.max_word_length:
                    continue
            if self.remove_citations and "[" in line:
                line = CITATION.sub("", line)
            if self.filter_no_terminal_punct and (not line.endswith(END_MARKS) or line.endswith(ELLIPSIS)):
                continue
            if self.min_words_per_line and len(line.split()) < self.min_words_per_line:
                continue
            lower = line.lower()
            if self.filter_lorem_ipsum and "lorem ipsum" in lower:
                return "c4-lorem-ipsum"
            if self.filter_javascript and "javascript" in lower:
                continue
            if self.filter_curly_bracket and "{" in line:
                return "c4-curly-bracket"
            if self.filter_policy and POLICY.search(lower):
                continue
            sentences += count_sentences(line)
            kept.append(line)
        if not kept or sentences < self.min_sentences:
            return "c4-too-few-sentences"
        text = "\n".join(kept)
        return doc if text == doc.text else dataclasses.replace(doc, text=text)
