"""P-tuning v2 (Liu et al., ACL 2022): deep prompts on a frozen GLM, classification cast as blank filling.

* Deep prompts: ``length`` trainable key and value vectors per layer and head, which every position attends to
  (prefix keys/values in every layer, as P-tuning v2 and prefix-tuning put them; they take no position). They
  enter the model as a ``KVCache`` (`train/layers.py`), so the base model's code is the generation code. Initialised
  from the frozen model's own keys and values of random text tokens (prefix-tuning, Li & Liang 2021, sec. 7.2,
  found real activations a better start than random vectors). Only the prompt trains: the base weights are
  frozen and stay bit-identical.
* Classification as blank filling (GLM, Du et al. 2022, sec. 3.1): a template puts the text around one `[MASK]`
  (``"{text}。学科：[MASK]"``); each label has a verbalizer word; the class score is
  ``log p(word [eop] | filled template)`` (`glm_generate.score_spans`), trained with cross-entropy over the labels.
* ``full=True`` fine-tunes every weight of the model with the same objective: the baseline P-tuning is compared to.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from train.glm_generate import score_spans
from train.layers import KVCache

PROMPT_FILE = "prompt.pt"


class DeepPrompt(nn.Module):
    """Trainable keys and values [n_layers, n_heads, length, head_dim] each; ``cache(batch)`` hands them to the
    model as a ``KVCache`` of `length` positions."""

    def __init__(self, n_layers: int, n_heads: int, head_dim: int, length: int):
        super().__init__()
        if length < 1:
            raise ValueError("prompt length must be >= 1")
        self.keys = nn.Parameter(torch.zeros(n_layers, n_heads, length, head_dim))
        self.values = nn.Parameter(torch.zeros(n_layers, n_heads, length, head_dim))

    @classmethod
    def for_model(cls, model, length: int, generator: torch.Generator | None = None, text_ids: int | None = None):
        """A prompt shaped for `model`, initialised from its keys/values of `length` random text-token ids
        (ids below `text_ids`, default the whole vocabulary) fed as Part A."""
        cfg = model.cfg
        prompt = cls(cfg.n_layers, cfg.n_heads, cfg.d_model // cfg.n_heads, length)
        device = next(model.parameters()).device
        ids = torch.randint(0, text_ids or cfg.vocab_size, (1, length), generator=generator).to(device)
        positions = torch.stack([torch.arange(length), torch.zeros(length, dtype=torch.long)])[None].to(device)
        cache = KVCache(cfg.n_layers)
        was_training = model.training
        with torch.no_grad():
            model.eval()
            model(ids, positions, torch.tensor([length], device=device), cache=cache)
            prompt.keys.copy_(torch.stack([layer.k[0] for layer in cache.layers]))
            prompt.values.copy_(torch.stack([layer.v[0] for layer in cache.layers]))
        model.train(was_training)
        return prompt.to(device)

    def cache(self, batch: int) -> KVCache:
        out = KVCache(self.keys.size(0))
        for i, layer in enumerate(out.layers):
            layer.k = self.keys[i][None].expand(batch, -1, -1, -1)
            layer.v = self.values[i][None].expand(batch, -1, -1, -1)
        return out


@dataclass
class ClozeTask:
    """A template with ``{text}`` and one ``[MASK]``, and a verbalizer: label -> word."""

    template: str
    verbalizer: dict[str, str]

    def __post_init__(self) -> None:
        if "{text}" not in self.template or self.template.count("[MASK]") != 1:
            raise ValueError("the template needs {text} and exactly one [MASK]")
        if len(self.verbalizer) < 2:
            raise ValueError("a verbalizer needs at least two labels")

    @property
    def labels(self) -> list[str]:
        return list(self.verbalizer)

    def encode(self, tokenizer, filler, text: str, max_len: int) -> tuple[list[int], int]:
        """(Part A ids, mask position) of `text` in the template; the text is cut (by tokens) to leave room for
        the longest verbalizer word and `[sop]` within `max_len`."""
        words = self.word_ids(tokenizer)
        before, after = self.template.split("{text}", 1)
        head, tail = (filler.encode(tokenizer, part, append_gmask=False) for part in (before, after))
        room = max_len - len(head) - len(tail) - 1 - max(len(w) for w in words)
        if room < 1:
            raise ValueError("the template and verbalizer leave no room for the text in seq_len")
        ids = head + tokenizer.encode(text)[:room] + tail
        return ids, next(i for i, t in enumerate(ids) if t in filler.mask_ids)

    def word_ids(self, tokenizer) -> list[list[int]]:
        words = [tokenizer.encode(w) for w in self.verbalizer.values()]
        if any(not w for w in words) or len({tuple(w) for w in words}) != len(words):
            raise ValueError("verbalizer words must be non-empty and distinct")
        return words


def label_scores(model, vocab, encoded: list[tuple[list[int], int]], words: list[list[int]],
                 prompt: DeepPrompt | None = None) -> torch.Tensor:
    """[B, K] scores log p(word_k [eop] | example b) for B encoded examples and K verbalizer words."""
    rows = [(ids, pos, w) for ids, pos in encoded for w in words]
    cache = prompt.cache(len(rows)) if prompt is not None else None
    return score_spans(model, vocab, rows, cache=cache).view(len(encoded), len(words))


def trainable_parameters(model, prompt: DeepPrompt | None) -> tuple[int, int]:
    """(trainable, base model) parameter counts: the prompt's for P-tuning, the model's for full fine-tuning."""
    base = sum(p.numel() for p in model.parameters())
    return (sum(p.numel() for p in prompt.parameters()) if prompt is not None else base), base


def tune(model, tokenizer, filler, task: ClozeTask, rows: list[tuple[str, str]], *, full: bool = False,
         prompt_length: int = 16, steps: int = 300, batch_size: int = 16, lr: float | None = None,
         seed: int = 0, log=None) -> DeepPrompt | None:
    """Train on (text, label) rows: the deep prompt (returned; the model frozen) or, with `full`, the whole model
    (returns None). lr defaults: 5e-3 for prompts (P-tuning v2 uses 5e-3 to 1e-2), 1e-4 for full fine-tuning."""
    labels = task.labels
    unknown = sorted({label for _, label in rows} - set(labels))
    if unknown:
        raise ValueError(f"labels {unknown[:5]} are not in the verbalizer")
    words = task.word_ids(tokenizer)
    encoded = [task.encode(tokenizer, filler, text, model.cfg.seq_len) for text, _ in rows]
    gold = torch.tensor([labels.index(label) for _, label in rows])
    gen = torch.Generator().manual_seed(seed)
    if full:
        prompt = None
        model.train()
        params = list(model.parameters())
    else:
        for p in model.parameters():
            p.requires_grad_(False)
        model.eval()
        prompt = DeepPrompt.for_model(model, prompt_length, gen, tokenizer.vocab.text_vocab_size)
        params = list(prompt.parameters())
    opt = torch.optim.AdamW(params, lr=lr or (1e-4 if full else 5e-3), weight_decay=0.0 if not full else 0.01)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(rows))
    cursor = 0
    for step in range(steps):
        if cursor + batch_size > len(order):
            order, cursor = rng.permutation(len(rows)), 0
        batch = order[cursor:cursor + batch_size]
        cursor += batch_size
        scores = label_scores(model, tokenizer.vocab, [encoded[i] for i in batch], words, prompt)
        loss = nn.functional.cross_entropy(scores, gold[batch].to(scores.device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if log is not None and (step + 1) % 50 == 0:
            log(f"step {step + 1}: loss {loss.item():.4f}")
    model.eval()
    return prompt


@torch.no_grad()
def evaluate(model, tokenizer, filler, task: ClozeTask, rows: list[tuple[str, str]], prompt: DeepPrompt | None = None,
             batch_size: int = 32) -> dict:
    """Accuracy over (text, label) rows: the label whose word scores highest."""
    words = task.word_ids(tokenizer)
    labels = task.labels
    correct = 0
    for start in range(0, len(rows), batch_size):
        chunk = rows[start:start + batch_size]
        encoded = [task.encode(tokenizer, filler, text, model.cfg.seq_len) for text, _ in chunk]
        best = label_scores(model, tokenizer.vocab, encoded, words, prompt).argmax(dim=1).tolist()
        correct += sum(labels[b] == label for b, (_, label) in zip(best, chunk))
    return {"accuracy": correct / max(len(rows), 1), "examples": len(rows)}


def save_prompt(prompt: DeepPrompt, task: ClozeTask, folder: str, base_sha256: str) -> str:
    """`folder/prompt.pt` (tensors only, loadable weights-only) and `folder/task.json` (template, verbalizer,
    the base checkpoint's sha256, which `load_prompt` checks)."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, PROMPT_FILE)
    torch.save({"keys": prompt.keys.detach().cpu(), "values": prompt.values.detach().cpu()}, path)
    with open(os.path.join(folder, "task.json"), "w", encoding="utf-8") as f:
        json.dump({"template": task.template, "verbalizer": task.verbalizer, "base_sha256": base_sha256}, f,
                  ensure_ascii=False, indent=1)
    return path


def load_prompt(folder: str, model, base_sha256: str) -> tuple[DeepPrompt, ClozeTask]:
    """The prompt and task saved by `save_prompt`, refused unless made on the same base checkpoint and shaped
    for `model`."""
    from tokenizer.vq import CheckpointError, load_weights

    with open(os.path.join(folder, "task.json"), encoding="utf-8") as f:
        meta = json.load(f)
    if meta.get("base_sha256") != base_sha256:
        raise CheckpointError(f"{folder}: the prompt was tuned on another base checkpoint")
    state = load_weights(os.path.join(folder, PROMPT_FILE))
    cfg = model.cfg
    keys, values = state.get("keys"), state.get("values")
    want = (cfg.n_layers, cfg.n_heads, None, cfg.d_model // cfg.n_heads)
    for t in (keys, values):
        if not isinstance(t, torch.Tensor) or t.dim() != 4 or any(w is not None and s != w
                                                                   for s, w in zip(t.shape, want)):
            raise CheckpointError(f"{folder}: prompt tensors are not shaped [layers, heads, length, head_dim] "
                                  f"for this model ({want})")
    prompt = DeepPrompt(cfg.n_layers, cfg.n_heads, cfg.d_model // cfg.n_heads, keys.size(2))
    with torch.no_grad():
        prompt.keys.copy_(keys)
        prompt.values.copy_(values)
    return prompt.to(next(model.parameters()).device), ClozeTask(meta["template"], meta["verbalizer"])


def read_labeled(path: str) -> list[tuple[str, str]]:
    """(text, label) rows of a JSONL file of {"text", "label"} objects; a malformed line is a ValueError naming it."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                text, label = obj["text"], obj["label"]
            except (json.JSONDecodeError, KeyError, TypeError):
                raise ValueError(f"{path}:{n}: not a JSON object with text and label") from None
            if not isinstance(text, str) or not isinstance(label, str):
                raise ValueError(f"{path}:{n}: text and label must be strings")
            rows.append((text, label))
    if not rows:
        raise ValueError(f"{path}: no labeled rows")
    return rows


def parse_verbalizer(value: str) -> dict[str, str]:
    """A JSON object label -> word, a path to one, or a comma list of labels that are their own words."""
    if os.path.isfile(value):
        with open(value, encoding="utf-8") as f:
            value = f.read()
    value = value.strip()
    if value.startswith("{"):
        mapping = json.loads(value)
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()):
            raise ValueError("the verbalizer maps label strings to word strings")
        return mapping
    return {label.strip(): label.strip() for label in value.split(",") if label.strip()}


def run_ptune(checkpoint: str, tokenizer_dir: str, verbalizer: str | None, template: str | None, *,
              train: str | None = None, eval_path: str | None = None, prompt_dir: str | None = None,
              out: str | None = None, full: bool = False, prompt_length: int = 16, steps: int = 300,
              batch_size: int = 16, lr: float | None = None, seed: int = 0, device: str = "cpu", log=None) -> dict:
    """`wudao ptune`: tune a deep prompt (or, with `full`, every weight) on `train`, save it to `out`, and/or
    evaluate on `eval_path` (with the prompt of `prompt_dir` when given)."""
    from tokenizer.vocab import file_sha256
    from train.glm_generate import load_filler

    torch.manual_seed(seed)
    filler, tokenizer = load_filler(checkpoint, tokenizer_dir, device)
    model = filler.model
    base_sha = file_sha256(checkpoint)
    prompt = None
    if prompt_dir:
        prompt, task = load_prompt(prompt_dir, model, base_sha)
    else:
        if not verbalizer or not template:
            raise ValueError("give --verbalizer and --template (or --prompt DIR of a tuned prompt)")
        task = ClozeTask(template, parse_verbalizer(verbalizer))
    result: dict = {}
    if train:
        if prompt_dir:
            raise ValueError("--prompt loads a tuned prompt; tune a new one without it")
        prompt = tune(model, tokenizer, filler, task, read_labeled(train), full=full, prompt_length=prompt_length,
                      steps=steps, batch_size=batch_size, lr=lr, seed=seed, log=log)
        trainable, base = trainable_parameters(model, prompt)
        result.update(trainable_parameters=trainable, base_parameters=base,
                      trainable_share_percent=round(100.0 * trainable / base, 3))
        if out:
            if prompt is not None:
                result["saved"] = save_prompt(prompt, task, out, base_sha)
            else:
                os.makedirs(out, exist_ok=True)
                result["saved"] = os.path.join(out, "ckpt.pt")
                torch.save({"model": model.state_dict(), "config": model.cfg.to_dict(), "kind": "glm"},
                           result["saved"])
    if eval_path:
        result.update(evaluate(model, tokenizer, filler, task, read_labeled(eval_path), prompt))
    if not result:
        raise ValueError("nothing to do: give --train and/or --eval")
    return result
