"""`wudao generate`: GLM blank filling and generation with a KV cache (Du et al. 2022, sec. 2.3).

The text holds `[MASK]` (a short blank), `[sMASK]` (a sentence) or `[gMASK]` (generation to the end); a text with
none gets a `[gMASK]` appended, as THUDM/GLM's generation does. Part A (the text with its masks) is fed once,
bidirectionally, into a ``KVCache``; then each mask, left to right, gets its Part B span: `[sop]` at 2D position
(mask position, 1), each generated token at (mask position, 2, 3, ...), until `[eop]`. Part B tokens of earlier
masks stay in the cache, so later blanks see the earlier fills, as in training (`tokenizer/glm.py`'s layout).
Only text pieces and `[eop]` are ever chosen (no image codes or other special tokens); log-probabilities are over
that set. Tokens are picked by `train/decoding.py` (greedy, top-k / top-p sampling, beam search).
"""
from __future__ import annotations

import re
from dataclasses import replace

import torch

from tokenizer.vocab import Vocab
from train.decoding import Decoding, Hypothesis, beam_search, pick_next
from train.layers import KVCache

MASK_NAMES = ("[MASK]", "[sMASK]", "[gMASK]")
_MASKS = re.compile(r"\[(?:MASK|sMASK|gMASK)\]")


def split_blanks(text: str) -> tuple[list[str], list[str]]:
    """The text pieces around the mask marks and the marks: ``"a[MASK]b" -> (["a", "b"], ["[MASK]"])``."""
    return _MASKS.split(text), _MASKS.findall(text)


class BlankFiller:
    """Fills the blanks of token ids with a trained ``GLMModel``; ``fill`` for the spans, ``candidates`` for
    a beam's hypotheses of one blank, ``span_logprob`` for a given span's log-probability."""

    def __init__(self, model, vocab: Vocab):
        self.model, self.vocab = model.eval(), vocab
        self.device = next(model.parameters()).device
        self.sop, self.eop = vocab.token_id("[sop]"), vocab.token_id("[eop]")
        self.mask_ids = {vocab.token_id(name) for name in MASK_NAMES}
        allowed = torch.full((model.cfg.vocab_size,), float("-inf"), device=self.device)
        allowed[: vocab.text_vocab_size] = 0.0
        allowed[self.eop] = 0.0
        self._allowed = allowed

    def encode(self, tokenizer, text: str, append_gmask: bool = True) -> list[int]:
        """Ids of `text` with its mask marks as mask ids; `[gMASK]` appended when it has none (and
        `append_gmask`)."""
        pieces, marks = split_blanks(text)
        ids: list[int] = []
        for piece, mark in zip(pieces, marks + [None]):
            ids += tokenizer.encode(piece) if piece else []
            if mark:
                ids.append(self.vocab.token_id(mark))
        return ids if marks or not append_gmask else ids + [self.vocab.token_id("[gMASK]")]

    # --- feeding the model
    def _feed(self, cache: KVCache, ids, block: int | list[int], mask_pos: int, part_a: bool = False):
        """Log-probs [B, L, V] after feeding `ids` [B, L] at 2D positions (mask_pos, block ...) (Part B) or, with
        `part_a`, at (0..L-1, 0) as Part A."""
        ids = torch.as_tensor(ids, dtype=torch.long, device=self.device)
        B, L = ids.shape
        if part_a:
            first = torch.arange(L, device=self.device)
            second = torch.zeros(L, dtype=torch.long, device=self.device)
        else:
            first = torch.full((L,), mask_pos, dtype=torch.long, device=self.device)
            second = torch.as_tensor([block] if isinstance(block, int) else block, device=self.device)
        position_ids = torch.stack([first, second])[None].expand(B, 2, L)
        sep = torch.full((B,), L if part_a else 0, dtype=torch.long, device=self.device)
        logits = self.model(ids, position_ids, sep, cache=cache)["logits"]
        logits = logits if logits.dtype == torch.float64 else logits.float()
        return torch.log_softmax(logits + self._allowed, dim=-1)

    def _start(self, ids: list[int]) -> tuple[KVCache, list[int]]:
        ids = [int(i) for i in ids]
        masks = [p for p, t in enumerate(ids) if t in self.mask_ids]
        if not masks:
            raise ValueError("the input has no [MASK], [sMASK] or [gMASK] to fill")
        if len(ids) + 2 > self.model.cfg.seq_len:
            raise ValueError(f"{len(ids)} input tokens leave no room to generate in seq_len {self.model.cfg.seq_len}")
        cache = KVCache(len(self.model.blocks))
        self._feed(cache, [ids], 0, 0, part_a=True)
        return cache, masks

    def _budget(self, cache: KVCache, decoding: Decoding) -> int:
        return min(decoding.max_new_tokens, self.model.cfg.seq_len - cache.length - 1)

    # --- public
    @torch.no_grad()
    def fill(self, ids: list[int], decoding: Decoding = Decoding(), generator: torch.Generator | None = None,
             ) -> list[list[int]]:
        """The span generated for each mask of `ids`, in text order (without `[sop]` / `[eop]`)."""
        cache, masks = self._start(ids)
        spans = []
        for pos in masks:
            budget = self._budget(cache, decoding)
            if budget < 1:
                spans.append([])
                continue
            if decoding.strategy == "beam":
                span = list(self._beam(cache, pos, decoding, budget)[0].tokens)
                self._feed(cache, [[self.sop] + span], list(range(1, len(span) + 2)), pos)
            else:
                span = self._sample(cache, pos, decoding, budget, generator)
            spans.append(span)
        return spans

    @torch.no_grad()
    def candidates(self, ids: list[int], decoding: Decoding) -> list[Hypothesis]:
        """Beam search's hypotheses (best first) for the first mask of `ids`."""
        cache, masks = self._start(ids)
        return self._beam(cache, masks[0], decoding, self._budget(cache, decoding))

    @torch.no_grad()
    def span_logprob(self, ids: list[int], span: list[int], blank: int = 0) -> float:
        """log p(span [eop] | ids) for blank number `blank` of `ids` (earlier blanks stay unfilled)."""
        masks = [p for p, t in enumerate(ids) if t in self.mask_ids]
        if not 0 <= blank < len(masks):
            raise ValueError(f"blank {blank} of {len(masks)}")
        return float(score_spans(self.model, self.vocab, [(ids, masks[blank], span)], allowed=self._allowed)[0])

    def _sample(self, cache, pos, decoding, budget, generator) -> list[int]:
        logp = self._feed(cache, [[self.sop]], 1, pos)[:, -1]
        span: list[int] = []
        while len(span) < budget:
            token = int(pick_next(logp, decoding, generator)[0])
            if token == self.eop:
                break
            span.append(token)
            logp = self._feed(cache, [[token]], len(span) + 1, pos)[:, -1]
        return span

    def _beam(self, cache: KVCache, pos: int, decoding: Decoding, budget: int) -> list[Hypothesis]:
        if budget < 1:
            raise ValueError("no room left in seq_len for this blank")
        first = self._feed(cache, [[self.sop]], 1, pos)[0, -1]
        state = {"cache": cache, "fed": 1}

        def step(tokens: torch.Tensor, parents: torch.Tensor) -> torch.Tensor:
            state["cache"] = state["cache"].select(parents.to(self.device))
            state["fed"] += 1
            return self._feed(state["cache"], tokens[:, None], state["fed"], pos)[:, -1]

        return beam_search(step, first, self.eop, replace(decoding, max_new_tokens=budget))


