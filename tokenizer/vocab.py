"""One id space for text pieces, special tokens and image codes, described by `vocab.json`.

Layout (GLM, Du et al. 2022; CogView, Ding et al. 2021, whose tokenizer also appends its special tokens and
the 8192 VQ-VAE image codes after the text pieces):

    0 .. V-1                       SentencePiece pieces (the ids the model file gives them)
    V .. V+len(SPECIAL_TOKENS)-1   GLM then CogView special tokens, in the order of SPECIAL_TOKENS
    image_code_offset ..           image codes 0 .. image_codes-1

`vocab.json`: {"text_vocab_size", "special_tokens": {name: id}, "image_code_offset", "image_codes",
"total_size", "model_sha256"}.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field

GLM_TOKENS = ("[MASK]", "[sMASK]", "[gMASK]", "[sop]", "[eop]", "[CLS]", "[SEP]", "<|endoftext|>", "[PAD]")
COGVIEW_TOKENS = ("[ROI1]", "[BASE]", "[BOI1]", "[EOI1]", "[ROI2]", "[BOI2]", "[EOI2]")
SPECIAL_TOKENS = GLM_TOKENS + COGVIEW_TOKENS
DEFAULT_IMAGE_CODES = 8192
VOCAB_FILE = "vocab.json"


def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class Vocab:
    """The shared id space; build it with `Vocab.build`, read it with `Vocab.load`."""

    text_vocab_size: int
    special_tokens: dict[str, int]
    image_code_offset: int
    image_codes: int
    total_size: int
    model_sha256: str = ""
    _by_id: dict[int, str] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._check()
        self._by_id.update({i: name for name, i in self.special_tokens.items()})

    @classmethod
    def build(cls, text_vocab_size: int, model_sha256: str = "", image_codes: int = DEFAULT_IMAGE_CODES) -> "Vocab":
        specials = {name: text_vocab_size + k for k, name in enumerate(SPECIAL_TOKENS)}
        offset = text_vocab_size + len(SPECIAL_TOKENS)
        return cls(text_vocab_size, specials, offset, image_codes, offset + image_codes, model_sha256)

    def _check(self) -> None:
        if self.text_vocab_size <= 0 or self.image_codes < 0:
            raise ValueError("text_vocab_size must be positive and image_codes non-negative")
        ids = sorted(self.special_tokens.values())
        if ids != list(range(self.text_vocab_size, self.text_vocab_size + len(ids))):
            raise ValueError("special tokens must take the ids right after the text pieces")
        if self.image_code_offset != self.text_vocab_size + len(ids):
            raise ValueError("image codes must follow the special tokens")
        if self.total_size != self.image_code_offset + self.image_codes:
            raise ValueError("total_size must equal image_code_offset + image_codes")

    def token_id(self, name: str) -> int:
        """Id of a special token such as `[gMASK]`; KeyError for an unknown name."""
        return self.special_tokens[name]

    def token_name(self, token_id: int) -> str | None:
        return self._by_id.get(token_id)

    def image_code_id(self, k: int) -> int:
        """Id of image code `k` (0 <= k < image_codes)."""
        if not 0 <= k < self.image_codes:
            raise ValueError(f"image code {k} outside 0..{self.image_codes - 1}")
        return self.image_code_offset + k

    def is_image_code(self, token_id: int) -> bool:
        return self.image_code_offset <= token_id < self.total_size

    def is_text(self, token_id: int) -> bool:
        return 0 <= token_id < self.text_vocab_size

    def to_json(self) -> dict:
        return {"text_vocab_size": self.text_vocab_size, "special_tokens": dict(self.special_tokens),
                "image_code_offset": self.image_code_offset, "image_codes": self.image_codes,
                "total_size": self.total_size, "model_sha256": self.model_sha256}

    def write(self, directory: str) -> str:
        """Write `vocab.json` atomically (temp name, then rename); returns its path."""
        path = os.path.join(directory, VOCAB_FILE)
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            json.dump(self.to_json(), f, ensure_ascii=False, indent=1, sort_keys=True)
            f.write("\n")
        os.replace(path + ".tmp", path)
        return path

    @classmethod
    def load(cls, directory: str) -> "Vocab":
        with open(os.path.join(directory, VOCAB_FILE), encoding="utf-8") as f:
            data = json.load(f)
        missing = {"text_vocab_size", "special_tokens", "image_code_offset", "image_codes", "total_size"} - set(data)
        if missing:
            raise ValueError(f"vocab.json lacks {sorted(missing)}")
        return cls(int(data["text_vocab_size"]), {str(k): int(v) for k, v in data["special_tokens"].items()},
                   int(data["image_code_offset"]), int(data["image_codes"]), int(data["total_size"]),
                   str(data.get("model_sha256", "")))
