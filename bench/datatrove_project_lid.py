"""datatrove's lid.176 wrapper, fed the input our bundled language-ID model was trained on.

Imported only inside bench/.venv-datatrove (by bench/datatrove_pipeline.py). datatrove's `FT176LID`
predicts on the whole document with newlines replaced by spaces, which suits Facebook's lid.176. Our
bundled model (cleaners/data/lid/lid_zh_en.ftz, standing in for lid.176, which cannot be downloaded here)
was trained on `cleaners.fasttext_text.fasttext_line`: the first 2000 characters, lowercased, each Han/kana
character and punctuation mark a token of its own. Fed raw text it scored 410 of 421 Chinese pages below
datatrove's 0.65 threshold, so datatrove dropped them before its filters (less work for that side).
This subclass only changes the text handed to the model; datatrove's own `predict` (all labels, k=-1),
LanguageFilter threshold and metadata stay as they are. It lives in an importable module, not in the
script, so that datatrove's multiprocess workers can unpickle it.
"""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from datatrove.utils.lid import FT176LID

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from cleaners.fasttext_text import DEFAULT_MAX_CHARS, fasttext_line  # noqa: E402  (pure Python, no Beam)


class ProjectModelLID(FT176LID):
    """FT176LID whose model sees `fasttext_line(text)`, the line our language-ID model expects."""

    def predict(self, doc):
        line = fasttext_line(doc.text, DEFAULT_MAX_CHARS)
        return super().predict(dataclasses.replace(doc, text=line))
