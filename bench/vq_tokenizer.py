#!/usr/bin/env python
"""VQ image tokenizer: CPU encode speed and the demo tokenizer's reconstruction quality.

    .venv/bin/python bench/vq_tokenizer.py                 # about 2-3 minutes on 2 cores
    .venv/bin/python bench/vq_tokenizer.py --images 'DIR/image_text/images/*.tar'

(1) Encode images/s with 2 threads, batch 8, untrained weights, for the default config (256 px, 8192 codes, 8x)
and `pipelines.image_demo.DEMO_VQ`: `VQVAE.encode` (encoder + codebook lookup) next to the reference, a plain
`torch` forward of the same encoder without the quantizer; the difference is the quantizer's share.
(2) The demo VQ trained exactly as `wudao demo` trains it (same config, steps and arguments as
`run_image_demo`) on the demo's kept images; PSNR and codebook usage on its 8 held-out images, next to two
baselines on the same images: each image's flat mean colour, and bicubic downsampling to the code grid
(8x8 cells, 3 bytes each) and back up. Without `--images`, the image-text part of the demo is run first into
bench/work/vq_tokenizer. The report goes to stdout and bench/results/vq_tokenizer.md.
"""
from __future__ import annotations

import argparse
import glob
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipelines.image_demo import DEMO_VQ, localized_url_list, sample_dir, serve_folder  # noqa: E402
from tokenizer.vq import VQConfig, VQVAE  # noqa: E402
from tokenizer.vq_train import iter_images, psnr, train_vq  # noqa: E402

WORK = ROOT / "bench" / "work" / "vq_tokenizer"
RESULTS = ROOT / "bench" / "results" / "vq_tokenizer.md"
#: the arguments `run_image_demo` passes to train_vq (keep in step with pipelines/image_demo.py)
DEMO_TRAIN = dict(steps=300, batch_size=8, lr=2e-3, seed=0, eval_images=8, augment=True, lr_schedule="cosine",
                  warmup_steps=20)


def encode_speed(config: VQConfig, batches: int, batch_size: int = 8) -> dict:
    """Images/s of VQVAE.encode and of the bare encoder on the same random batch (one warm-up call each)."""
    torch.manual_seed(0)
    model = VQVAE(config).eval()
    x = torch.rand(batch_size, 3, config.resolution, config.resolution) * 2 - 1
    out = {}
    with torch.no_grad():
        for name, fn in (("encoder only (torch forward)", model.encoder), ("VQVAE.encode", model.encode)):
            fn(x)
            start = time.perf_counter()
            for _ in range(batches):
                fn(x)
            out[name] = batches * batch_size / (time.perf_counter() - start)
    return out


def demo_images() -> str:
    """Run the image-text part of `wudao demo` into bench/work/vq_tokenizer; return the tar glob."""
    from pipelines.run import run_image_text
    out = WORK / "image_text"
    tars = str(out / "images" / "*.tar")
    if glob.glob(tars):
        return tars
    sample = sample_dir()
    with serve_folder(os.path.join(sample, "served")) as base_url:
        urls = localized_url_list(sample, base_url, str(WORK / "inputs" / "urls.tsv"))
        inputs = [os.path.join(sample, "shapes-000.tar"), os.path.join(sample, "photos.parquet"), urls]
        run_image_text(inputs, str(out), None, ["--runner=FnApiRunner"])
    return tars


def to_uint8(x: torch.Tensor) -> np.ndarray:
    return ((x.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()


def from_uint8(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a.copy()).permute(2, 0, 1).float().div(127.5).sub(1.0)


def baselines(images: list[torch.Tensor], grid: int) -> dict:
    x = torch.stack(images)
    flat = x.mean(dim=(2, 3), keepdim=True).expand_as(x)
    size = x.shape[-1]
    bicubic = []
    for image in images:
        small = Image.fromarray(to_uint8(image)).resize((grid, grid), Image.Resampling.BICUBIC)  # 3 bytes per cell
        bicubic.append(from_uint8(np.asarray(small.resize((size, size), Image.Resampling.BICUBIC))))
    return {"flat mean colour": psnr(flat, x), f"bicubic {grid}x{grid} (24 bits/cell)": psnr(torch.stack(bicubic), x)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", help="glob of the demo's image tars (default: run the demo pipeline)")
    parser.add_argument("--batches", type=int, default=3, help="timed encode batches per config")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(2)

    demo = VQConfig(**DEMO_VQ)
    speed = {"default 256 px / 8192 codes": encode_speed(VQConfig(), args.batches),
             "demo 64 px / 512 codes": encode_speed(demo, args.batches * 10)}

    tars = args.images or demo_images()
    metrics = train_vq([tars], str(WORK / "vq"), demo, **DEMO_TRAIN)
    heldout = [t for _, t in list(iter_images([tars], demo.resolution))[:DEMO_TRAIN["eval_images"]]]
    base = baselines(heldout, demo.grid)

    bits = int(np.ceil(np.log2(demo.codebook_size)))
    lines = ["# VQ image tokenizer: encode speed and demo reconstruction", "",
             "```", "python bench/vq_tokenizer.py" + (f" --images '{args.images}'" if args.images else ""), "```", "",
             f"Machine: {os.cpu_count()} cores, {platform.system()}, Python {platform.python_version()}, "
             f"torch {torch.__version__}, torch.set_num_threads(2), batch 8, untrained weights.", "",
             "| config | encoder only (torch forward), images/s | `VQVAE.encode`, images/s | quantizer share |",
             "|---|---:|---:|---:|"]
    for name, s in speed.items():
        enc, full = s["encoder only (torch forward)"], s["VQVAE.encode"]
        lines.append(f"| {name} | {enc:.1f} | {full:.1f} | {max(0.0, 1 - full / enc):.0%} |")
    lines += ["", "GPU: not measured here (no GPU lent).", "",
              f"Demo VQ trained as `wudao demo` does: config {DEMO_VQ}, train_vq {DEMO_TRAIN}; "
              f"{metrics['steps']} steps in {metrics['seconds']:.1f} s; {metrics['heldout_images']} held-out images "
              f"({demo.resolution} px).", "",
              "| reconstruction of the held-out images | bits per grid cell | PSNR dB |", "|---|---:|---:|"]
    for name, value in base.items():
        lines.append(f"| {name} | {'0' if name.startswith('flat') else '24'} | {value:.2f} |")
    lines.append(f"| demo VQ decode(encode(x)) | {bits} | **{metrics['psnr_db']:.2f}** |")
    lines += ["", f"Codebook: {metrics['codebook_usage']:.1%} of {demo.codebook_size} codes used on the held-out "
              f"images (at most {min(1.0, len(heldout) * demo.grid ** 2 / demo.codebook_size):.0%} possible), "
              f"perplexity {metrics['perplexity']:.1f}; codes alive by usage average {metrics['codes_alive_ema']:.0%}; "
              f"train recon MSE first {metrics['recon_mse_first']:.4f}, last {metrics['recon_mse_last']:.4f}.", ""]
    report = "\n".join(lines)
    print(report)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(report, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
