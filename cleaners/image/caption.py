"""Caption checks for image-text pairs: clean the caption, decide its language, drop alt-text junk.

Four steps, each its own stage (`CaptionChecks(**recipe["caption"]).steps()`), and the reasons they drop:

- `caption_text`: `not-text`, `empty` (nothing left after cleaning), `too-long` (over `max_chars` characters),
  `caption-is-filename` ("IMG_1234.JPG", "DSC01234", "mount-everest-89590_1280.jpg"), `caption-is-url`,
  `caption-junk` (nothing but boilerplate from the blocklist: "image", "Untitled", "点击查看大图", digits);
- `caption_language`: `lang:<code>` (a language outside `languages`);
- `caption_rewrite`: never drops (simplified Chinese, PII placeholders counted as `pii:<type>`);
- `caption_length`: `too-short` (zh and ja: fewer than `min_chars` characters; other languages: fewer than
  `min_words` words;
  project defaults in the spirit of CC3M's caption filters, Sharma et al. 2018 -- LAION-5B itself only drops
  alt-text under 5 characters, Schuhmann et al. 2022).

Cleaning reuses the web-text steps: HTML tags and entities left in alt-text and data-juicer's special tokens
(`<__dj__image>`, `<|__dj__eoc|>`) are removed, then `normalize_text` (one line), traditional -> simplified for
Chinese (`to_simplified`), and personal data -> placeholders (`scrub_with_counts`). `CaptionChecks.check(caption)`
gives `(clean caption, lang)` or the first drop reason, without accounting, for tests and tools.

Language: Chinese/English captions are decided by script, since short alt-text is too little for the bundled
fastText model (on img2dataset's 1000 sample captions it labels about 10% of plain English product names
`other`). Han characters -> `guess_zh_or_en` (a bilingual caption takes the majority script); kana -> `ja`,
Hangul -> `ko`; other non-Latin scripts -> the fastText label; Latin-only -> `en` unless fastText names another
language it knows with probability >= `lid_min_score`.
"""
from __future__ import annotations

import dataclasses
import html
import os
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

from cleaners.filters.wordlist import read_terms
from cleaners.image.caption_kind import caption_kind
from cleaners.image.record import ImageText
from cleaners.fasttext_text import load_model
from cleaners.han import HAN_RE
from cleaners.language import BUNDLED_MODEL, guess_zh_or_en, identify
from cleaners.normalize import normalize_text, to_simplified
from cleaners.pii import scrub_with_counts
from cleaners.step import Counted, Step

DEFAULT_BLOCKLIST = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "caption_blocklist.txt")

CHAR_COUNTED = ("zh", "ja")   # written without spaces: length in characters, other languages in words
_DJ_TOKENS = re.compile(r"<__dj__image>|<\|__dj__eoc\|>")
_HTML_COMMENT = re.compile(r"<!--.*?-->", re.S)
_HTML_TAG = re.compile(r"</?[A-Za-z][A-Za-z0-9:-]*(?:\s[^<>]*)?/?>")
_HAN = HAN_RE
_KANA = re.compile(r"[\u3040-\u30ff\u31f0-\u31ff\uff66-\uff9f]")
_HANGUL = re.compile(r"[\u1100-\u11ff\u3130-\u318f\uac00-\ud7af]")
_LATIN = re.compile(r"[A-Za-z\u00c0-\u024f]")
_EN_WORD = re.compile(r"[A-Za-z\u00c0-\u024f0-9]+(?:['’-][A-Za-z\u00c0-\u024f0-9]+)*")
_IMAGE_EXT = r"(?:jpe?g|png|gif|webp|bmp|tiff?|heic|avif|svg|ico)"
_FILENAME = re.compile(
    rf"^[\w.()\[\] +-]*\.{_IMAGE_EXT}$"                                    # anything.jpg
    r"|^(?:img|dsc|dscn|dscf|dcim|pict|pxl|mvimg|p|photo|image|screenshot|wp|whatsapp image)"
    r"[\s_-]*\d[\d\s_.:-]*(?:\(\d+\))?$"                                 # IMG_1234, DSC01234, P1010203
    r"|^\d{8}[_-]\d{6}$"                                                 # 20190512_123456
    r"|^[0-9a-f]{16,}$"                                                  # hash-like names
    r"|^[\w-]*\d[\w-]*_(?:\d{3,4}|\d{3,4}x\d{3,4})$",                    # mount-everest-89590_1280 (CDN sizes)
    re.I)
