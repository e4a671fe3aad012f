"""The embedded image-text sample end to end: every planted case has the outcome expected.json gives it (the url
list downloaded from a real server on 127.0.0.1), then a tiny VQ and CogView shards from the kept images."""
from __future__ import annotations

import gzip
import io
import json
import os
import tarfile

import numpy as np
import pytest

from pipelines.cli import main
from pipelines.image_demo import localized_url_list, sample_dir, serve_folder
from pipelines.run import run_image_text
from tokenizer.cogview import split_cogview_sample
from tokenizer.text import train_sentencepiece
from tokenizer.vocab import Vocab

EXPECTED = json.load(open(os.path.join(sample_dir(), "expected.json"), encoding="utf-8"))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("image_demo")
    sample = sample_dir()
    with serve_folder(os.path.join(sample, "served")) as base:
        urls = localized_url_list(sample, base, str(out / "inputs" / "urls.tsv"))
        stats = run_image_text([os.path.join(sample, "shapes-000.tar"), os.path.join(sample, "photos.parquet"), urls],
                               str(out / "image_text"), None, [])
    kept, rejects = {}, {}
    for shard in sorted((out / "image_text" / "images").glob("*.tar")):
        with tarfile.open(shard) as tar:
            for member in tar:
                if member.name.endswith(".json"):
                    meta = json.loads(tar.extractfile(member).read())
                    kept[os.path.basename(meta["key"])] = meta
    for part in (out / "image_text" / "rejects").glob("part-*.jsonl.gz"):
        with gzip.open(part, "rt", encoding="utf-8") as fh:
            for line in fh:
                row = json.loads(line)
                rejects[os.path.basename(row["key"])] = row
    return out, stats, kept, rejects


def test_every_planted_case_has_its_expected_outcome(run):
    _, stats, kept, rejects = run
    assert len(kept) + len(rejects) == len(EXPECTED["cases"]) == stats["totals"]["records_in"]
    for case in EXPECTED["cases"]:
        key = case["key"]
        if case["expect"] == "kept":
            assert key in kept, (key, rejects.get(key))
            assert kept[key]["caption"] == case["caption_out"], key
            assert kept[key]["lang"] == case["lang"], key
            for fact, value in (case.get("facts") or {}).items():
                assert kept[key]["facts"][fact] == value, (key, fact)
        elif case["expect"] == "dropped":
            assert key in rejects, key
            assert rejects[key]["stage"] == case["stage"], key
            if "reason" in case:
                assert rejects[key]["reason"] == case["reason"], key
            else:
                keeper = kept[case["duplicate_of"]]["id"]
                assert rejects[key]["reason"] == case["reason_prefix"] + keeper, key
        else:  # one-kept: exactly one of the exact-duplicate pair survives
            group = case["duplicate_group"]
            assert sum(k in kept for k in group) == 1, group
    totals = EXPECTED["outcomes"]
    assert stats["totals"]["kept"] == totals["kept"] + totals["one-kept"] // 2


def test_kept_images_are_training_ready(run):
    out, _, kept, _ = run
    from PIL import Image

    with tarfile.open(next((out / "image_text" / "images").glob("*.tar"))) as tar:
        jpgs = [tar.extractfile(m).read() for m in tar if m.name.endswith(".jpg")]
    assert jpgs
    for data in jpgs:
        image = Image.open(io.BytesIO(data))
        assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (256, 256))


@pytest.mark.slow
def test_vq_and_cogview_shards_from_the_kept_images(run, tmp_path, capsys):
    out, _, kept, _ = run
    tars = str(out / "image_text" / "images" / "*.tar")
    captions = tmp_path / "captions.txt"
    captions.write_text("\n".join(m["caption"] for m in kept.values()) * 5 + "\n", encoding="utf-8")
    tok = tmp_path / "tok"
    train_sentencepiece([str(captions)], str(tok), vocab_size=500)
    vq = tmp_path / "vq"
    assert main(["tokenizer", "train-vq", "--images", tars, "--output", str(vq), "--resolution", "32",
                 "--downsample", "8", "--channels", "16", "--codebook-size", "64", "--code-dim", "16",
                 "--res-blocks", "0", "--steps", "30", "--eval-images", "4"]) == 0
    metrics = json.loads((vq / "vq_metrics.json").read_text())
    assert metrics["steps"] == 30 and metrics["psnr_db"] > 0
    shards = tmp_path / "cogview"
    assert main(["shards", "--format", "cogview", "--corpus", tars, "--tokenizer", str(tok), "--vq",
                 str(vq / "vq.pt"), "--output", str(shards), "--val-fraction", "0"]) == 0
    assert main(["shards", "verify", str(shards)]) == 0
    import torch

    assert torch.is_grad_enabled()  # encoding images for shards must not switch autograd off for the process
    vocab = Vocab.load(str(tok))
    samples = 0
    for shard in sorted(shards.glob("*.tar")):
        with tarfile.open(shard) as tar:
            for member in tar:
                if member.name.endswith(".npy"):
                    ids = np.load(io.BytesIO(tar.extractfile(member).read()))
                    text, codes = split_cogview_sample(ids.tolist(), vocab)
                    assert len(codes) == 16 and all(0 <= c < 64 for c in codes)   # 32 px / 8 = 4x4 codes
                    assert 0 < len(text) <= 64
                    samples += 1
    assert samples == len(kept)
    # a few CogView steps on those shards, then a caption -> codes -> PNG through the VQ decoder
    config = tmp_path / "cogview.yaml"
    config.write_text("base: tiny\nd_model: 32\nn_layers: 1\nn_heads: 2\nd_ff: 64\nseq_len: 96\n"
                      "batch_size: 4\nwarmup_steps: 2\neval_every: 3\neval_batches: 1\ncaption_share: 0.5\n")
    run_dir = tmp_path / "run"
    assert main(["train", "--shards", str(shards), "--model", "cogview", "--config", str(config), "--steps", "3",
                 "--out", str(run_dir)]) == 0
    assert main(["sample", "--checkpoint", str(run_dir / "ckpt.pt"), "--tokenizer", str(shards), "--vq",
                 str(vq / "vq.pt"), "--caption", "a red circle on a blue background", "--output",
                 str(tmp_path / "s.png")]) == 0
    from PIL import Image

    assert Image.open(tmp_path / "s.png").size == (32, 32)
    capsys.readouterr()
    assert main(["sample", "--checkpoint", str(run_dir / "ckpt.pt"), "--tokenizer", str(shards), "--vq",
                 str(vq / "vq.pt"), "--caption", "a red circle", "--output", str(tmp_path / "best.png"),
                 "--candidates", "3", "--top-p", "0.9"]) == 0
    scores = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["caption_scores"]
    assert len(scores) == 3 and scores == sorted(scores, reverse=True)     # self-reranked, best written
    assert Image.open(tmp_path / "best.png").size == (32, 32)
    # encode-images / decode-images round trip through the commands
    codes = tmp_path / "codes.jsonl"
    assert main(["tokenizer", "encode-images", "--vq", str(vq / "vq.pt"), "--images", tars,
                 "--output", str(codes)]) == 0
    rows = [json.loads(line) for line in codes.read_text().splitlines()]
    assert len(rows) == len(kept) and all(r["grid"] == [4, 4] for r in rows)
    assert main(["tokenizer", "decode-images", "--vq", str(vq / "vq.pt"), "--codes", str(codes),
                 "--output", str(tmp_path / "decoded")]) == 0
    assert len(list((tmp_path / "decoded").glob("*.png"))) == len(kept)
