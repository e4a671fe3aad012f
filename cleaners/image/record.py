"""`ImageText`: one image-caption pair as it moves through the image-text pipeline.

A reader yields it with `image` bytes (WebDataset tars, Parquet with image bytes, local files) or with only a
`url` (url lists, before the download stage). The checks fill `facts` (sizes, format, perceptual hash) and
replace `image` with the re-encoded training image.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DATA_TYPE = "image-text"


@dataclass
class ImageText:
    key: str                      # place in the input: "<file>#<row>" or "<tar>#<sample key>"; unique per input record
    source: str                   # input file path/URL
    caption: str = ""
    url: str = ""                 # the image's URL (url lists; img2dataset's `url` field in tars)
    image: bytes | None = None    # encoded image bytes; None until downloaded
    lang: str = ""                # caption language, set by the caption checks ("zh", "en")
    caption_kind: str = ""        # "alt" or "description", set by the caption_length step (cleaners.image.caption_kind)
    #: the image's other texts (img2dataset title/alt columns, BriVL-style surrounding text: the reader's
    #: `text_cols`) as (text, lang); lang is "" until the caption checks have cleaned and vetted them
    texts: list[tuple[str, str]] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)  # width, height, original_width/height/format, phash, ...
    meta: dict[str, Any] = field(default_factory=dict)   # the input's other fields (json-able), kept in the output