_URL = re.compile(r"^(?:https?://|www\.)\S+$", re.I)


def clean_caption(text: str) -> str:
    """`text` without HTML markup or data-juicer tokens, normalized to one line (see the module docstring)."""
    text = _DJ_TOKENS.sub(" ", text)
    text = _HTML_COMMENT.sub(" ", text)
    text = _HTML_TAG.sub(" ", text)
    text = html.unescape(text)
    text = _HTML_TAG.sub(" ", text)   # tags that were escaped (&lt;b&gt;) once more
    return normalize_text(text, single_line=True)


def _junk_pattern(terms: list[str]) -> re.Pattern[str] | None:
    """One regex for all terms, longest first; Latin terms only as whole words."""
    parts = []
    for term in sorted(set(terms), key=lambda t: (-len(t), t)):
        escaped = re.escape(term)
        if _LATIN.search(term[0]) or term[0].isdigit():
            escaped = rf"(?<![\w]){escaped}(?![\w])"
        parts.append(escaped)
    return re.compile("|".join(parts), re.I) if parts else None


@dataclass(kw_only=True)
class CaptionChecks:
    """The recipe's `caption:` section: its settings, the blocklist and language model they load, and the four
    caption steps built from them (`steps()`), each its own stage in stats.json and rejects/."""

    min_chars: int = 5                   # zh, ja: characters, not counting spaces
    min_words: int = 3                   # en and others: words
    max_chars: int = 1000
    languages: list[str] = field(default_factory=lambda: ["zh", "en"])  # empty = any language
    blocklist: str | None = None         # path to a term file like cleaners/data/caption_blocklist.txt
    lid_model: str | None = None         # fastText model; None = the bundled one
    lid_min_score: float = 0.9           # Latin-script captions: trust a non-English label only this sure
    simplify: bool = True                # traditional -> simplified for zh captions
    pii: bool = True                     # personal data -> placeholders
    _junk: Any = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("min_chars", "min_words", "max_chars"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"caption: {name} must be a non-negative integer, got {value!r}")
        if isinstance(self.languages, str):
            raise ValueError(f"caption: languages must be a list, got {self.languages!r}")
        self.languages = [str(code) for code in self.languages]
        if not 0.0 <= float(self.lid_min_score) <= 1.0:
            raise ValueError(f"caption: lid_min_score must be in [0, 1], got {self.lid_min_score!r}")
        path = self.blocklist or DEFAULT_BLOCKLIST
        if not os.path.isfile(path):
            raise ValueError(f"caption: blocklist {path!r} is not a file")

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_junk"] = None        # rebuilt by setup() on the worker
        return state

    def setup(self) -> None:
        with open(self.blocklist or DEFAULT_BLOCKLIST, encoding="utf-8") as fh:
            self._junk = _junk_pattern(read_terms(fh.read()))
        load_model(self.lid_model or BUNDLED_MODEL)   # once per process; a missing model fails here

    def language(self, text: str) -> str:
        """The caption's language code (see the module docstring)."""
        if _KANA.search(text):
            return "ja"
        han, hangul = len(_HAN.findall(text)), len(_HANGUL.findall(text))
        if hangul and hangul >= han:
            return "ko"
        if han:
            return guess_zh_or_en(text)
        letters = sum(ch.isalpha() for ch in text)
        latin = len(_LATIN.findall(text))
        if self._junk is None:
            self.setup()
        label, score = identify(text, self.lid_model or BUNDLED_MODEL)
        if latin * 2 < letters:            # mostly another script (Cyrillic, Arabic, ...)
            return label
        return label if label not in ("en", "other") and score >= self.lid_min_score else "en"

    def is_junk(self, text: str) -> bool:
        """True when `text` is nothing but blocklisted boilerplate, digits and punctuation."""
        if self._junk is None:
            self.setup()
        rest = self._junk.sub(" ", text) if self._junk is not None else text
        return not any(ch.isalpha() for ch in rest)

    def steps(self) -> list[Step]:
        """The caption steps, in order, sharing these settings (one setup loads the blocklist and the model)."""
        return [CaptionText(self), CaptionLanguage(self), CaptionRewrite(self), CaptionLength(self)]

    def check(self, caption: Any) -> tuple[str, str] | str:
        """(clean caption, lang), or the reason the first caption step that drops it gives; no accounting (for
        tests and tools: the pipeline runs `steps()` with `cleaners.runner.StepRunner`)."""
        pair = ImageText(key="", source="", caption=caption)
        for step in self.steps():
            result = step.apply(pair)
            result = result.result if isinstance(result, Counted) else result
            if isinstance(result, str):
                return result
            pair = result
        return pair.caption, pair.lang


