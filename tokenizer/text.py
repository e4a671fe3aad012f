"""Bilingual SentencePiece tokenizer: training, loading, exact encode/decode.

Settings follow what LLaMA/ChatGLM-style bilingual tokenizers use with SentencePiece (Kudo & Richardson 2018):
byte fallback (no text is ever unknown), split digits, character_coverage 0.9995, and the `identity`
normalization rule with `remove_extra_whitespaces=False` and no dummy prefix, so that full-width punctuation
(，。！？) is not NFKC-folded and spaces, tabs and leading/trailing whitespace survive.

Two characters need care for an exact round trip:
- "\\n": SentencePiece trains on lines, so no piece holds a newline; byte fallback encodes it as the byte
  piece <0x0A>, the tokenizer's `newline_id`; the `<n>` control piece in the vocabulary also decodes to a newline
  (a control piece, unlike a user-defined one, never matches the literal text "<n>");
- U+2581 "▁": SentencePiece's own space marker; a literal one is encoded as its three UTF-8 byte pieces,
  which decode back to "▁", not to a space.
"""
from __future__ import annotations

import io
import os
from typing import Iterable, Iterator, Sequence

import sentencepiece as spm

from tokenizer.vocab import DEFAULT_IMAGE_CODES, Vocab, file_sha256

MODEL_FILE = "tokenizer.model"
NEWLINE_PIECE = "<n>"
_SPACE_MARK = "\u2581"


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


def trainer_options(vocab_size: int, model_type: str = "unigram", num_threads: int = 0,
                    character_coverage: float = 0.9995) -> dict:
    """The SentencePiece trainer settings (see module docstring)."""
    if model_type not in ("unigram", "bpe"):
        raise ValueError(f"model_type must be 'unigram' or 'bpe', not {model_type!r}")
    return dict(vocab_size=vocab_size, model_type=model_type, byte_fallback=True, split_digits=True,
                character_coverage=character_coverage, normalization_rule_name="identity",
                remove_extra_whitespaces=False,
                add_dummy_prefix=False, allow_whitespace_only_pieces=True, control_symbols=[NEWLINE_PIECE],
                unk_id=0, bos_id=1, eos_id=2, pad_id=-1, hard_vocab_limit=False, max_sentence_length=16384,
                shuffle_input_sentence=False, num_threads=num_threads or cpu_count(), minloglevel=2)


def _lines(paths: Sequence[str]) -> Iterator[str]:
    for path in paths:
        with open(path, encoding="utf-8") as f:
            for line in f:
                yield line.rstrip("\n")


def train_sentencepiece(input_files: Sequence[str], output_dir: str, *, vocab_size: int = 50000,
                        model_type: str = "unigram", seed: int = 0, num_threads: int = 0,
                        image_codes: int = DEFAULT_IMAGE_CODES,
                        character_coverage: float = 0.9995) -> Vocab:
    """Train on plain-text files (one sentence or line per line); write `tokenizer.model` and `vocab.json`."""
    os.makedirs(output_dir, exist_ok=True)
    spm.set_random_generator_seed(seed)
    buffer = io.BytesIO()  # a model_writer and a sentence iterator keep temp paths out of the stored trainer_spec
    spm.SentencePieceTrainer.train(sentence_iterator=_lines(input_files), model_writer=buffer,
                                   **trainer_options(vocab_size, model_type, num_threads, character_coverage))
    model = os.path.join(output_dir, MODEL_FILE)
    with open(model + ".tmp", "wb") as f:
        f.write(buffer.getvalue())
    os.replace(model + ".tmp", model)
    size = spm.SentencePieceProcessor(model_file=model).get_piece_size()
    vocab = Vocab.build(size, file_sha256(model), image_codes)
    vocab.write(output_dir)
    return vocab


def tokenizer_hash(directory: str) -> str:
    """sha256 over the model file then vocab.json: names the tokenizer in shard manifests."""
    import hashlib

    h = hashlib.sha256()
    for name in (MODEL_FILE, "vocab.json"):
        h.update(bytes.fromhex(file_sha256(os.path.join(directory, name))))
    return h.hexdigest()


