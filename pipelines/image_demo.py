"""The image-text part of `wudao demo` (pipelines/demo.py runs it after the text and dialogue parts): a tiny
alignment model trained on the sample's drawn shapes and their bilingual captions, the embedded sample
(pipelines/data/image_sample) through the pipeline with that model's `alignment` stage, its url list downloaded
from a real HTTP server on 127.0.0.1 that serves the sample's `served/` folder, then a small VQ tokenizer trained on
the kept images and CogView shards written with it."""
from __future__ import annotations

import contextlib
import csv
import json
import os
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any, Iterator

SAMPLE = "image_sample"
#: a CPU-sized tokenizer for the demo: 64 px images, 8x8 grids of 512 codes (the default is 256 px, 32x32, 8192);
#: one wide level stack without res blocks for speed, 16-dim l2-normalised codes (ViT-VQGAN) for codebook usage
DEMO_VQ = {"resolution": 64, "channels": 48, "channel_mult": (1, 1, 1, 1), "downsample": 8, "num_res_blocks": 0,
           "codebook_size": 512, "code_dim": 16, "l2_normalize": True}


#: a CPU-sized alignment model for the demo's 24 drawings (the default is 64 px, width 128, 2 blocks)
DEMO_ALIGNMENT = {"image_size": 32, "patch_size": 8, "embed_dim": 64, "vision_width": 64, "vision_layers": 1,
                  "vision_heads": 2, "text_width": 64, "text_layers": 1, "text_heads": 2, "context_length": 32}
DEMO_ALIGNMENT_TRAIN = {"epochs": 40, "batch_size": 8, "lr": 2e-3, "warmup_steps": 10, "held_out": 0.25,
                        "vocab_size": 400}


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@contextlib.contextmanager
def serve_folder(folder: str) -> Iterator[str]:
    """Serve `folder` over HTTP on 127.0.0.1 (a free port) for the duration; yields the base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=folder))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def sample_dir() -> str:
    return str(resources.files("pipelines").joinpath(f"data/{SAMPLE}"))


def localized_url_list(sample: str, base_url: str, output: str) -> str:
    """The sample's urls.tsv with its relative urls made absolute under `base_url`; returns the new file."""
    os.makedirs(os.path.dirname(output), exist_ok=True)
    with open(os.path.join(sample, "urls.tsv"), encoding="utf-8", newline="") as src, \
            open(output, "w", encoding="utf-8", newline="") as dst:
        reader, writer = csv.DictReader(src, delimiter="\t"), None
        for row in reader:
            if writer is None:
                writer = csv.DictWriter(dst, fieldnames=reader.fieldnames, delimiter="\t", lineterminator="\n")
                writer.writeheader()
            row["url"] = f"{base_url}/{row['url'].lstrip('/')}"
            writer.writerow(row)
    return output


def run_image_demo(output: str, tokenizer_dir: str, beam_args: list[str], vq_steps: int = 300) -> dict[str, Any]:
    """Pipeline -> DIR/image_text, VQ -> DIR/vq, CogView shards -> DIR/cogview_shards; returns what it did."""
    from pipelines.run import run_image_text
    from pipelines.shards_job import write_shards
    from tokenizer.vq import VQConfig
    from tokenizer.vq_train import train_vq

    sample = sample_dir()
    image_out = os.path.join(output, "image_text")
    alignment = train_demo_alignment(os.path.join(sample, "shapes-000.tar"), os.path.join(output, "alignment"))
    recipe = os.path.join(output, "image_text_inputs", "recipe.yaml")
    os.makedirs(os.path.dirname(recipe), exist_ok=True)
    with open(recipe, "w", encoding="utf-8") as f:
        json.dump({"alignment": {"model_path": alignment["model"]}}, f)    # JSON is YAML
    with serve_folder(os.path.join(sample, "served")) as base_url:
        urls = localized_url_list(sample, base_url, os.path.join(output, "image_text_inputs", "urls.tsv"))
        inputs = [os.path.join(sample, "shapes-000.tar"), os.path.join(sample, "photos.parquet"), urls]
        stats = run_image_text(inputs, image_out, recipe, beam_args)
    tars = os.path.join(image_out, "images", "*.tar")
    vq_dir = os.path.join(output, "vq")
    metrics = train_vq([tars], vq_dir, VQConfig(**DEMO_VQ), steps=vq_steps, batch_size=8, lr=2e-3, seed=0,
                       eval_images=8, augment=True, lr_schedule="cosine", warmup_steps=20)
    manifest = write_shards([tars], tokenizer_dir, os.path.join(output, "cogview_shards"), seq_len=0,
                            shard_size_bytes=1_000_000, val_fraction=0.1, beam_args=beam_args, fmt="cogview",
                            vq=os.path.join(vq_dir, "vq.pt"), max_text_tokens=64)
    return {"stats": stats, "image_out": image_out, "vq_dir": vq_dir, "vq": metrics, "manifest": manifest,
            "alignment": alignment}


def train_demo_alignment(shapes_tar: str, output: str) -> dict[str, Any]:
    """The demo's alignment model: the sample tar's drawings and captions (read by the pipeline's own reader)
    written out as a pairs file, then `train_alignment` with the demo sizes; returns its metrics and folder."""
    from cleaners.image.alignment import AlignmentConfig
    from cleaners.image.alignment_train import TrainSettings, train_alignment
    from cleaners.image.record import ImageText
    from pipelines.readers.image_text import iter_image_text_file

    pairs_dir = os.path.join(output, "pairs")
    os.makedirs(os.path.join(pairs_dir, "images"), exist_ok=True)
    lines = []
    with open(shapes_tar, "rb") as f:
        for i, item in enumerate(iter_image_text_file(f, shapes_tar)):
            if isinstance(item, ImageText) and item.image and item.caption:
                name = f"images/{i:04d}.img"
                with open(os.path.join(pairs_dir, name), "wb") as out:
                    out.write(item.image)
                lines.append(json.dumps({"image": name, "captions": [item.caption]}, ensure_ascii=False))
    with open(os.path.join(pairs_dir, "pairs.jsonl"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    model = os.path.join(output, "model")
    metrics = train_alignment(os.path.join(pairs_dir, "pairs.jsonl"), model, AlignmentConfig(**DEMO_ALIGNMENT),
                              TrainSettings(**DEMO_ALIGNMENT_TRAIN), log=lambda line: None)
    return {**metrics, "model": model}