class _CaptionStep(Step):
    """A caption step: one phase of the checks, configured by the shared `CaptionChecks`; sees every pair."""

    kind: ClassVar[str] = "image_text"

    def __init__(self, checks: CaptionChecks):
        self.checks = checks

    def setup(self) -> None:
        if self.checks._junk is None:
            self.checks.setup()

    def applies_to(self, pair: ImageText) -> bool:
        return True


class CaptionText(_CaptionStep):
    """`caption_text`: markup and data-juicer tokens out, one normalized line (`clean_caption`); drops `not-text`,
    `empty`, `too-long`, `caption-is-url`, `caption-is-filename`, `caption-junk`."""

    name = "caption_text"

    def apply(self, pair: ImageText) -> ImageText | str:
        if not isinstance(pair.caption, str):
            return "not-text"
        text = clean_caption(pair.caption)
        if not text:
            return "empty"
        if len(text) > self.checks.max_chars:
            return "too-long"
        if _URL.match(text):
            return "caption-is-url"
        if _FILENAME.match(text):
            return "caption-is-filename"
        if self.checks.is_junk(text):
            return "caption-junk"
        return dataclasses.replace(pair, caption=text)   # never mutate an input element


class CaptionLanguage(_CaptionStep):
    """`caption_language`: the caption's language (`CaptionChecks.language`) into `lang`; `lang:<code>` drops
    a language outside `languages` (empty: any)."""

    name = "caption_language"

    def apply(self, pair: ImageText) -> ImageText | str:
        lang = self.checks.language(pair.caption)
        if self.checks.languages and lang not in self.checks.languages:
            return f"lang:{lang}"
        return dataclasses.replace(pair, lang=lang)


class CaptionRewrite(_CaptionStep):
    """`caption_rewrite`: traditional -> simplified for Chinese (`simplify`) and personal data -> placeholders
    (`pii`), counted per type as in web text (`pii:<type>`); never drops."""

    name = "caption_rewrite"

    def apply(self, pair: ImageText) -> Counted:
        text, found = pair.caption, {}
        if pair.lang == "zh" and self.checks.simplify:
            text = to_simplified(text)
        if self.checks.pii:
            text, found = scrub_with_counts(text)
        return Counted(dataclasses.replace(pair, caption=text), {f"pii:{kind}": n for kind, n in found.items()})


class CaptionLength(_CaptionStep):
    """`caption_length`: `too-short` under `min_chars` characters (zh, ja) or `min_words` words (others); a kept
    caption gets its kind, `alt` or `description` (`cleaners.image.caption_kind`), counted in a histogram, and the
    pair's other texts (`texts`) go through all four checks: those that fail are left out and counted."""

    name = "caption_length"

    def apply(self, pair: ImageText) -> Counted | str:
        text = pair.caption
        if pair.lang in CHAR_COUNTED:
            if sum(not ch.isspace() for ch in text) < self.checks.min_chars:
                return "too-short"
        elif len(_EN_WORD.findall(text)) < self.checks.min_words:
            return "too-short"
        kind = caption_kind(text, pair.lang)
        texts, counts = self._vet_texts(pair)
        return Counted(dataclasses.replace(pair, caption_kind=kind, texts=texts), counts,
                       hists={"caption_kind": kind})

    def _vet_texts(self, pair: ImageText) -> tuple[list[tuple[str, str]], dict[str, int]]:
        """The pair's other texts through the same four checks: (clean text, lang) of those that pass, and counts
        `texts:kept` / `texts:dropped:<reason>`; a text equal to the caption once clean is left out."""
        kept: list[tuple[str, str]] = []
        counts: dict[str, int] = {}
        for text, _ in pair.texts:
            checked = self.checks.check(text)
            if isinstance(checked, str):
                name = f"texts:dropped:{checked}"
            elif checked[0] == pair.caption or checked in kept:
                name = "texts:dropped:same-as-caption"
            else:
                kept.append(checked)
                name = "texts:kept"
            counts[name] = counts.get(name, 0) + 1
        return kept, counts
