#!/usr/bin/env python
"""Image-text alignment: the small model's held-out retrieval, scoring speed, and the stage's share of a run.

    .venv/bin/python bench/alignment.py           # about 3-5 minutes on 2 cores

(1) The small model (`wudao alignment train` defaults) trained on bench/data/alignment/openmoji (1910 OpenMoji
illustrations with their English and Chinese CLDR names, SOURCE.md there), 10% of the images held out by name hash:
recall@1/@5 image -> text and text -> image next to chance (k / held-out images), the same figures as
`metrics.json`. (2) Scoring speed on one core (torch threads = 1): pairs/s of `AlignmentScore.score_batch` (JPEG
decode, CLIP preprocessing, tokenizing, one forward pass per batch of 64) for the small model and for a
ViT-B/32-sized model with random weights (OpenCLIP ViT-B-32: 224 px, patch 32, width 768 x 12 layers; text 512 x 12,
77 tokens, 49408 ids; speed only), next to the reference of the same batches through `preprocess` alone (decode +
resize, no model), so the model's share shows. (3) `wudao image-text` on the OpenMoji images (a JSONL of local
paths) with and without the `alignment` stage (small model): CPU seconds of the whole process tree, and the
stage's share. Report: stdout and bench/results/alignment.md.
"""
from __future__ import annotations

import io
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cleaners.image.alignment import AlignmentConfig, DualEncoder, preprocess  # noqa: E402
from cleaners.image.alignment_train import TrainSettings, read_pairs, train_alignment  # noqa: E402
from cleaners.image.scoring import AlignmentScore  # noqa: E402

DATA = ROOT / "bench" / "data" / "alignment" / "openmoji" / "pairs.jsonl"
WORK = ROOT / "bench" / "work" / "alignment"
RESULTS = ROOT / "bench" / "results" / "alignment.md"
VIT_B_32 = AlignmentConfig(embed_dim=512, image_size=224, patch_size=32, vision_width=768, vision_layers=12,
                           vision_heads=12, vocab_size=49408, context_length=77, text_width=512, text_layers=12,
                           text_heads=8, quick_gelu=True)
BATCH = 64


