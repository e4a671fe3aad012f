"""Language identification with fastText, and the recipe step `language`.

The bundled model (`cleaners/data/lid/lid_zh_en.ftz`, trained by `scripts/train_langid.py` on the
permissively licensed texts listed in `cleaners/data/lid/README.md`) knows zh, en, ja, ko, ru, fr, de,
es, pt, it, ar and `other`. A user's own model works too: Facebook's lid.176 (`__label__zh`), GlotLID /
NLLB-style (`__label__cmn_Hani`, `__label__zho_Hans`, `__label__eng_Latn`): labels are mapped to the
project's short codes by `normalize_label`.

Default `min_score` 0.5 follows CCNet (Wenzek et al. 2020), which drops documents whose lid.176 score is
below 0.5; datatrove's LanguageFilter uses 0.65 with the same model.
"""
from __future__ import annotations

import os
from typing import Any

from cleaners.document import Document
from cleaners.fasttext_text import DEFAULT_MAX_CHARS, fasttext_line, has_letters, load_model, predict_top
from cleaners.han import count_han
from cleaners.step import Step, register

BUNDLED_MODEL = os.path.join(os.path.dirname(__file__), "data", "lid", "lid_zh_en.ftz")

#: result for text with nothing to judge (empty, whitespace, punctuation only)
UNDETERMINED = ("other", 0.0)

# ISO 639-3 / 639-2 codes (GlotLID, NLLB, franc) -> the short codes the project uses.
# Chinese macrolanguage members written in Han script are all `zh`, as lid.176 labels them.
_THREE_LETTER = {
    "zho": "zh", "chi": "zh", "cmn": "zh", "eng": "en", "jpn": "ja", "kor": "ko", "rus": "ru",
    "fra": "fr", "fre": "fr", "deu": "de", "ger": "de", "spa": "es", "por": "pt", "ita": "it",
    "ara": "ar", "arb": "ar",
}


def normalize_label(label: str) -> str:
    """`__label__zh` -> zh, `__label__cmn_Hani` / `zho_Hant` -> zh, `eng_Latn` -> en, `zh-cn` -> zh."""
    if label.startswith("__label__"):
        label = label[len("__label__"):]
    code = label.replace("-", "_").split("_", 1)[0].lower()
    return _THREE_LETTER.get(code, code)


def identify(text: str, model_path: str | None = None, *, max_chars: int = DEFAULT_MAX_CHARS) -> tuple[str, float]:
    """(language code, probability) of `text`; `('other', 0.0)` for text with no words to judge."""
    model = load_model(model_path or BUNDLED_MODEL)
    return _identify_with(model, text, max_chars)


def lid_line(text: str, max_chars: int = DEFAULT_MAX_CHARS) -> str:
    """The normalised line language ID trains and predicts on ('' when there is no letter to judge)."""
    if not has_letters(text[:max_chars]):
        return ""
    return fasttext_line(text, max_chars, keep_symbols=False)


def _identify_with(model: Any, text: str, max_chars: int) -> tuple[str, float]:
    if not isinstance(text, str):
        raise TypeError(f"identify() needs str, got {type(text).__name__}")
    line = lid_line(text, max_chars)
    if not line:
        return UNDETERMINED
    label, score = predict_top(model, line)
    return normalize_label(label), score


@register("language")
class LanguageID(Step):
    """Sets `doc.lang`, `doc.lang_score` and `doc.scores["lang"]`; drops `lang-low-score` when the top
    probability is below `min_score`, and `lang:<code>` when the language is not in `keep`.

    `keep` is set by the recipe builder from the recipe's `languages` list; an empty tuple keeps every
    language (only the score threshold applies).
    """

    def __init__(self, *, model_path: str | None = None, min_score: float = 0.5,
                 max_chars: int = DEFAULT_MAX_CHARS) -> None:
        if not 0.0 <= float(min_score) <= 1.0:
            raise ValueError(f"min_score must be in [0, 1], got {min_score!r}")
        if int(max_chars) <= 0:
            raise ValueError(f"max_chars must be positive, got {max_chars!r}")
        self.model_path = model_path
        self.min_score = float(min_score)
        self.max_chars = int(max_chars)
        self.keep: tuple[str, ...] = ("zh", "en")
        self._model: Any = None

    def setup(self) -> None:
        self._model = load_model(self.model_path or BUNDLED_MODEL)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_model"] = None          # fastText models do not pickle; workers reload in setup()
        return state

    def apply(self, doc: Document) -> Document | str:
        if self._model is None:
            self.setup()
        lang, score = _identify_with(self._model, doc.text, self.max_chars)
        doc.lang, doc.lang_score = lang, score
        doc.scores["lang"] = score
        if score < self.min_score:
            return "lang-low-score"
        if self.keep and lang not in self.keep:
            return f"lang:{lang}"
        return doc


def guess_zh_or_en(text: str, sample_chars: int = 2000) -> str:
    """A model-free choice between `zh` and `en` by script, for records that arrive without a language and only
    need one to pick rules or shingling: `zh` when at least a third of the letters are Han characters."""
    sample = text[:sample_chars]
    letters = sum(ch.isalpha() for ch in sample)
    return "zh" if letters and count_han(sample) * 3 >= letters else "en"
