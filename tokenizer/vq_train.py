"""Train the VQ-VAE image tokenizer on a stream of images; measure it; encode images with it.

Images come from image files and from WebDataset tars (the image-text pipeline's output: members KEY.jpg,
KEY.txt, KEY.json; any image member is used), named by paths, globs or folders, or given directly as bytes or
PIL images. They are decoded with Pillow as RGB, the shorter side resized to the model resolution (bicubic) and
center-cropped, as CogView prepares its 256x256 training images. Batches form on the fly from a seeded shuffle
buffer; the first `eval_images` images are held out for reconstruction PSNR and codebook usage. Training images
of re-iterable sources are kept decoded in memory between epochs when they fit `CACHE_BYTES`.
Options for small sets: `augment=True` (seeded random resized crops and horizontal flips, as in Inception,
Szegedy et al. 2015) and `lr_schedule="cosine"` (linear warm-up, then cosine decay; Loshchilov & Hutter 2017).

Outputs in `output_dir`: `vq.pt` (see `tokenizer.vq.VQVAE.save`) and `vq_metrics.json`.
"""
from __future__ import annotations

import glob
import gzip
import io
import json
import math
import os
import random
import time
import zlib
from collections import Counter
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from shards.tar import Damage, iter_members
from tokenizer.schedule import warmup_cosine
from tokenizer.vq import VQConfig, VQVAE

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".ppm", ".tif", ".tiff")
TAR_EXTENSIONS = (".tar", ".tar.gz", ".tgz")
MODEL_FILE = "vq.pt"
METRICS_FILE = "vq_metrics.json"
CACHE_BYTES = 256 * 2 ** 20  # decoded training images kept between epochs up to this size
LR_SCHEDULES = ("constant", "cosine")


def psnr(a: torch.Tensor, b: torch.Tensor, data_range: float = 2.0) -> float:
    """Mean per-image PSNR in dB of two [B, C, H, W] (or [C, H, W]) batches; range 2.0 for [-1, 1] images.

    Identical images score 100 dB (mean squared error floored at 1e-10 * range^2)."""
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    if a.dim() == 3:
        a, b = a.unsqueeze(0), b.unsqueeze(0)
    mse = (a.float() - b.float()).pow(2).flatten(1).mean(1).clamp_min(1e-10 * data_range ** 2)
    return float((10.0 * torch.log10(data_range ** 2 / mse)).mean())


