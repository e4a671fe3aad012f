"""The `wudao` command line.

    wudao text --input GLOB [--input GLOB ...] --output DIR [--config recipe.yaml] [Beam options]
    wudao extract FILE...
    wudao dedup --input GLOB --output DIR [--threshold 0.8] [--config recipe.yaml] [Beam options]
    wudao dialogue --input GLOB --output DIR [--config dialogue_recipe.yaml] [Beam options]
    wudao image-text --input GLOB --output DIR [--config image_text_recipe.yaml] [Beam options]
    wudao demo [--output DIR] [Beam options]
    wudao report RUN_DIR [--shards DIR]
    wudao quality train --positive GLOB --negative GLOB --output FILE
    wudao domain train --data labeled.jsonl --output model.bin
    wudao domain eval --data labeled.jsonl [--model model.bin] [--min-score 0.8]

Any argument the command does not know is handed to Beam's PipelineOptions, so every runner flag works
(`--runner=DataflowRunner --project ... --region ... --temp_location gs://... --setup_file ./setup.py`).

This module only parses arguments and hands them to one `_cmd_*` handler per command, which prints the result.
What a command does lives elsewhere: the pipeline runs in pipelines/run.py, the demo in pipelines/demo.py, the
shard and tokenizer jobs in pipelines/shards_job.py and pipelines/tokenizer_job.py.
"""
from __future__ import annotations

import argparse
import glob
import json
import logging
import os
import sys

from pipelines.run import format_summary, run_dedup, run_dialogue, run_image_text, run_text


def _cmd_text(args: argparse.Namespace, beam_args: list[str]) -> int:
    stats = run_text(args.input, args.output, args.config, beam_args)
    print(format_summary(stats, args.output))
    return 0


def _cmd_dedup(args: argparse.Namespace, beam_args: list[str]) -> int:
    stats = run_dedup(args.input, args.output, args.config, args.threshold, beam_args)
    print(format_summary(stats, args.output))
    return 0


def _cmd_demo(args: argparse.Namespace, beam_args: list[str]) -> int:
    from pipelines.demo import run_demo

    run_demo(args.output, args.config, beam_args)
    return 0


def _cmd_dialogue(args: argparse.Namespace, beam_args: list[str]) -> int:
    stats = run_dialogue(args.input, args.output, args.config, beam_args)
    print(format_summary(stats, args.output))
    return 0


def _cmd_report(args: argparse.Namespace, beam_args: list[str]) -> int:
    from pipelines.report import ReportError, write_report

    if beam_args:
        print(f"wudao report: unknown arguments {beam_args}", file=sys.stderr)
        return 2
    try:
        print(write_report(args.run_dir, args.shards))
    except ReportError as exc:
        print(f"wudao report: {exc}", file=sys.stderr)
        return 2
    return 0


def _cmd_image_text(args: argparse.Namespace, beam_args: list[str]) -> int:
    stats = run_image_text(args.input, args.output, args.config, beam_args)
    print(format_summary(stats, args.output))
    return 0


def _cmd_extract(args: argparse.Namespace, beam_args: list[str]) -> int:
    from cleaners.extract import extract_files

    if beam_args:
        print(f"wudao extract: unknown arguments {beam_args}", file=sys.stderr)
        return 2
    paths: list[str] = []
    for pattern in args.files:
        matched = sorted(glob.glob(pattern))
        paths.extend(matched or [pattern])
    for row in extract_files(paths):
        print(json.dumps(row, ensure_ascii=False))
    return 0


def _cmd_quality_train(args: argparse.Namespace, beam_args: list[str]) -> int:
    from cleaners.quality import train_quality

    def expand(patterns: list[str]) -> list[str]:
        paths = sorted({p for pattern in patterns for p in glob.glob(pattern)})
        if not paths:
            raise SystemExit(f"no files match {patterns}")
        return paths

    metrics = train_quality(expand(args.positive), expand(args.negative), args.output)
    print(json.dumps(metrics, indent=2))
    return 0


