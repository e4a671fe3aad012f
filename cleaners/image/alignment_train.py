"""Train the small alignment model (`cleaners.image.alignment.DualEncoder`) on image-caption pairs, and measure it.

Input: a JSONL file, one image per line: {"image": "relative/path.jpg", "captions": ["...", ...]} (also
"caption": "..." or "text": "..."); image paths are read only from under the JSONL's folder, and an image that does
not decode is left out (counted as `image-unreadable`). Pairs are split by image into train and held-out sets by a
hash of the image file name (deterministic, the same at every rerun).

Steps: a bilingual SentencePiece tokenizer on the training captions (`tokenizer.text.train_sentencepiece`: the
project's tokenizer format, stored beside the model), images preprocessed once as CLIP does at the model's
resolution, then AdamW with CLIP's symmetric contrastive loss, a linear warm-up and cosine decay, one caption drawn
per image per epoch and a random horizontal flip (seeded). Held-out retrieval recall@1/@5 in both directions
(image -> text: among all held-out captions, text -> image: among all held-out images) is reported next to
chance (k / N). Output folder: `model.pt`, `tokenizer.model`, `vocab.json`, `metrics.json`.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import random
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from PIL import Image

from cleaners.image.alignment import AlignmentConfig, DualEncoder, contrastive_loss, pad_ids, preprocess
from tokenizer.text import TextTokenizer, train_sentencepiece

BOS_ID, EOS_ID = 1, 2     # SentencePiece's control ids in `tokenizer.text.trainer_options`


@dataclass(frozen=True)
class Pair:
    image: Path
    captions: tuple[str, ...]


@dataclass
class TrainSettings:
    epochs: int = 60
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup_steps: int = 50
    held_out: float = 0.1      # share of images kept out of training, for recall
    vocab_size: int = 4000
    seed: int = 0


def read_pairs(path: str | Path) -> tuple[list[Pair], dict[str, int]]:
    """The pairs of a JSONL file and counts of lines dropped by reason (bad JSON, no caption, path outside the
    folder, missing image)."""
    path = Path(path)
    root = path.parent.resolve()
    pairs, dropped = [], {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                image = str(row["image"])
                captions = row.get("captions") or [row.get("caption") or row.get("text")]
            except (ValueError, KeyError, TypeError, AttributeError):
                dropped["bad-json"] = dropped.get("bad-json", 0) + 1
                continue
            captions = tuple(c.strip() for c in captions if isinstance(c, str) and c.strip())
            target = (root / image).resolve()
            reason = ("no-caption" if not captions else "image-path-outside-root" if not target.is_relative_to(root)
                      else "image-missing" if not target.is_file() else "")
            if reason:
                dropped[reason] = dropped.get(reason, 0) + 1
                continue
            pairs.append(Pair(target, captions))
    return pairs, dropped


def split_pairs(pairs: list[Pair], held_out: float) -> tuple[list[Pair], list[Pair]]:
    """(train, held-out) by a hash of each image's file name: stable under reordering and reruns."""
    def bucket(pair: Pair) -> float:
        return int(hashlib.sha256(pair.image.name.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    train = [p for p in pairs if bucket(p) >= held_out]
    test = [p for p in pairs if bucket(p) < held_out]
    return train, test


def encode_captions(tokenizer: TextTokenizer, captions: list[str], context_length: int
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """BOS + pieces + EOS per caption, cut to the context with EOS kept last (the embedding is read there)."""
    sequences = [[BOS_ID, *ids[:context_length - 2], EOS_ID] for ids in tokenizer.encode_batch(captions, 1)]
    return pad_ids(sequences, context_length)


def recall_at(image_emb: torch.Tensor, text_emb: torch.Tensor, text_owner: torch.Tensor,
              ks: tuple[int, ...] = (1, 5)) -> dict[str, float]:
    """Retrieval recall: image -> text counts a hit when any of the image's captions ranks in the top k; text ->
    image when the caption's own image does. `text_owner[j]` is the image index of caption j."""
    sims = image_emb @ text_emb.t()                                   # [images, texts]
    result = {}
    for k in ks:
        top_texts = sims.topk(min(k, sims.shape[1]), dim=1).indices   # [images, k]
        own = text_owner[top_texts] == torch.arange(len(sims)).unsqueeze(1)
        result[f"image_to_text_R@{k}"] = own.any(dim=1).float().mean().item()
        top_images = sims.t().topk(min(k, sims.shape[0]), dim=1).indices
        result[f"text_to_image_R@{k}"] = (top_images == text_owner.unsqueeze(1)).any(dim=1).float().mean().item()
        result[f"chance_R@{k}"] = min(1.0, k / len(sims))
    return result


def load_images(pairs: list[Pair], size: int) -> tuple[torch.Tensor | None, list[Pair], int]:
    """The pairs' images prepared for the model, the pairs whose image decoded, and how many did not (a
    truncated or corrupt file is left out, not fatal)."""
    images, kept = [], []
    for pair in pairs:
        try:
            with Image.open(pair.image) as image:
                images.append(preprocess(image, size))
            kept.append(pair)
        except (OSError, ValueError, Image.DecompressionBombError):
            continue
    return (torch.stack(images) if images else None), kept, len(pairs) - len(kept)


@torch.no_grad()
def evaluate(model: DualEncoder, tokenizer: TextTokenizer, pairs: list[Pair]) -> dict[str, float]:
    """Held-out recall of `model` on `pairs` (every caption of every image)."""
    model.eval()
    images, pairs, _ = load_images(pairs, model.config.image_size)
    if images is None:
        raise ValueError("no held-out image could be decoded")
    captions = [c for pair in pairs for c in pair.captions]
    owner = torch.tensor([i for i, pair in enumerate(pairs) for _ in pair.captions])
    ids, lengths = encode_captions(tokenizer, captions, model.config.context_length)
    image_emb, text_emb = model(images, ids, lengths)
    return {"images": len(pairs), "captions": len(captions), **recall_at(image_emb, text_emb, owner)}


def train_alignment(pairs_path: str, output_dir: str, config: AlignmentConfig | None = None,
                    settings: TrainSettings | None = None, log=print) -> dict:
    """Train, evaluate on the held-out images, write the model folder; returns the metrics written."""
    settings, config = settings or TrainSettings(), config or AlignmentConfig()
    pairs, dropped = read_pairs(pairs_path)
    images, pairs, unreadable = load_images(pairs, config.image_size)
    if unreadable:
        dropped["image-unreadable"] = unreadable
    train, test = split_pairs(pairs, settings.held_out)
    if len(train) < 2 or not test:
        raise ValueError(f"{pairs_path}: {len(train)} training and {len(test)} held-out images; need more pairs")
    os.makedirs(output_dir, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", suffix=".txt", delete=False) as f:
        f.write("\n".join(c.replace("\n", " ") for pair in train for c in pair.captions) + "\n")
    try:
        vocab = train_sentencepiece([f.name], output_dir, vocab_size=settings.vocab_size, seed=settings.seed,
                                    num_threads=1, image_codes=0)
    finally:
        os.unlink(f.name)
    tokenizer = TextTokenizer.load(output_dir)
    config = AlignmentConfig(**{**asdict(config), "vocab_size": vocab.text_vocab_size})
    held_out = {pair.image for pair in test}
    images = images[[i for i, pair in enumerate(pairs) if pair.image not in held_out]]   # the train pairs' images

    torch.manual_seed(settings.seed)
    rng = random.Random(settings.seed)
    model = DualEncoder(config)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    other = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": settings.weight_decay},
                                   {"params": other, "weight_decay": 0.0}], lr=settings.lr)
    steps_per_epoch = math.ceil(len(train) / settings.batch_size)
    total = settings.epochs * steps_per_epoch

    def lr_at(step: int) -> float:
        if step < settings.warmup_steps:
            return settings.lr * (step + 1) / settings.warmup_steps
        progress = (step - settings.warmup_steps) / max(1, total - settings.warmup_steps)
        return settings.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    step, last_loss = 0, float("nan")
    for epoch in range(settings.epochs):
        model.train()
        order = list(range(len(train)))
        rng.shuffle(order)
        for start in range(0, len(order), settings.batch_size):
            batch = order[start:start + settings.batch_size]
            if len(batch) < 2:
                continue
            pixels = images[batch]
            flip = torch.tensor([rng.random() < 0.5 for _ in batch])
            pixels = torch.where(flip[:, None, None, None], pixels.flip(-1), pixels)
            ids, lengths = encode_captions(tokenizer, [rng.choice(train[i].captions) for i in batch],
                                           config.context_length)
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step)
            image_emb, text_emb = model(pixels, ids, lengths)
            loss = contrastive_loss(image_emb, text_emb, model.logit_scale)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step, last_loss = step + 1, loss.item()
        if epoch % 10 == 9 or epoch == settings.epochs - 1:
            log(f"epoch {epoch + 1}/{settings.epochs}: loss {last_loss:.4f}")

    metrics = {"held_out": evaluate(model, tokenizer, test), "train_images": len(train),
               "dropped": dropped, "final_loss": last_loss, "steps": step, "settings": asdict(settings),
               "parameters": sum(p.numel() for p in model.parameters())}
    model.save(os.path.join(output_dir, "model.pt"))
    with open(os.path.join(output_dir, "metrics.json"), "w", encoding="utf-8") as f:
        json.dump(metrics, f, indent=2, ensure_ascii=False)
    return metrics