def preprocess(image: Image.Image, resolution: int) -> torch.Tensor:
    """PIL image -> float tensor [3, R, R] in [-1, 1]: EXIF rotation, RGB, shorter side to R, center crop."""
    image = ImageOps.exif_transpose(image)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        image = Image.new("RGB", rgba.size, (255, 255, 255))
        image.paste(rgba, mask=rgba.getchannel("A"))  # transparent pixels become white, not black
    image = image.convert("RGB")
    w, h = image.size
    scale = resolution / min(w, h)
    nw, nh = max(resolution, round(w * scale)), max(resolution, round(h * scale))
    image = image.resize((nw, nh), Image.Resampling.BICUBIC, reducing_gap=3.0)
    left, top = (nw - resolution) // 2, (nh - resolution) // 2
    image = image.crop((left, top, left + resolution, top + resolution))
    array = np.asarray(image, dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(127.5).sub_(1.0)


def _decode(data: bytes, resolution: int) -> torch.Tensor:
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        if image.width < 1 or image.height < 1:
            raise ValueError("empty image")
        return preprocess(image, resolution)


def _is_tar(path: str) -> bool:
    return path.lower().endswith(TAR_EXTENSIONS)


def _is_image(path: str) -> bool:
    return path.lower().endswith(IMAGE_EXTENSIONS)


def expand_sources(sources: Iterable) -> Iterator:
    """Paths, globs and folders -> image files and tars in sorted order; bytes/PIL images pass through."""
    if isinstance(sources, (str, os.PathLike, bytes, Image.Image)):
        sources = [sources]
    for item in sources:
        if isinstance(item, (bytes, Image.Image)):
            yield item
            continue
        path = os.fspath(item)
        if os.path.isdir(path):
            found = sorted(str(p) for p in Path(path).rglob("*")
                           if p.is_file() and (_is_image(str(p)) or _is_tar(str(p))))
            yield from found
        elif glob.has_magic(path):
            yield from sorted(glob.glob(path, recursive=True))
        else:
            yield path


def iter_images(sources: Iterable, resolution: int, skips: list | None = None) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield (name, tensor [3, R, R] in [-1, 1]) for every readable image; bad ones go to `skips` as
    (name, reason) and never stop the stream. Tar members are named "<tar>#<member>"."""
    def skip(name: str, reason: str) -> None:
        if skips is not None:
            skips.append((name, reason))

    for n, item in enumerate(expand_sources(sources)):
        if isinstance(item, Image.Image):
            name = f"<image {n}>"
            try:
                yield name, preprocess(item, resolution)
            except Exception as exc:  # Pillow raises many kinds on corrupt data
                skip(name, f"bad image: {type(exc).__name__}")
            continue
        if isinstance(item, bytes):
            name = f"<bytes {n}>"
            try:
                yield name, _decode(item, resolution)
            except Exception as exc:  # Pillow raises many kinds on corrupt data
                skip(name, f"undecodable image: {type(exc).__name__}")
            continue
        if _is_tar(item):
            yield from _iter_tar(item, resolution, skip)
            continue
        try:
            with open(item, "rb") as f:
                data = f.read()
        except OSError as exc:
            skip(item, f"unreadable file: {exc.strerror or type(exc).__name__}")
            continue
        try:
            yield item, _decode(data, resolution)
        except Exception as exc:  # Pillow raises many kinds on corrupt data
            skip(item, f"undecodable image: {type(exc).__name__}")


def _iter_tar(path: str, resolution: int, skip) -> Iterator[tuple[str, torch.Tensor]]:
    """The image members of a tar (gzipped or not), streamed in order by `shards.tar.iter_members`; other members
    are left unread. A tar that cannot be opened or ends cut or corrupt is one skip; the images before stay."""
    try:
        raw = open(path, "rb")
    except OSError as exc:
        skip(path, f"unreadable tar: {type(exc).__name__}")
        return
    with raw:
        try:
            stream = gzip.GzipFile(fileobj=raw) if raw.peek(2)[:2] == b"\x1f\x8b" else raw
            for item in iter_members(stream, max_size=lambda name: None if _is_image(name) else 0):
                if isinstance(item, Damage):
                    start = item.member is None and item.offset == 0
                    skip(path, f"{'unreadable tar' if start else 'truncated or corrupt tar'}: {item.reason}")
                    return
                if not item.is_file or item.data is None or not _is_image(item.name):
                    continue
                name = f"{path}#{item.name}"
                try:
                    yield name, _decode(item.data, resolution)
                except Exception as exc:  # Pillow raises many kinds on corrupt data
                    skip(name, f"undecodable image: {type(exc).__name__}")
        except (OSError, EOFError, zlib.error) as exc:  # a gzip stream cut short or corrupt
            skip(path, f"truncated or corrupt tar: {type(exc).__name__}")


def _reiterable(sources) -> bool:
    return isinstance(sources, (str, os.PathLike, list, tuple))


def _training_stream(first_pass: Iterator, sources, resolution: int, holdout: int, rng: random.Random,
                     buffer: int, cache_bytes: int = CACHE_BYTES) -> Iterator[torch.Tensor]:
    """Training images, shuffled through a buffer: `first_pass` (the held-out images already taken from it),
    then, for re-iterable sources, further passes that skip the first `holdout` images, until one is empty.
    When the first pass fits in `cache_bytes`, later passes replay it from memory (same images, same order)."""
    def one_pass(images) -> Iterator[torch.Tensor]:
        pool: list[torch.Tensor] = []
        for _, tensor in images:
            pool.append(tensor)
            if len(pool) >= buffer:
                yield pool.pop(rng.randrange(len(pool)))
        rng.shuffle(pool)
        yield from pool

    def skip_holdout(images):
        for i, pair in enumerate(images):
            if i >= holdout:
                yield pair

    reiterable = _reiterable(sources)
    cache: list | None = [] if reiterable else None

    def recorded(images):
        nonlocal cache
        size = 0
        for pair in images:
            if cache is not None:
                size += pair[1].numel() * pair[1].element_size()
                if size <= cache_bytes:
                    cache.append(pair)
                else:
                    cache = None  # too big: later passes read the sources again
            yield pair

    yield from one_pass(recorded(first_pass))
    if not reiterable:
        return
    while True:
        produced = False
        images = iter(cache) if cache is not None else skip_holdout(iter_images(sources, resolution, None))
        for tensor in one_pass(images):
            produced = True
            yield tensor
        if not produced:
            return


def augment_image(x: torch.Tensor, generator: torch.Generator, min_scale: float = 0.35) -> torch.Tensor:
    """A random resized crop of [C, H, W] `x` back to H x W (area fraction in [min_scale, 1], aspect ratio in
    [3/4, 4/3], bilinear), flipped left-right with probability 1/2; draws only from `generator`."""
    _, h, w = x.shape
    u = torch.rand(4, generator=generator).tolist()
    area = (min_scale + (1.0 - min_scale) * u[0]) * h * w
    ratio = math.exp(math.log(3 / 4) + (math.log(4 / 3) - math.log(3 / 4)) * u[1])
    ch = max(1, min(h, round(math.sqrt(area / ratio))))
    cw = max(1, min(w, round(math.sqrt(area * ratio))))
    top, left = round((h - ch) * u[2]), round((w - cw) * u[3])
    crop = x[:, top:top + ch, left:left + cw]
    if (ch, cw) != (h, w):
        crop = F.interpolate(crop.unsqueeze(0), size=(h, w), mode="bilinear", align_corners=False).squeeze(0)
    if bool(torch.rand(1, generator=generator) < 0.5):
        crop = crop.flip(-1)
    return crop.clamp(-1.0, 1.0)


def lr_factor(step: int, steps: int, schedule: str, warmup: int) -> float:
    """Multiplier of the base learning rate at 0-based `step`: 1 for "constant"; for "cosine" a linear warm-up
    over `warmup` steps, then half a cosine from 1 down to 0.1 at the last step (`tokenizer.schedule`)."""
    if schedule == "constant":
        return 1.0
    return warmup_cosine(step, warmup, steps - warmup - 1, 0.1)


def _batches(stream: Iterator[torch.Tensor], batch_size: int) -> Iterator[torch.Tensor]:
    batch: list[torch.Tensor] = []
    for tensor in stream:
        batch.append(tensor)
        if len(batch) == batch_size:
            yield torch.stack(batch)
            batch = []


def codebook_stats(codes: torch.Tensor, codebook_size: int) -> dict:
    """Fraction of codes used and perplexity exp(H) of the code histogram (codebook_size when uniform)."""
    counts = torch.bincount(codes.reshape(-1), minlength=codebook_size).double()
    total = counts.sum()
    if total == 0:
        return {"codebook_usage": 0.0, "perplexity": 0.0}
    p = counts[counts > 0] / total
    return {"codebook_usage": float((counts > 0).sum()) / codebook_size,
            "perplexity": float(torch.exp(-(p * p.log()).sum()))}


def evaluate(model: VQVAE, images: list[torch.Tensor], batch_size: int = 8, device: str = "cpu") -> dict:
    """PSNR of decode(encode(x)) against x, and codebook usage over the images' codes."""
    if not images:
        return {"psnr_db": None, "codebook_usage": None, "perplexity": None}
    model.eval()
    scores, all_codes = [], []
    for start in range(0, len(images), batch_size):
        x = torch.stack(images[start:start + batch_size]).to(device)
        codes = model.encode(x)
        recon = model.decode(codes)
        scores.append(psnr(recon.cpu(), x.cpu()) * len(x))
        all_codes.append(codes.cpu())
    stats = codebook_stats(torch.cat(all_codes), model.config.codebook_size)
    return {"psnr_db": sum(scores) / len(images), **stats}


def train_vq(sources, output_dir: str, config: VQConfig | None = None, steps: int = 1000, batch_size: int = 8,
             lr: float = 2e-4, seed: int = 0, device: str = "cpu", eval_images: int = 16,
             shuffle_buffer: int = 256, log_every: int = 10, augment: bool = False, lr_schedule: str = "constant",
             warmup_steps: int = 0) -> dict:
    """Train a VQ-VAE on `sources` (paths/globs/folders of images and tars, or an iterable of them, bytes or
    PIL images); write `vq.pt` and `vq_metrics.json` to `output_dir`; return the metrics.

    Loss: mean squared reconstruction error plus the quantizer's loss (van den Oord et al. 2017). A one-shot
    iterable ends training when it runs out (metrics "steps" says how many ran); paths are read again each epoch
    unless the training images fit the in-memory cache. `augment` crops and flips each training image (seeded).
    """
    config = config or VQConfig()
    if steps < 0 or batch_size < 1 or eval_images < 0 or lr <= 0:
        raise ValueError("steps >= 0, batch_size >= 1, eval_images >= 0 and lr > 0 required")
    if lr_schedule not in LR_SCHEDULES or warmup_steps < 0:
        raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES} and warmup_steps >= 0")
    os.makedirs(output_dir, exist_ok=True)
    torch.manual_seed(seed)
    rng = random.Random(seed)
    skips: list = []
    images = iter_images(sources, config.resolution, skips)
    heldout = [tensor for _, tensor in _take(images, eval_images)]
    if len(heldout) < eval_images:
        raise ValueError(f"only {len(heldout)} readable images, fewer than eval_images={eval_images}")
    stream = _training_stream(images, sources, config.resolution, eval_images, rng, max(1, shuffle_buffer))

    model = VQVAE(config).to(device)
    model.train()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr, betas=(0.9, 0.99))
    generator = torch.Generator().manual_seed(seed)
    losses: list[float] = []
    curve: list[list[float]] = []
    started = time.perf_counter()
    done = 0
    for batch in _batches(stream, batch_size):
        if done >= steps:
            break
        if augment:
            batch = torch.stack([augment_image(image, generator) for image in batch])
        for group in optimizer.param_groups:
            group["lr"] = lr * lr_factor(done, steps, lr_schedule, warmup_steps)
        x = batch.to(device)
        recon, vq_loss, _ = model(x)
        rec_loss = F.mse_loss(recon, x)
        loss = rec_loss + vq_loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        done += 1
        losses.append(float(rec_loss.detach()))
        if done % max(1, log_every) == 0 or done == 1:
            curve.append([done, round(float(rec_loss.detach()), 6), round(float(vq_loss.detach()), 6)])
    seconds = time.perf_counter() - started
    if done == 0 and steps > 0:
        raise ValueError("no training images left after the held-out set")

    metrics = {
        "steps": done, "batch_size": batch_size, "images_seen": done * batch_size, "lr": lr, "seed": seed,
        "lr_schedule": lr_schedule, "warmup_steps": warmup_steps, "augment": augment,
        "device": device, "seconds": round(seconds, 3),
        "recon_mse_first": _mean(losses[:10]), "recon_mse_last": _mean(losses[-10:]),
        "codes_alive_ema": model.quantizer.alive_fraction(),
        "heldout_images": len(heldout), **evaluate(model, heldout, batch_size, device),
        "skipped": len(skips), "skip_reasons": dict(Counter(reason for _, reason in skips)),
        "loss_curve": curve, "config": config.to_dict(),
    }
    model.save(os.path.join(output_dir, MODEL_FILE))
    path = os.path.join(output_dir, METRICS_FILE)
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(metrics, f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(path + ".tmp", path)
    return metrics


def encode_images(model: VQVAE, sources, batch_size: int = 8, device: str = "cpu",
                  skips: list | None = None) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield (name, codes LongTensor [h, w]) for each readable image in `sources`, batching on the fly;
    unreadable images go to `skips` as (name, reason)."""
    model.eval()
    pending: list[tuple[str, torch.Tensor]] = []

    def flush():
        codes = model.encode(torch.stack([t for _, t in pending]).to(device)).cpu()
        return [(name, c) for (name, _), c in zip(pending, codes)]

    for pair in iter_images(sources, model.config.resolution, skips):
        pending.append(pair)
        if len(pending) == batch_size:
            yield from flush()
            pending = []
    if pending:
        yield from flush()


def _take(it: Iterator, n: int) -> list:
    out = []
    for _ in range(n):
        try:
            out.append(next(it))
        except StopIteration:
            break
    return out


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None