def _cmd_alignment_train(args: argparse.Namespace, beam_args: list[str]) -> int:
    from cleaners.image.alignment import AlignmentConfig
    from cleaners.image.alignment_train import TrainSettings, train_alignment

    config = AlignmentConfig(image_size=args.image_size, patch_size=args.patch_size, embed_dim=args.width,
                             vision_width=args.width, text_width=args.width, vision_layers=args.layers,
                             text_layers=args.layers, vision_heads=args.heads, text_heads=args.heads)
    settings = TrainSettings(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                             held_out=args.held_out, vocab_size=args.vocab_size)
    try:
        metrics = train_alignment(args.pairs, args.output, config, settings,
                                  log=lambda line: print(line, file=sys.stderr))
    except (OSError, ValueError) as exc:
        raise SystemExit(f"wudao alignment train: {exc}") from exc
    print(json.dumps(metrics, indent=2, ensure_ascii=False))
    return 0


def _cmd_alignment_eval(args: argparse.Namespace, beam_args: list[str]) -> int:
    import os

    from cleaners.image.alignment import DualEncoder
    from cleaners.image.alignment_train import evaluate, read_pairs, split_pairs
    from tokenizer.text import TextTokenizer

    try:
        model = DualEncoder.load(os.path.join(args.model, "model.pt"))
        tokenizer = TextTokenizer.load(args.model)
        pairs, dropped = read_pairs(args.pairs)
        if args.held_out is not None:
            pairs = split_pairs(pairs, args.held_out)[1]
        if not pairs:
            raise ValueError(f"{args.pairs}: no pairs to evaluate")
        metrics = {**evaluate(model, tokenizer, pairs), "dropped": dropped}
    except (OSError, ValueError) as exc:
        raise SystemExit(f"wudao alignment eval: {exc}") from exc
    print(json.dumps(metrics, ensure_ascii=False))
    return 0


def _labeled(path: str) -> list[tuple[str, str]]:
    from cleaners.topic import read_labeled

    pairs, skipped = read_labeled(path)
    if skipped:
        print(f"{path}: skipped {skipped} lines without a text and a label", file=sys.stderr)
    if not pairs:
        raise SystemExit(f"{path}: no labeled lines ({{\"text\": ..., \"label\": ...}})")
    return pairs


def _cmd_domain_train(args: argparse.Namespace, beam_args: list[str]) -> int:
    from cleaners.topic import train_topic

    try:
        counts = train_topic(_labeled(args.data), args.output, seed=args.seed, quantize=args.quantize)
    except (OSError, ValueError) as exc:
        raise SystemExit(f"wudao domain train: {exc}") from exc
    print(json.dumps({"output": args.output, "trained": counts}, ensure_ascii=False))
    return 0


def _cmd_domain_eval(args: argparse.Namespace, beam_args: list[str]) -> int:
    from cleaners.topic import TopicModel, evaluate

    try:
        result = evaluate(TopicModel(args.model), _labeled(args.data), min_score=args.min_score)
    except (OSError, ValueError) as exc:
        raise SystemExit(f"wudao domain eval: {exc}") from exc
    print(json.dumps(result, ensure_ascii=False))
    return 0


def _size_bytes(text: str) -> int:
    """'256MB', '1.5GB', '4096' -> bytes."""
    units = {"KB": 1000, "MB": 1000**2, "GB": 1000**3, "KIB": 1024, "MIB": 1024**2, "GIB": 1024**3, "B": 1}
    upper = text.strip().upper()
    for unit in sorted(units, key=len, reverse=True):
        if upper.endswith(unit):
            return int(float(upper[: -len(unit)]) * units[unit])
    return int(upper)


def _cmd_tokenizer_train(args: argparse.Namespace, beam_args: list[str]) -> int:
    from pipelines.tokenizer_job import train_tokenizer

    result = train_tokenizer(args.corpus, args.output, vocab_size=args.vocab_size, zh_share=args.zh_share,
                             model_type=args.model_type, beam_args=beam_args)
    print(json.dumps(result, indent=2, ensure_ascii=False, default=str))
    return 0


