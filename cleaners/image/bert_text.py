"""Chinese-CLIP's text side: a BERT encoder (RoBERTa-wwm-ext layout) and its WordPiece tokenizer.

Chinese-CLIP (Yang et al. 2022) pairs CLIP's ViT with a Chinese BERT: post-LayerNorm blocks (eps 1e-12), learned
absolute positions, token type 0, exact GELU, padding masked out, the text embedding read at `[CLS]` (position 0)
and projected by `text_projection`. `BertTextTower` holds those weights under BERT's own names (`bert.embeddings.*`,
`bert.encoder.layer.N.attention.self.query` ...), so a Chinese-CLIP state dict loads as it is
(`cleaners.image.alignment.load_chinese_clip`).

`WordPiece` is BERT's tokenizer (Devlin et al. 2019) over the checkpoint's `vocab.txt`: control characters dropped,
white space normalised, a space around every CJK ideograph, lower case with accents stripped, punctuation split
off, then greedy longest-match-first pieces with `##` continuations (`[UNK]` for a word that cannot be built or is
over 100 characters). A caption becomes `[CLS] pieces [SEP]`, cut to the context (Chinese-CLIP: 52).
"""
from __future__ import annotations

import unicodedata

import torch
from torch import nn
from torch.nn import functional as F

from cleaners.han import HAN_RE

LAYER_NORM_EPS = 1e-12


class BertLayer(nn.Module):
    def __init__(self, width: int, heads: int, hidden: int):
        super().__init__()
        self.heads = heads
        self.attention = nn.Module()
        self.attention.self = nn.Module()
        self.attention.self.query = nn.Linear(width, width)
        self.attention.self.key = nn.Linear(width, width)
        self.attention.self.value = nn.Linear(width, width)
        self.attention.output = nn.Module()
        self.attention.output.dense = nn.Linear(width, width)
        self.attention.output.LayerNorm = nn.LayerNorm(width, eps=LAYER_NORM_EPS)
        self.intermediate = nn.Module()
        self.intermediate.dense = nn.Linear(width, hidden)
        self.output = nn.Module()
        self.output.dense = nn.Linear(hidden, width)
        self.output.LayerNorm = nn.LayerNorm(width, eps=LAYER_NORM_EPS)

    def forward(self, x: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        b, t, w = x.shape
        attn = self.attention.self

        def split(linear: nn.Linear) -> torch.Tensor:
            return linear(x).view(b, t, self.heads, w // self.heads).transpose(1, 2)

        mask = torch.zeros(b, 1, 1, t, dtype=x.dtype, device=x.device).masked_fill(pad[:, None, None, :], float("-inf"))
        context = F.scaled_dot_product_attention(split(attn.query), split(attn.key), split(attn.value), attn_mask=mask)
        context = context.transpose(1, 2).reshape(b, t, w)
        x = self.attention.output.LayerNorm(x + self.attention.output.dense(context))
        return self.output.LayerNorm(x + self.output.dense(F.gelu(self.intermediate.dense(x))))


class BertTextTower(nn.Module):
    """`bert.embeddings` + `bert.encoder.layer`; `forward(ids, lengths)` gives the `[CLS]` states [B, width]."""

    def __init__(self, vocab_size: int, positions: int, width: int, layers: int, heads: int, hidden: int):
        super().__init__()
        self.embeddings = nn.Module()
        self.embeddings.word_embeddings = nn.Embedding(vocab_size, width)
        self.embeddings.position_embeddings = nn.Embedding(positions, width)
        self.embeddings.token_type_embeddings = nn.Embedding(2, width)
        self.embeddings.LayerNorm = nn.LayerNorm(width, eps=LAYER_NORM_EPS)
        self.encoder = nn.Module()
        self.encoder.layer = nn.ModuleList(BertLayer(width, heads, hidden) for _ in range(layers))

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        e = self.embeddings
        positions = torch.arange(ids.shape[1], device=ids.device)
        x = e.word_embeddings(ids) + e.position_embeddings(positions) + e.token_type_embeddings.weight[0]
        x = e.LayerNorm(x)
        pad = positions[None, :] >= lengths[:, None]
        for layer in self.encoder.layer:
            x = layer(x, pad)
        return x[:, 0]


def _is_punctuation(ch: str) -> bool:
    code = ord(ch)
    if 33 <= code <= 47 or 58 <= code <= 64 or 91 <= code <= 96 or 123 <= code <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


class WordPiece:
    """BERT's tokenizer over a `vocab.txt` (one piece per line, id = line number)."""

    def __init__(self, vocab_path: str, lower_case: bool = True, max_word_chars: int = 100):
        with open(vocab_path, encoding="utf-8") as f:
            pieces = [line.rstrip("\n") for line in f]
        self.ids = {piece: i for i, piece in enumerate(pieces) if piece}
        for special in ("[PAD]", "[UNK]", "[CLS]", "[SEP]"):
            if special not in self.ids:
                raise ValueError(f"{vocab_path}: no {special} piece: not a BERT vocab.txt")
        self.size = len(pieces)
        self.lower_case, self.max_word_chars = lower_case, max_word_chars
        self.unk_id, self.cls_id, self.sep_id = self.ids["[UNK]"], self.ids["[CLS]"], self.ids["[SEP]"]

    def __len__(self) -> int:
        return self.size

    def _words(self, text: str) -> list[str]:
        chars = []
        for ch in text:
            if ch in "\x00\ufffd" or (unicodedata.category(ch).startswith("C") and ch not in "\t\n\r"):
                continue
            chars.append(" " if ch.isspace() else f" {ch} " if HAN_RE.match(ch) else ch)
        words = []
        for word in "".join(chars).split():
            if self.lower_case:
                word = "".join(c for c in unicodedata.normalize("NFD", word.lower())
                               if unicodedata.category(c) != "Mn")
            piece = ""
            for ch in word:
                if _is_punctuation(ch):
                    words += [piece, ch] if piece else [ch]
                    piece = ""
                else:
                    piece += ch
            if piece:
                words.append(piece)
        return words

    def encode(self, text: str) -> list[int]:
        ids: list[int] = []
        for word in self._words(text):
            if len(word) > self.max_word_chars:
                ids.append(self.unk_id)
                continue
            start, pieces = 0, []
            while start < len(word):
                end = len(word)
                while end > start and (("##" if start else "") + word[start:end]) not in self.ids:
                    end -= 1
                if end == start:
                    pieces = [self.unk_id]
                    break
                pieces.append(self.ids[("##" if start else "") + word[start:end]])
                start = end
            ids += pieces
        return ids

    def encode_captions(self, captions: list[str], context_length: int) -> list[list[int]]:
        """`[CLS] pieces [SEP]` per caption, cut to `context_length` with `[SEP]` kept."""
        return [[self.cls_id, *self.encode(c)[:context_length - 2], self.sep_id] for c in captions]
