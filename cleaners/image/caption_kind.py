"""Caption kind: a short alt-text or title (`alt`) or a sentence that describes the scene (`description`).

WuDaoMM separates weak pairs (web alt text, loosely related to the image) from strong ones, 30 M of which have
"detailed descriptions of the image". A description is prose about what is in the picture; alt text is mostly a
name, a title or a label. The rule reads the form of the caption, not its meaning:

- English and other Latin-script captions: a description has at least `MIN_WORDS` words, at least
  `MIN_FUNCTION_WORDS` function words that tie phrases into a sentence (articles, prepositions, conjunctions,
  forms of "be", possessives) and at most `MAX_TITLE_SHARE` of its other words capitalised (titles and product
  names are title case: "Classical Masterpieces: Xerses & More, Vol. 8").
- Chinese (and Japanese): at least `MIN_HAN` Han characters and a structural word of a described scene: a particle
  or locative (的, 在, 着, 有, 和, 是, 上, 里, 中, 旁, 前, 后), a counted subject (一个, 一只, 两位 ...) or 正在.

Measured by `bench/caption_kind.py` on real captions (`bench/data/caption_kind/SOURCE.md`, results in
bench/results/caption_kind.md): English, COCO's crowd descriptions 97.6% `description`, img2dataset's 1000 web alt
texts 90.6% `alt`, OpenMoji names 99.9% `alt`; Chinese, Crossmodal-3600's native descriptions 90.5% `description`,
recipe-site alt texts 99.4% and documentation alt texts 93.2% `alt`, OpenMoji names 97.8% `alt`. The thresholds
were chosen on these same sets (each a plain form feature), so expect somewhat less on other sources.
"""
from __future__ import annotations

import re

from cleaners.han import HAN_RE

ALT, DESCRIPTION = "alt", "description"
MIN_WORDS = 6
MIN_FUNCTION_WORDS = 2
MAX_TITLE_SHARE = 0.5
MIN_HAN = 8
CHAR_LANGS = ("zh", "ja")

_WORD = re.compile(r"[A-Za-z]+(?:'[a-z]+)?")
_FUNCTION_WORDS = frozenset(
    "a an the is are was were be being been on in at of with and or to from by for into onto near next under over "
    "behind beside between while his her their its our some".split())
_SCENE_MARK = re.compile(r"[的在着有和是上里中旁前后]|正在|[一两三几][个只位张条辆群座块片朵棵头匹]")


def caption_kind(text: str, lang: str) -> str:
    """`description` or `alt` for a cleaned caption of language `lang` (see the module docstring)."""
    if lang in CHAR_LANGS:
        if len(HAN_RE.findall(text)) >= MIN_HAN and _SCENE_MARK.search(text):
            return DESCRIPTION
        return ALT
    words = _WORD.findall(text)
    if len(words) < MIN_WORDS:
        return ALT
    content = [w for w in words if w.lower() not in _FUNCTION_WORDS]
    if len(words) - len(content) < MIN_FUNCTION_WORDS:
        return ALT
    capitalised = sum(w[0].isupper() for w in content)
    return ALT if capitalised > MAX_TITLE_SHARE * max(1, len(content)) else DESCRIPTION