def _cmd_train_vq(args: argparse.Namespace, beam_args: list[str]) -> int:
    from tokenizer.vq import VQConfig
    from tokenizer.vq_train import train_vq

    down = args.downsample
    mult = {4: (1, 2, 4), 8: (1, 2, 2, 4), 16: (1, 1, 2, 2, 4)}.get(down)
    if mult is None:
        raise SystemExit("--downsample must be 4, 8 or 16")
    config = VQConfig(resolution=args.resolution, channels=args.channels, channel_mult=mult, downsample=down,
                      codebook_size=args.codebook_size, code_dim=args.code_dim, num_res_blocks=args.res_blocks)
    metrics = train_vq(args.images, args.output, config, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                       seed=args.seed, device=args.device, eval_images=args.eval_images)
    summary = {k: metrics[k] for k in ("steps", "seconds", "psnr_db", "codebook_usage", "perplexity",
                                       "recon_mse_first", "recon_mse_last", "skipped") if k in metrics}
    print(json.dumps({"output": args.output, **summary}, indent=2))
    return 0


def _cmd_encode_images(args: argparse.Namespace, beam_args: list[str]) -> int:
    """codes JSONL: {"image": name, "grid": [h, w], "codes": [row-major codes]} per readable image."""
    from tokenizer.vq import VQVAE
    from tokenizer.vq_train import encode_images

    model = VQVAE.load(args.vq)
    skips: list = []
    n = 0
    with open(args.output + ".tmp", "w", encoding="utf-8") as fh:
        for name, codes in encode_images(model, args.images, batch_size=args.batch_size, skips=skips):
            fh.write(json.dumps({"image": name, "grid": list(codes.shape), "codes": codes.reshape(-1).tolist()}) + "\n")
            n += 1
    os.replace(args.output + ".tmp", args.output)
    print(json.dumps({"encoded": n, "skipped": [list(s) for s in skips], "output": args.output}, indent=2))
    return 0