class TextTokenizer:
    """Encode text to ids of the shared id space and back, exactly."""

    def __init__(self, sp: spm.SentencePieceProcessor, vocab: Vocab):
        if sp.get_piece_size() != vocab.text_vocab_size:
            raise ValueError("vocab.json does not describe this model (text_vocab_size differs)")
        self.sp, self.vocab = sp, vocab
        self._control_newline = sp.piece_to_id(NEWLINE_PIECE)
        if not sp.is_control(self._control_newline):
            raise ValueError(f"model has no control piece {NEWLINE_PIECE}")
        self._mark_ids = [sp.piece_to_id(f"<0x{b:02X}>") for b in _SPACE_MARK.encode("utf-8")]
        self._byte_newline = sp.piece_to_id("<0x0A>")
        #: the id a line break encodes to: the byte piece <0x0A> that byte fallback gives it (no piece spans a
        #: newline, training being line by line). Encoding then needs no remapping pass (18% of encode time);
        #: decode also accepts the `<n>` control piece for ids made by other tools.
        self.newline_id = self._byte_newline
        if any(sp.is_unknown(i) for i in self._mark_ids + [self._byte_newline]):
            raise ValueError("model was trained without byte_fallback")

    @classmethod
    def load(cls, directory: str, *, check_hash: bool = True) -> "TextTokenizer":
        model = os.path.join(directory, MODEL_FILE)
        vocab = Vocab.load(directory)
        if check_hash and vocab.model_sha256 and vocab.model_sha256 != file_sha256(model):
            raise ValueError(f"{model} does not match model_sha256 in vocab.json")
        return cls(spm.SentencePieceProcessor(model_file=model), vocab)

    def __len__(self) -> int:
        return self.vocab.total_size

    def _check(self, text: str) -> None:
        if not isinstance(text, str):
            raise TypeError(f"text must be str, not {type(text).__name__}")
        text.encode("utf-8")  # UnicodeEncodeError (a ValueError) on lone surrogates

    def _fix(self, text: str, ids: list[int]) -> list[int]:
        """Text with a literal U+2581 (SentencePiece's space mark) is re-encoded around it, as bytes (rare)."""
        if _SPACE_MARK in text:
            parts = text.split(_SPACE_MARK)
            ids = list(self.sp.encode(parts[0]))
            for part in parts[1:]:
                ids += self._mark_ids
                ids += self.sp.encode(part)
        return ids

    def encode(self, text: str) -> list[int]:
        self._check(text)
        return self._fix(text, self.sp.encode(text))

    def encode_batch(self, texts: Sequence[str], num_threads: int = 0) -> list[list[int]]:
        """Encode many texts with `num_threads` SentencePiece threads (0: every core)."""
        for text in texts:
            self._check(text)
        if not texts:
            return []
        encoded = self.sp.encode(list(texts), num_threads=num_threads or cpu_count())
        return [self._fix(text, ids) for text, ids in zip(texts, encoded)]

    def decode(self, ids: Iterable[int], *, specials: str = "error") -> str:
        """Text of `ids`. Ids past the text pieces raise ValueError, or with specials="name" become their name
        (`[MASK]`, `<image:17>`), with specials="skip" vanish."""
        if specials not in ("error", "name", "skip"):
            raise ValueError("specials must be 'error', 'name' or 'skip'")
        parts: list[str] = []
        run: list[int] = []
        for i in ids:
            i = int(i)
            if 0 <= i < self.vocab.text_vocab_size:
                run.append(self._byte_newline if i == self._control_newline else i)
                continue
            parts.append(self.sp.decode(run))
            run = []
            if specials == "error" or not 0 <= i < self.vocab.total_size:
                raise ValueError(f"id {i} is not a text piece (text ids are 0..{self.vocab.text_vocab_size - 1})")
            elif specials == "name":
                name = self.vocab.token_name(i)
                parts.append(name if name is not None else f"<image:{i - self.vocab.image_code_offset}>")
        parts.append(self.sp.decode(run))
        return "".join(parts)
