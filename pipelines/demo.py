"""`wudao demo`: every part of the project on the embedded samples, narrated as it goes.

    web-text pipeline on pipelines/data/sample -> DIR/text
    -> a small bilingual tokenizer (DIR/tokenizer) -> tokenized GLM shards (DIR/shards)
    -> dialogue pipeline on pipelines/data/dialogue_sample -> DIR/dialogue
    -> image-text pipeline, VQ tokenizer, CogView shards (pipelines/image_demo.py) -> DIR/image_text, vq, cogview_shards
    -> short GLM and CogView training runs (DIR/train_glm, DIR/train_cogview) -> DIR/text/report.html

The image part stays in its own module, pipelines/image_demo.py: it carries its own machinery (an HTTP server on
127.0.0.1 serving the sample's url list, the CPU-sized VQ config `DEMO_VQ`) that tests/test_image_demo.py and
bench/vq_tokenizer.py use without the rest of the demo, and this file stays a readable list of the demo's steps.
Both run pipelines through the run facade (pipelines/run.py), never through the command line.
"""
from __future__ import annotations

import json
import os
import shutil
from typing import Any, Callable

from pipelines.run import format_summary, run_dialogue, run_text, sample_inputs

#: the demo's training runs: (model, shard folder under the demo output, config overrides of `tiny`)
DEMO_TRAINING = (
    ("glm", "shards", {"steps": 60, "batch_size": 8, "warmup_steps": 10, "eval_every": 30, "eval_batches": 4}),
    ("cogview", "cogview_shards", {"steps": 60, "batch_size": 4, "seq_len": 160, "warmup_steps": 10,
                                   "eval_every": 30, "eval_batches": 2}),
)


def run_demo(output: str, config_path: str | None, beam_args: list[str],
             say: Callable[[str], None] = print) -> str:
    """Run every part of the demo into `output`, telling `say` what each did; returns the report's path."""
    from pipelines.image_demo import run_image_demo
    from pipelines.report import write_report
    from pipelines.shards_job import write_shards
    from pipelines.tokenizer_job import train_tokenizer

    inputs = sample_inputs()
    text_out = os.path.join(output, "text")
    say(f"wudao demo: web-text pipeline on the embedded sample crawl ({len(inputs)} files)")
    stats = run_text(inputs, text_out, config_path, beam_args)
    say(format_summary(stats, text_out))
    corpus = os.path.join(text_out, "corpus", "part-*.jsonl.gz")
    tokenizer_out, shards_out = os.path.join(output, "tokenizer"), os.path.join(output, "shards")
    say("\nwudao demo: a small bilingual tokenizer from the demo corpus, then tokenized shards")
    train_tokenizer([corpus], tokenizer_out, vocab_size=2000, beam_args=beam_args)
    with open(os.path.join(tokenizer_out, "vocab.json"), encoding="utf-8") as fh:
        vocab = json.load(fh)
    say(f"tokenizer: {tokenizer_out} ({vocab['text_vocab_size']} text pieces, {len(vocab['special_tokens'])} "
        f"special tokens, {vocab['image_codes']} image codes: {vocab['total_size']} ids)")
    manifest = write_shards([corpus], tokenizer_out, shards_out, shard_size_bytes=64_000, val_fraction=0.1,
                            beam_args=beam_args)
    say(f"shards:    {shards_out} ({len(manifest['shards'])} shards, "
        f"{sum(s['tokens'] for s in manifest['shards'])} tokens; check with `wudao shards verify {shards_out}`)")

    inputs = sample_inputs("dialogue_sample")
    dialogue_out = os.path.join(output, "dialogue")
    say(f"\nwudao demo: dialogue pipeline on the embedded dialogue sample ({len(inputs)} files)")
    stats = run_dialogue(inputs, dialogue_out, None, beam_args)
    say(format_summary(stats, dialogue_out))

    say("\nwudao demo: image-text pipeline on the embedded image sample (its url list served on 127.0.0.1), "
        "then a small VQ image tokenizer and CogView shards")
    image = run_image_demo(output, tokenizer_out, beam_args)
    say(format_summary(image["stats"], image["image_out"]))
    vq = image["vq"]
    grid = vq["config"]["resolution"] // vq["config"]["downsample"]
    say(f"vq:       {image['vq_dir']} ({vq['config']['resolution']} px -> {grid}x{grid} codes of "
        f"{vq['config']['codebook_size']}; {vq['steps']} steps in {vq['seconds']:.0f} s; held-out PSNR "
        f"{vq['psnr_db']:.1f} dB, codebook usage {vq['codebook_usage']:.0%})")
    held = image["alignment"]["held_out"]
    say(f"alignment: {image['alignment']['model']} ({image['alignment']['train_images']} drawings trained on, "
        f"{held['images']} held out: image -> text R@1 {held['image_to_text_R@1']:.2f} (chance "
        f"{held['chance_R@1']:.2f}); every kept pair's alignment_score and strength are in its .json)")
    cogview = image["manifest"]["shards"]
    say(f"cogview:  {os.path.join(output, 'cogview_shards')} ({len(cogview)} shards, "
        f"{sum(s['samples'] for s in cogview)} samples: [ROI1] caption [BASE] [BOI1] image codes [EOI1])")

    say("\nwudao demo: short GLM and CogView training runs on those shards (config tiny, CPU)")
    for kind, shard_dir, overrides in DEMO_TRAINING:
        result = train_demo_model(kind, os.path.join(output, shard_dir), os.path.join(output, f"train_{kind}"),
                                  overrides)
        say(f"{kind}: {result['steps']} steps in {result['seconds']:.0f} s, validation loss "
            f"{result['val_loss_first']:.3f} -> {result['val_loss_last']:.3f}, "
            f"{result['tokens_per_s']:,.0f} tokens/s ({result['checkpoint']})")
        if kind == "glm":
            say(f"glm: wudao generate {demo_generation(result['checkpoint'], os.path.join(output, shard_dir))} "
                "(60 steps: the plumbing, not the quality)")
    report = write_report(text_out, shards_out)
    say(f"\nreport:  {report}")
    return report


def demo_generation(checkpoint: str, tokenizer_dir: str, text: str = "北京是[MASK]的首都。") -> str:
    """`text` -> its blank filled by beam search with the demo's GLM checkpoint, as `wudao generate` does."""
    from train.decoding import Decoding
    from train.glm_generate import generate, load_filler

    filler, tokenizer = load_filler(checkpoint, tokenizer_dir)
    out = generate(filler, tokenizer, text, Decoding("beam", num_beams=4, max_new_tokens=8))
    return f"{text!r} -> {out['text']!r}"


def train_demo_model(kind: str, shards: str, out: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """A short `tiny` training run of `kind` (glm, cogview) on `shards`, started over in `out`."""
    from train.loop import train

    if os.path.isdir(out):
        shutil.rmtree(out)  # the demo starts over; `wudao train --resume` is for real runs
    params = dict(overrides)
    steps = params.pop("steps")
    return train(kind, shards, "tiny", steps=steps, out=out, log=lambda line: None, **params)