def _cmd_decode_images(args: argparse.Namespace, beam_args: list[str]) -> int:
    """One PNG per line of a codes JSONL (from encode-images), named by its line number."""
    import torch
    from PIL import Image

    from tokenizer.vq import VQVAE

    model = VQVAE.load(args.vq).eval()
    os.makedirs(args.output, exist_ok=True)
    n = 0
    with open(args.codes, encoding="utf-8") as fh:
        for i, line in enumerate(fh):
            row = json.loads(line)
            h, w = row["grid"]
            image = model.decode(torch.tensor(row["codes"], dtype=torch.long).reshape(1, h, w))[0]
            pixels = ((image + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
            Image.fromarray(pixels).save(os.path.join(args.output, f"{i:06d}.png"))
            n += 1
    print(json.dumps({"decoded": n, "output": args.output}))
    return 0


def _cmd_train(args: argparse.Namespace, beam_args: list[str]) -> int:
    if beam_args:
        print(f"wudao train: unknown arguments {beam_args}", file=sys.stderr)
        return 2
    from shards.manifest import ManifestError
    from tokenizer.vq import CheckpointError
    from train.loop import train

    try:
        result = train(args.model, args.shards, args.config, steps=args.steps, out=args.out, resume=args.resume,
                       device=args.device, seed=args.seed, tokenizer_dir=args.tokenizer,
                       checkpoint_every=args.checkpoint_every,
                       **({"expert_parallel": True} if args.expert_parallel else {}))
    except (CheckpointError, ManifestError) as exc:  # refused input: one clear line, no traceback
        print(f"wudao train: {exc}", file=sys.stderr)
        return 1
    if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 reports
        print(json.dumps({k: v for k, v in result.items() if k not in ("losses", "config")}, indent=2))
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # The run is done (checkpoint written, process group destroyed): end this rank here. Left to the
        # interpreter's shutdown, gloo's threads sometimes abort it ("terminate called without an active
        # exception", seen about once in 15 two-process runs on a loaded machine) and torchrun reports a failure.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0


def _cmd_sample(args: argparse.Namespace, beam_args: list[str]) -> int:
    from tokenizer.vq import CheckpointError
    from train.sample import sample_image

    try:
        result = sample_image(args.checkpoint, args.tokenizer, args.vq, args.caption, args.output,
                              temperature=args.temperature, top_k=args.top_k or None, seed=args.seed,
                              device=args.device, top_p=args.top_p, candidates=args.candidates)
    except CheckpointError as exc:  # refused or unreadable checkpoint / VQ weights: one clear line
        print(f"wudao sample: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({k: v for k, v in result.items() if k != "codes"}, ensure_ascii=False))
    return 0


def _cmd_generate(args: argparse.Namespace, beam_args: list[str]) -> int:
    from tokenizer.vq import CheckpointError
    from train.decoding import Decoding
    from train.glm_generate import generate, load_filler
    from train.inverse_prompting import inverse_prompting

    try:
        decoding = Decoding(args.strategy, temperature=args.temperature, top_k=args.top_k or None,
                            top_p=args.top_p, num_beams=args.num_beams, length_penalty=args.length_penalty,
                            max_new_tokens=args.max_new_tokens)
        filler, tokenizer = load_filler(args.checkpoint, args.tokenizer, args.device)
        if args.inverse is None:
            result = generate(filler, tokenizer, args.text, decoding, seed=args.seed)
        else:
            if args.prompt is None:
                raise ValueError("--inverse needs --prompt (the text that {prompt} in --text stands for)")
            ranked = inverse_prompting(filler, tokenizer, args.prompt, args.text, args.inverse, decoding,
                                       args.inverse_weight)
            result = {"text": tokenizer.decode(ranked[0].tokens), "candidates": [
                {"text": tokenizer.decode(r.tokens), "forward": round(r.forward, 4), "inverse": round(r.inverse, 4),
                 "score": round(r.score, 4)} for r in ranked]}
    except (CheckpointError, ValueError) as exc:  # refused checkpoint, wrong kind, bad options: one clear line
        print(f"wudao generate: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, ensure_ascii=False))
    return 0


def _cmd_ptune(args: argparse.Namespace, beam_args: list[str]) -> int:
    from tokenizer.vq import CheckpointError
    from train.ptuning import run_ptune

    try:
        result = run_ptune(args.checkpoint, args.tokenizer, args.verbalizer, args.template, train=args.train,
                           eval_path=args.eval, prompt_dir=args.prompt, out=args.out, full=args.full,
                           prompt_length=args.prompt_length, steps=args.steps, batch_size=args.batch_size,
                           lr=args.lr, seed=args.seed, device=args.device,
                           log=lambda line: print(line, file=sys.stderr))
    except (CheckpointError, ValueError, OSError) as exc:
        print(f"wudao ptune: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, ensure_ascii=False))
    return 0


def _cmd_shards(args: argparse.Namespace, beam_args: list[str]) -> int:
    if args.action == "verify":
        from shards.manifest import main_verify

        if not args.dir:
            raise SystemExit("usage: wudao shards verify DIR")
        return main_verify(args.dir)
    if args.action or not (args.corpus and args.tokenizer and args.output):
        raise SystemExit("usage: wudao shards --corpus GLOB --tokenizer DIR --output DIR [...] "
                         "| wudao shards verify DIR")
    from pipelines.shards_job import write_shards

    import shlex

    manifest = write_shards(args.corpus, args.tokenizer, args.output, seq_len=args.seq_len,
                            shard_size_bytes=_size_bytes(args.shard_size), val_fraction=args.val_fraction,
                            beam_args=beam_args, command=shlex.join(["wudao", *sys.argv[1:]]), fmt=args.format,
                            vq=args.vq, max_text_tokens=args.max_text_tokens)
    shards = manifest["shards"] if isinstance(manifest, dict) else []
    print(f"{len(shards)} shards, {sum(s['samples'] for s in shards)} samples, "
          f"{sum(s['tokens'] for s in shards)} tokens -> {args.output}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wudao", description="Build WuDaoCorpora-style corpora with Apache Beam.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)

    text = sub.add_parser("text", help="run the web-text pipeline (any extra flag goes to Beam)")
    text.add_argument("--input", action="append", required=True, help="file glob (local, gs://, s3://); repeatable")
    text.add_argument("--output", required=True, help="output folder: corpus/, rejects/, stats.json")
    text.add_argument("--config", help="recipe YAML merged over the default recipe")
    text.set_defaults(func=_cmd_text)

    dedup = sub.add_parser("dedup", help="exact, URL, line and MinHash dedup of an existing JSONL/Parquet corpus")
    dedup.add_argument("--input", action="append", required=True, help="JSONL(.gz) or Parquet glob; repeatable")
    dedup.add_argument("--output", required=True, help="output folder: corpus/, rejects/, stats.json")
    dedup.add_argument("--threshold", type=float, help="MinHash Jaccard threshold (default from the recipe: 0.8)")
    dedup.add_argument("--config", help="recipe YAML merged over the default recipe (its dedup: section)")
    dedup.set_defaults(func=_cmd_dedup)

    dialogue = sub.add_parser("dialogue", help="clean multi-turn dialogues and thread dumps (LCCC-style rules)")
    dialogue.add_argument("--input", action="append", required=True, help="file glob; repeatable")
    dialogue.add_argument("--output", required=True, help="output folder: corpus/, rejects/, stats.json")
    dialogue.add_argument("--config", help="dialogue recipe YAML merged over cleaners/data/dialogue_recipe.yaml")
    dialogue.set_defaults(func=_cmd_dialogue)

    image_text = sub.add_parser("image-text", help="download, check, dedup and shard image-caption pairs")
    image_text.add_argument("--input", action="append", required=True,
                            help="url lists (CSV/TSV/JSONL/Parquet), WebDataset tars or Parquet with image bytes; "
                                 "repeatable")
    image_text.add_argument("--output", required=True, help="output folder: images/*.tar, rejects/, stats.json")
    image_text.add_argument("--config", help="image-text recipe YAML merged over cleaners/data/image_text_recipe.yaml")
    image_text.set_defaults(func=_cmd_image_text)

    demo = sub.add_parser("demo", help="run every pipeline on the embedded samples (web text, dialogue, image-text)")
    demo.add_argument("--output", default="wudao-demo", help="output folder (default ./wudao-demo)")
    demo.add_argument("--config", help="web-text recipe YAML merged over the default recipe")
    demo.set_defaults(func=_cmd_demo)

    report = sub.add_parser("report", help="RUN_DIR/report.html: plots and numbers of a run (self-contained)")
    report.add_argument("run_dir", help="output folder of `wudao text`, `dedup`, `dialogue` or `image-text`")
    report.add_argument("--shards", help="shard folder for tokens per split (default RUN_DIR/shards if present)")
    report.set_defaults(func=_cmd_report)

    extract = sub.add_parser("extract", help="print {file, title, text} JSON lines for .html / .html.gz files")
    extract.add_argument("files", nargs="+")
    extract.set_defaults(func=_cmd_extract)

    tok = sub.add_parser("tokenizer", help="bilingual SentencePiece tokenizer and the VQ image tokenizer")
    tok_sub = tok.add_subparsers(dest="tokenizer_command", required=True)
    ttrain = tok_sub.add_parser("train", help="train on a balanced zh/en sample of a corpus (Beam sampling step)")
    ttrain.add_argument("--corpus", action="append", required=True, help="corpus JSONL(.gz) glob; repeatable")
    ttrain.add_argument("--output", required=True, help="folder for the model, vocab.json")
    ttrain.add_argument("--vocab-size", type=int, default=50000)
    ttrain.add_argument("--zh-share", type=float, default=0.5)
    ttrain.add_argument("--model-type", choices=["unigram", "bpe"], default="unigram")
    ttrain.set_defaults(func=_cmd_tokenizer_train)
    vtrain = tok_sub.add_parser("train-vq", help="train the VQ-VAE image tokenizer on images or image-text tars")
    vtrain.add_argument("--images", action="append", required=True, help="image files, folders or tars (globs)")
    vtrain.add_argument("--output", required=True, help="folder for vq.pt and vq_metrics.json")
    vtrain.add_argument("--resolution", type=int, default=256)
    vtrain.add_argument("--downsample", type=int, default=8, help="4, 8 or 16 (256 px / 8 = 32x32 codes)")
    vtrain.add_argument("--codebook-size", type=int, default=8192)
    vtrain.add_argument("--code-dim", type=int, default=256)
    vtrain.add_argument("--channels", type=int, default=64)
    vtrain.add_argument("--res-blocks", type=int, default=2)
    vtrain.add_argument("--steps", type=int, default=1000)
    vtrain.add_argument("--batch-size", type=int, default=8)
    vtrain.add_argument("--lr", type=float, default=2e-4)
    vtrain.add_argument("--seed", type=int, default=0)
    vtrain.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ...")
    vtrain.add_argument("--eval-images", type=int, default=16, help="held-out images for PSNR and code usage")
    vtrain.set_defaults(func=_cmd_train_vq)
    venc = tok_sub.add_parser("encode-images", help="images -> VQ codes (JSONL: image, grid, codes)")
    venc.add_argument("--vq", required=True)
    venc.add_argument("--images", action="append", required=True)
    venc.add_argument("--output", required=True, help="codes JSONL to write")
    venc.add_argument("--batch-size", type=int, default=8)
    venc.set_defaults(func=_cmd_encode_images)
    vdec = tok_sub.add_parser("decode-images", help="VQ codes JSONL -> PNG images")
    vdec.add_argument("--vq", required=True)
    vdec.add_argument("--codes", required=True)
    vdec.add_argument("--output", required=True, help="folder for NNNNNN.png")
    vdec.set_defaults(func=_cmd_decode_images)

    shards = sub.add_parser("shards", help="tokenized WebDataset shards; `wudao shards verify DIR` checks them")
    shards.add_argument("action", nargs="?", choices=["verify"], help="verify an existing shard folder")
    shards.add_argument("dir", nargs="?", help="the shard folder to verify")
    shards.add_argument("--corpus", action="append", help="corpus JSONL(.gz) glob; repeatable")
    shards.add_argument("--tokenizer", help="tokenizer folder (from `wudao tokenizer train`)")
    shards.add_argument("--output", help="shard folder")
    shards.add_argument("--seq-len", type=int, default=512)
    shards.add_argument("--shard-size", default="256MB")
    shards.add_argument("--val-fraction", type=float, default=0.01)
    shards.add_argument("--format", choices=["text", "cogview"], default="text",
                        help="text: corpus JSONL; cogview: image-text tars -> "
                             "[ROI1] caption [BASE] [BOI1] codes [EOI1]")
    shards.add_argument("--vq", help="VQ checkpoint (vq.pt from `wudao tokenizer train-vq`) for --format cogview")
    shards.add_argument("--max-text-tokens", type=int, default=64, help="caption tokens kept (--format cogview)")
    shards.set_defaults(func=_cmd_shards)

    trainp = sub.add_parser("train", help="train GLM or CogView (PyTorch) on tokenized shards")
    trainp.add_argument("--shards", required=True, help="shard folder or manifest.json (from `wudao shards`)")
    trainp.add_argument("--model", choices=["glm", "cogview"], required=True)
    trainp.add_argument("--config", default="tiny",
                        help="tiny, small, base, large, or a YAML file (base: NAME + fields)")
    trainp.add_argument("--steps", type=int, help="optimizer steps (default: the config's max_steps)")
    trainp.add_argument("--out", default="run", help="folder for ckpt.pt, ckpt-STEP.pt and metrics.jsonl")
    trainp.add_argument("--resume", action="store_true",
                        help="continue from OUT/ckpt.pt (same data position and random state on every rank)")
    trainp.add_argument("--checkpoint-every", type=int,
                        help="write ckpt-STEP.pt every N steps (default: the config's checkpoint_every; 0: at the "
                             "end only)")
    trainp.add_argument("--expert-parallel", action="store_true",
                        help="under torchrun, split each MoE layer's experts over the ranks (num_experts / world "
                             "each, all-to-all dispatch) instead of replicating them")
    trainp.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ...")
    trainp.add_argument("--seed", type=int, default=0)
    trainp.add_argument("--tokenizer", help="tokenizer folder, when the shard folder has no vocab.json")
    trainp.set_defaults(func=_cmd_train)

    samplep = sub.add_parser("sample", help="generate an image for a caption with a trained CogView checkpoint")
    samplep.add_argument("--checkpoint", required=True, help="ckpt.pt of a `wudao train --model cogview` run")
    samplep.add_argument("--tokenizer", required=True, help="tokenizer folder (or the shard folder, which has a copy)")
    samplep.add_argument("--vq", required=True, help="the vq.pt the CogView shards were encoded with")
    samplep.add_argument("--caption", required=True)
    samplep.add_argument("--output", required=True, help="PNG to write")
    samplep.add_argument("--temperature", type=float, default=1.0)
    samplep.add_argument("--top-k", type=int, default=100, help="0 = no top-k cut")
    samplep.add_argument("--top-p", type=float, help="nucleus: the smallest set of codes with probability >= p")
    samplep.add_argument("--candidates", type=int, default=1,
                         help="sample N images, keep the one with the best caption score (CogView's self-reranking; "
                              "train with caption_share > 0)")
    samplep.add_argument("--seed", type=int, default=0)
    samplep.add_argument("--device", default="cpu")
    samplep.set_defaults(func=_cmd_sample)

    genp = sub.add_parser("generate", help="fill [MASK] / [sMASK] / [gMASK] blanks with a trained GLM checkpoint")
    genp.add_argument("--checkpoint", required=True, help="ckpt.pt of a `wudao train --model glm` run")
    genp.add_argument("--tokenizer", required=True, help="tokenizer folder (or the shard folder, which has a copy)")
    genp.add_argument("--text", required=True, help="text with blanks; without one, [gMASK] is appended (continue)")
    genp.add_argument("--strategy", choices=["greedy", "sample", "beam"], default="greedy")
    genp.add_argument("--max-new-tokens", type=int, default=64, help="per blank")
    genp.add_argument("--temperature", type=float, default=1.0, help="sample")
    genp.add_argument("--top-k", type=int, default=0, help="sample: keep the k likeliest tokens (0 = no cut)")
    genp.add_argument("--top-p", type=float, help="sample: nucleus, the smallest set with probability >= p")
    genp.add_argument("--num-beams", type=int, default=4, help="beam")
    genp.add_argument("--length-penalty", type=float, default=1.0, help="beam: score = logprob / length ** this")
    genp.add_argument("--prompt", help="inverse prompting: the prompt that {prompt} in --text stands for")
    genp.add_argument("--inverse", help="inverse prompting (beam): a template with {generation} and one [MASK] "
                      "where the prompt goes; candidates rank by how well they predict the prompt back")
    genp.add_argument("--inverse-weight", type=float, default=1.0,
                      help="score = (1 - w) * forward + w * inverse, per-token log-probs (1: inverse alone)")
    genp.add_argument("--seed", type=int, default=0)
    genp.add_argument("--device", default="cpu")
    genp.set_defaults(func=_cmd_generate)

    ptp = sub.add_parser("ptune", help="P-tuning v2: deep prompts on a frozen GLM for classification as blank filling")
    ptp.add_argument("--checkpoint", required=True, help="ckpt.pt of a `wudao train --model glm` run (frozen)")
    ptp.add_argument("--tokenizer", required=True, help="tokenizer folder")
    ptp.add_argument("--train", help='JSONL of {"text", "label"} to tune on')
    ptp.add_argument("--eval", help='JSONL of {"text", "label"}: accuracy of the prompt (or model)')
    ptp.add_argument("--verbalizer", help='label -> word: a JSON object, a file holding one, or "a,b,c" (labels '
                     'that are their own words)')
    ptp.add_argument("--template", help='the text around one blank, e.g. "{text}。学科：[MASK]"')
    ptp.add_argument("--prompt", help="folder of a tuned prompt (prompt.pt, task.json) to evaluate")
    ptp.add_argument("--out", help="folder to save the tuned prompt (or, with --full, the fine-tuned ckpt.pt)")
    ptp.add_argument("--full", action="store_true", help="fine-tune every weight instead (the baseline)")
    ptp.add_argument("--prompt-length", type=int, default=16, help="prompt positions per layer")
    ptp.add_argument("--steps", type=int, default=300)
    ptp.add_argument("--batch-size", type=int, default=16)
    ptp.add_argument("--lr", type=float, help="default 5e-3 (prompt) or 1e-4 (--full)")
    ptp.add_argument("--seed", type=int, default=0)
    ptp.add_argument("--device", default="cpu")
    ptp.set_defaults(func=_cmd_ptune)

    quality = sub.add_parser("quality", help="fastText quality classifier")
    quality_sub = quality.add_subparsers(dest="quality_command", required=True)
    qtrain = quality_sub.add_parser("train", help="train a classifier from positive and negative JSONL")
    qtrain.add_argument("--positive", action="append", required=True, help="JSONL(.gz) glob of good text")
    qtrain.add_argument("--negative", action="append", required=True, help="JSONL(.gz) glob of bad text")
    qtrain.add_argument("--output", required=True, help="model file to write (.bin)")
    qtrain.set_defaults(func=_cmd_quality_train)

    domain = sub.add_parser("domain", help="fastText topic (industry) classifier of the domain step")
    domain_sub = domain.add_subparsers(dest="domain_command", required=True)
    dtrain = domain_sub.add_parser("train", help='train a topic model from JSONL lines {"text", "label"}')
    dtrain.add_argument("--data", required=True, help="labeled JSONL(.gz)")
    dtrain.add_argument("--output", required=True, help="model file to write (.bin)")
    dtrain.add_argument("--seed", type=int, default=0)
    dtrain.add_argument("--quantize", action="store_true", help="smaller model (.ftz), a little less accurate")
    dtrain.set_defaults(func=_cmd_domain_train)
    deval = domain_sub.add_parser("eval", help="accuracy, overall and per label, as one JSON line")
    deval.add_argument("--data", required=True, help="labeled JSONL(.gz)")
    deval.add_argument("--model", default=None, help="model file (default: the bundled model)")
    deval.add_argument("--min-score", type=float, default=None,
                       help="also report the share of texts scored at least this, and the accuracy on them")
    deval.set_defaults(func=_cmd_domain_eval)
    alignment = sub.add_parser("alignment", help="image-text alignment model (CLIP-style dual encoder)")
    alignment_sub = alignment.add_subparsers(dest="alignment_command", required=True)
    atrain = alignment_sub.add_parser("train", help='train on JSONL lines {"image": path, "captions": [...]}')
    atrain.add_argument("--pairs", required=True, help="JSONL; image paths relative to its folder")
    atrain.add_argument("--output", required=True, help="folder to write (model.pt, tokenizer, metrics.json)")
    atrain.add_argument("--epochs", type=int, default=60)
    atrain.add_argument("--batch-size", type=int, default=64)
    atrain.add_argument("--lr", type=float, default=1e-3)
    atrain.add_argument("--image-size", type=int, default=64)
    atrain.add_argument("--patch-size", type=int, default=8)
    atrain.add_argument("--width", type=int, default=128, help="width of both encoders and the joint space")
    atrain.add_argument("--layers", type=int, default=2, help="transformer blocks in each encoder")
    atrain.add_argument("--heads", type=int, default=2)
    atrain.add_argument("--vocab-size", type=int, default=4000, help="SentencePiece pieces (byte fallback adds 256)")
    atrain.add_argument("--held-out", type=float, default=0.1, help="share of images kept out for recall")
    atrain.add_argument("--seed", type=int, default=0)
    atrain.set_defaults(func=_cmd_alignment_train)
    aeval = alignment_sub.add_parser("eval", help="retrieval recall@1/@5 of a trained model, as one JSON line")
    aeval.add_argument("--model", required=True, help="folder written by `wudao alignment train`")
    aeval.add_argument("--pairs", required=True)
    aeval.add_argument("--held-out", type=float, default=None,
                       help="only the held-out split of training (the same share as at training)")
    aeval.set_defaults(func=_cmd_alignment_eval)
    for pipeline_parser in (text, dedup, dialogue, image_text, demo):
        pipeline_parser.add_argument("--no-progress", action="store_true",
                                     help="no live progress line on the terminal (local runs)")
    return parser


def main(argv: list[str] | None = None) -> int:
    from pipelines.memory import tune_malloc

    tune_malloc()  # before Beam starts threads or worker processes
    parser = build_parser()
    args, beam_args = parser.parse_known_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if hasattr(args, "no_progress"):
        from pipelines import progress

        progress.enabled = not args.no_progress
    return args.func(args, beam_args)


if __name__ == "__main__":
    sys.exit(main())