def score_spans(model, vocab: Vocab, rows, *, allowed: torch.Tensor | None = None,
                cache: KVCache | None = None) -> torch.Tensor:
    """log p(span [eop] | Part A) [N] for rows (part_a ids, mask position, span ids), teacher-forced in one batched
    forward (differentiable: P-tuning trains through it). Each row is Part A, then `[sop] span`, then `[PAD]`s,
    which no real position attends to. `allowed` is added to the logits first (-inf on ids never chosen);
    `cache` is a prompt (P-tuning v2) every position sees."""
    sop, eop, pad = (vocab.token_id(t) for t in ("[sop]", "[eop]", "[PAD]"))
    length = max(len(a) + 1 + len(s) for a, _, s in rows)
    if length > model.cfg.seq_len:
        raise ValueError(f"input and span take {length} positions, more than seq_len {model.cfg.seq_len}")
    n = len(rows)
    ids = torch.full((n, length), pad, dtype=torch.long)
    pos = torch.zeros((n, 2, length), dtype=torch.long)
    targets = torch.full((n, length), -1, dtype=torch.long)
    for r, (part_a, mask_pos, span) in enumerate(rows):
        a, m = len(part_a), len(span) + 1
        ids[r, :a] = torch.as_tensor(list(part_a))
        pos[r, 0, :a] = torch.arange(a)
        ids[r, a:a + m] = torch.as_tensor([sop] + list(span))
        pos[r, 0, a:a + m] = int(mask_pos)
        pos[r, 1, a:a + m] = torch.arange(1, m + 1)
        targets[r, a:a + m] = torch.as_tensor(list(span) + [eop])
    sep = torch.as_tensor([len(a) for a, _, _ in rows])
    device = next(model.parameters()).device
    logits = model(ids.to(device), pos.to(device), sep.to(device), cache=cache)["logits"]
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    if allowed is not None:
        logits = logits + allowed
    logp = torch.log_softmax(logits, dim=-1)
    targets = targets.to(device)
    picked = logp.gather(2, targets.clamp_min(0)[..., None]).squeeze(2)
    return torch.where(targets >= 0, picked, torch.zeros_like(picked)).sum(dim=1)


def load_filler(checkpoint: str, tokenizer_dir: str, device: str = "cpu"):
    """(BlankFiller, TextTokenizer) for a GLM checkpoint of `wudao train` and its tokenizer folder."""
    from tokenizer.text import TextTokenizer
    from train.sample import load_checkpoint_model

    model, _, kind = load_checkpoint_model(checkpoint, device)
    if kind != "glm":
        raise ValueError(f"{checkpoint} is a {kind} checkpoint; generate needs a glm one")
    tokenizer = TextTokenizer.load(tokenizer_dir)
    if tokenizer.vocab.total_size != model.cfg.vocab_size:
        raise ValueError("the tokenizer's vocab.json does not match the checkpoint's vocabulary size")
    return BlankFiller(model, tokenizer.vocab), tokenizer


def generate(filler: BlankFiller, tokenizer, text: str, decoding: Decoding = Decoding(), *, seed: int = 0) -> dict:
    """Fill the blanks of `text`: {"text": the text with its blanks filled, "spans", "input_tokens"}."""
    ids = filler.encode(tokenizer, text)
    spans = filler.fill(ids, decoding, torch.Generator().manual_seed(seed))
    pieces, marks = split_blanks(text)
    fills = [tokenizer.decode(s) for s in spans]
    if not marks:   # the appended [gMASK]: the generation follows the text
        pieces = [text, ""]
    return {"text": "".join(p + f for p, f in zip(pieces, fills + [""])), "spans": fills, "input_tokens": len(ids)}
