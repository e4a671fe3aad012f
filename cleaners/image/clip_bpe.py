"""CLIP's byte-level BPE tokenizer, read from the merges file a user's OpenCLIP / OpenAI CLIP weights come with.

The scheme is CLIP's (Radford et al. 2021, sec. 2.4; GPT-2's byte-level BPE, lower-cased): text is unescaped twice
(HTML entities), runs of white space become one space, it is lower-cased and split by the pattern below (the
special tokens, English contractions, runs of letters, single digits, runs of other non-space characters); each
piece's UTF-8 bytes become printable characters (`byte_chars`), the last one marked with `</w>`, and the merges
are applied lowest rank first. The vocabulary, in id order: the 256 byte characters, the same with `</w>`, one
token per merge, then `<|startoftext|>` and `<|endoftext|>` (49408 ids for `bpe_simple_vocab_16e6.txt.gz`, whose
first line is a header and which is cut to 49152 - 256 - 2 merges). A caption becomes
`<|startoftext|> ids <|endoftext|>`, cut to the context with the end token kept, as CLIP's own tokenizer does.
ftfy's mojibake repair, which CLIP runs first, is left out (not a dependency here).
"""
from __future__ import annotations

import gzip
import html
import re
from functools import lru_cache

import regex

START, END = "<|startoftext|>", "<|endoftext|>"
CLIP_MERGES = 49152 - 256 - 2
_PIECES = regex.compile(r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|"""
                        r"""[^\s\p{L}\p{N}]+""", regex.IGNORECASE)
_SPACES = re.compile(r"\s+")


def byte_chars() -> dict[int, str]:
    """Each byte as a printable character: the printable Latin-1 bytes as themselves, the others as code points
    from 256 up, in byte order (GPT-2's table)."""
    kept = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, extra = {b: chr(b) for b in kept}, 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


class ClipBPE:
    """`encode(text)` -> CLIP token ids (without start and end); `encode_captions` for the alignment model."""

    def __init__(self, merges_path: str, max_merges: int = CLIP_MERGES):
        opener = gzip.open if merges_path.endswith(".gz") else open
        with opener(merges_path, "rt", encoding="utf-8") as f:
            lines = f.read().split("\n")[1:max_merges + 1]
        merges = [tuple(line.split()) for line in lines if line.strip()]
        if any(len(pair) != 2 for pair in merges):
            raise ValueError(f"{merges_path}: not a BPE merges file (each line after the header: two tokens)")
        self._bytes = byte_chars()
        chars = list(self._bytes.values())
        vocab = chars + [c + "</w>" for c in chars] + ["".join(pair) for pair in merges] + [START, END]
        self.ids = {token: i for i, token in enumerate(vocab)}
        self.ranks = {pair: i for i, pair in enumerate(merges)}
        self.start_id, self.end_id = self.ids[START], self.ids[END]
        self._bpe = lru_cache(maxsize=100_000)(self._merge)

    def __len__(self) -> int:
        return len(self.ids)

    def _merge(self, piece: str) -> tuple[str, ...]:
        word = (*piece[:-1], piece[-1] + "</w>")
        while len(word) > 1:
            pairs = {(a, b) for a, b in zip(word, word[1:])}
            best = min(pairs, key=lambda pair: self.ranks.get(pair, float("inf")))
            if best not in self.ranks:
                break
            merged, i = [], 0
            while i < len(word):
                if i < len(word) - 1 and (word[i], word[i + 1]) == best:
                    merged.append(word[i] + word[i + 1])
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = tuple(merged)
        return word

    def encode(self, text: str) -> list[int]:
        text = _SPACES.sub(" ", html.unescape(html.unescape(text))).strip().lower()
        ids: list[int] = []
        for piece in _PIECES.findall(text):
            chars = "".join(self._bytes[b] for b in piece.encode("utf-8", "replace"))
            ids.extend(self.ids[token] for token in self._bpe(chars))
        return ids

    def encode_captions(self, captions: list[str], context_length: int) -> list[list[int]]:
        """`<|startoftext|> ids <|endoftext|>` per caption, cut to `context_length` with the end token kept."""
        return [[self.start_id, *self.encode(c)[:context_length - 2], self.end_id] for c in captions]