def jpeg_records(n: int) -> list[dict]:
    """`n` records as the pipeline hands them to the stage: a 256 px RGB JPEG and a caption."""
    pairs = read_pairs(DATA)[0]
    records = []
    for pair in (pairs * (n // len(pairs) + 1))[:n]:
        with Image.open(pair.image) as image:
            rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        white.alpha_composite(rgba)
        buffer = io.BytesIO()
        white.convert("RGB").resize((256, 256), Image.BICUBIC).save(buffer, "JPEG", quality=95)
        records.append({"jpg": buffer.getvalue(), "caption": pair.captions[0]})
    return records


def pairs_per_second(step: AlignmentScore | None, records: list[dict], size: int) -> float:
    """Best of 3 passes over `records` in batches of BATCH; without a step, decode + preprocess only."""
    best = float("inf")
    for _ in range(3):
        batches = [[dict(r) for r in records[i:i + BATCH]] for i in range(0, len(records), BATCH)]
        start = time.process_time()
        for batch in batches:
            if step is None:
                for record in batch:
                    with Image.open(io.BytesIO(record["jpg"])) as image:
                        preprocess(image, size)
            else:
                step.score_batch(batch)
        best = min(best, time.process_time() - start)
    return len(records) / best


def random_model_folder(config: AlignmentConfig, tokenizer_from: Path, folder: Path) -> Path:
    """A model folder with random weights of `config` and the small model's tokenizer (ids wrap into the vocab)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("tokenizer.model", "vocab.json"):
        shutil.copy(tokenizer_from / name, folder / name)
    torch.manual_seed(0)
    DualEncoder(config).save(str(folder / "model.pt"))
    return folder


def run_cpu_seconds(cmd: list[str]) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def pipeline_share(model: Path) -> tuple[float, float, dict]:
    """CPU s of `wudao image-text` on the OpenMoji images without and with the alignment stage (best of 2)."""
    inputs = WORK / "input.jsonl"
    pairs = read_pairs(DATA)[0]
    inputs.write_text("".join(json.dumps({"images": [os.path.relpath(p.image, WORK)], "text": p.captions[0]})
                              + "\n" for p in pairs), encoding="utf-8")
    times, stats = {}, {}
    for name, alignment in (("without", {}), ("with", {"model_path": str(model)})):
        recipe = WORK / f"{name}.yaml"
        recipe.write_text(json.dumps({"read": {"image_roots": [str(DATA.parent)]}, "image": {"min_side": 64},
                                      "caption": {"min_words": 1, "min_chars": 1}, "alignment": alignment}),
                          encoding="utf-8")
        cmd = [sys.executable, "-m", "pipelines.cli", "image-text", "--input", str(inputs), "--output",
               str(WORK / f"run-{name}"), "--config", str(recipe), "--no-progress"]
        times[name] = min(run_cpu_seconds(cmd) for _ in range(2))
        stats[name] = json.loads((WORK / f"run-{name}" / "stats.json").read_text("utf-8"))["totals"]
    return times["without"], times["with"], stats


def main() -> int:
    WORK.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    model_dir = WORK / "small"
    metrics = train_alignment(str(DATA), str(model_dir), AlignmentConfig(), TrainSettings(), log=print)
    held = metrics["held_out"]

    torch.set_num_threads(1)
    records = jpeg_records(512)
    small = AlignmentScore(model_path=str(model_dir), batch_size=BATCH)
    large = AlignmentScore(model_path=str(random_model_folder(VIT_B_32, model_dir, WORK / "vit_b_32")),
                           batch_size=BATCH)
    small_rate = pairs_per_second(small, records, AlignmentConfig().image_size)
    small_ref = pairs_per_second(None, records, AlignmentConfig().image_size)
    large_rate = pairs_per_second(large, records[:128], VIT_B_32.image_size)
    large_ref = pairs_per_second(None, records[:128], VIT_B_32.image_size)
    without, with_stage, totals = pipeline_share(model_dir)

    rows = [f"| image -> text | {held['image_to_text_R@1']:.3f} | {held['image_to_text_R@5']:.3f} |",
            f"| text -> image | {held['text_to_image_R@1']:.3f} | {held['text_to_image_R@5']:.3f} |",
            f"| chance | {held['chance_R@1']:.3f} | {held['chance_R@5']:.3f} |"]
    report = "\n".join([
        "# Image-text alignment: held-out retrieval, scoring speed, share of the pipeline",
        "",
        "Command: `.venv/bin/python bench/alignment.py` (from the repository root). "
        f"Machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()}, torch {torch.__version__}.",
        "",
        f"## Small model on OpenMoji ({metrics['train_images']} training images, {held['images']} held out, "
        f"{held['captions']} held-out captions in English and Chinese)",
        "",
        f"{metrics['parameters']:,} parameters, {metrics['steps']} steps ({metrics['settings']['epochs']} epochs, "
        f"batch {metrics['settings']['batch_size']}), final training loss {metrics['final_loss']:.3f}. Recall: "
        "image -> text, any of the image's two captions in the top k of all held-out captions; text -> image, the "
        "caption's image in the top k of all held-out images; chance = k / held-out images.",
        "",
        "| direction | R@1 | R@5 |",
        "|---|---:|---:|",
        *rows,
        "",
        "## Scoring speed, one core (torch threads = 1), batches of 64 256-px JPEGs",
        "",
        "| model | pairs/s per core | reference: decode + preprocess only, pairs/s | model's share of the time |",
        "|---|---:|---:|---:|",
        f"| small ({metrics['parameters'] / 1e6:.1f} M parameters, 64 px) | {small_rate:.0f} | {small_ref:.0f} | "
        f"{1 - small_rate / small_ref:.0%} |",
        f"| ViT-B/32-sized, random weights ({sum(p.numel() for p in large._model.parameters()) / 1e6:.0f} M "
        f"parameters, 224 px) | {large_rate:.1f} | {large_ref:.0f} | {1 - large_rate / large_ref:.0%} |",
        "",
        "## Share of `wudao image-text` (OpenMoji images from local paths, in-process runner, best of 2)",
        "",
        "| run | CPU s (process tree) | kept |",
        "|---|---:|---:|",
        f"| without alignment | {without:.1f} | {totals['without']['kept']} |",
        f"| with alignment (small model) | {with_stage:.1f} | {totals['with']['kept']} |",
        "",
        f"The alignment stage's share: {(with_stage - without) / with_stage:.0%} of the run's CPU time.",
        "",
        f"Whole benchmark: {time.perf_counter() - started:.0f} s.",
        "",
    ])
    print(report)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(report, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
