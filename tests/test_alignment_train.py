"""Training the small alignment model: pairs read safely, a stable split, exact recall arithmetic, and a model that
learns held-out pairs of a drawn colour-and-shape set well above chance, then round-trips from its folder. Then the
image-text pipeline's `alignment` stage with that model: every pair scored into its .json, matching captions above
swapped ones, the `min_score` and `min_percentile` floors exact, the histogram and the ledger."""
from __future__ import annotations

import gzip
import json
import random
import tarfile
from dataclasses import replace
from collections import Counter

import pytest
import torch
from PIL import Image, ImageDraw

from cleaners.histogram import cosine_bucket, ordered
from cleaners.image.alignment import AlignmentConfig, DualEncoder
from cleaners.image.alignment_train import (Pair, TrainSettings, evaluate, read_pairs, recall_at, split_pairs,
                                            train_alignment)
from cleaners.image.scoring import AlignmentScore, percentile_threshold, score_bin
from tokenizer.text import TextTokenizer

COLOURS = {"red": ((220, 30, 30), "红色"), "green": ((30, 170, 40), "绿色"), "blue": ((30, 60, 220), "蓝色")}
SHAPES = {"circle": "圆形", "square": "方块", "triangle": "三角形"}
SMALL = AlignmentConfig(embed_dim=32, image_size=32, patch_size=8, vision_width=64, vision_layers=1, vision_heads=2,
                        context_length=24, text_width=64, text_layers=1, text_heads=2)
SETTINGS = TrainSettings(epochs=15, batch_size=32, lr=2e-3, warmup_steps=10, held_out=0.2, vocab_size=400)


def caption_en(colour: str, shape: str) -> str:
    return f"a {colour} {shape} drawn on a white background"


def draw_pairs(folder, n: int, seed: int = 0) -> str:
    """n drawn images of a coloured shape at a random place, each with an English and a Chinese caption."""
    rng = random.Random(seed)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    with open(folder / "pairs.jsonl", "w", encoding="utf-8") as f:
        for i in range(n):
            colour, shape = rng.choice(list(COLOURS)), rng.choice(list(SHAPES))
            image = Image.new("RGB", (48, 40), (255, 255, 255))
            draw, x, y = ImageDraw.Draw(image), rng.randint(2, 20), rng.randint(2, 12)
            fill = COLOURS[colour][0]
            if shape == "circle":
                draw.ellipse((x, y, x + 24, y + 24), fill=fill)
            elif shape == "square":
                draw.rectangle((x, y, x + 24, y + 24), fill=fill)
            else:
                draw.polygon([(x, y + 24), (x + 24, y + 24), (x + 12, y)], fill=fill)
            image.save(folder / "images" / f"{i}.png")
            captions = [caption_en(colour, shape), f"白色背景上的一个{COLOURS[colour][1]}{SHAPES[shape]}"]
            f.write(json.dumps({"image": f"images/{i}.png", "captions": captions}, ensure_ascii=False) + "\n")
    return str(folder / "pairs.jsonl")


def test_pairs_are_read_only_from_under_their_folder_and_drops_are_counted(tmp_path):
    (tmp_path / "data" / "img").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "data" / "img" / "a.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "outside.png")
    lines = [{"image": "img/a.png", "captions": ["a black square", " "]},
             {"image": "img/a.png", "caption": "one caption field"},
             {"image": "../outside.png", "caption": "escapes the folder"},
             {"image": str(tmp_path / "outside.png"), "caption": "absolute path"},
             {"image": "img/missing.png", "caption": "no such file"},
             {"image": "img/a.png", "captions": []}]
    text = "\n".join(json.dumps(line) for line in lines) + "\nnot json\n[1, 2]\n\n"
    (tmp_path / "data" / "pairs.jsonl").write_text(text, encoding="utf-8")
    pairs, dropped = read_pairs(tmp_path / "data" / "pairs.jsonl")
    assert [p.captions for p in pairs] == [("a black square",), ("one caption field",)]
    assert dropped == {"image-path-outside-root": 2, "image-missing": 1, "no-caption": 1, "bad-json": 2}


def test_split_is_by_image_name_stable_and_disjoint(tmp_path):
    pairs = [Pair(tmp_path / f"{i}.jpg", ("x",)) for i in range(200)]
    train, test = split_pairs(pairs, 0.2)
    again = split_pairs(list(reversed(pairs)), 0.2)
    assert {p.image for p in test} == {p.image for p in again[1]} and not {p.image for p in train} & {
        p.image for p in test}
    assert len(train) + len(test) == 200 and 20 <= len(test) <= 60


def test_recall_counts_hits_exactly():
    sims = torch.tensor([[0.9, 0.1, 0.2, 0.3],      # image 0: best caption 0 (its own): hit at 1
                         [0.2, 0.5, 0.8, 0.1],      # image 1: caption 2 (image 2's) first, its own caption 1 second
                         [0.1, 0.7, 0.4, 0.6]])     # image 2: caption 1 first, its own caption 3 second
    owner = torch.tensor([0, 1, 2, 2])              # caption j describes image owner[j]
    got = recall_at(torch.eye(3), sims.t(), owner, ks=(1, 2))
    assert got["image_to_text_R@1"] == pytest.approx(1 / 3) and got["image_to_text_R@2"] == 1.0
    # caption 0 -> image 0 hit; 1 -> image 2 miss (then image 1); 2 -> image 1 miss (then 2); 3 -> image 2 hit
    assert got["text_to_image_R@1"] == pytest.approx(2 / 4) and got["text_to_image_R@2"] == 1.0
    assert got["chance_R@1"] == pytest.approx(1 / 3) and got["chance_R@2"] == pytest.approx(2 / 3)


def test_a_small_model_learns_held_out_pairs_well_above_chance_and_reloads(tmp_path):
    pairs = draw_pairs(tmp_path / "shapes", 160)
    metrics = train_alignment(pairs, str(tmp_path / "model"), SMALL, SETTINGS, log=lambda _: None)
    held = metrics["held_out"]
    assert held["captions"] == 2 * held["images"] and metrics["train_images"] + held["images"] == 160
    assert held["image_to_text_R@5"] >= 3 * held["chance_R@5"]
    assert held["text_to_image_R@5"] >= 3 * held["chance_R@5"]
    assert json.loads((tmp_path / "model" / "metrics.json").read_text("utf-8"))["held_out"] == held

    model = DualEncoder.load(str(tmp_path / "model" / "model.pt"))
    tokenizer = TextTokenizer.load(str(tmp_path / "model"))
    _, test = split_pairs(read_pairs(pairs)[0], SETTINGS.held_out)
    assert evaluate(model, tokenizer, test) == held


def test_too_few_pairs_is_a_clear_error(tmp_path):
    pairs = draw_pairs(tmp_path / "few", 1)
    with pytest.raises(ValueError, match="need more pairs"):
        train_alignment(pairs, str(tmp_path / "model"), settings=TrainSettings(epochs=1), log=lambda _: None)


@pytest.fixture(scope="module")
def shapes_model(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("shapes")
    train_alignment(draw_pairs(folder, 160), str(folder / "model"), SMALL, SETTINGS, log=lambda _: None)
    return str(folder / "model")


def _stage_input(tmp_path) -> tuple[str, dict[str, bool]]:
    """40 new drawings, every other one captioned with another colour: JSONL rows {"images": [path], "text"}.
    Returns the file and, per caption, whether it is the image's own."""
    draw_pairs(tmp_path, 40, seed=7)
    rows, own = [], {}
    for i, line in enumerate((tmp_path / "pairs.jsonl").read_text("utf-8").splitlines()):
        caption = json.loads(line)["captions"][0]
        colour, shape = caption.split()[1:3]
        if i % 2:
            colour = {"red": "green", "green": "blue", "blue": "red"}[colour]
        text = caption_en(colour, shape) + f" number {i}"    # distinct captions: distinct pair ids
        rows.append({"images": [f"images/{i}.png"], "text": text})
        own[text] = i % 2 == 0
    path = tmp_path / "input.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return str(path), own


def _run_stage(tmp_path, name: str, inputs: str, alignment: dict, read: dict | None = None
               ) -> tuple[dict, dict, list]:
    from pipelines.run import run_image_text

    recipe = {"caption": {"languages": ["en"]}, "image": {"min_side": 16, "resolution": 64},
              "dedup": {"enabled": False}, "alignment": alignment, "read": read or {}}
    (tmp_path / f"{name}.yaml").write_text(json.dumps(recipe), encoding="utf-8")
    out = tmp_path / name
    stats = run_image_text([inputs], str(out), str(tmp_path / f"{name}.yaml"), [])
    for stage in stats["stages"]:
        assert stage["in"] + stage.get("created", 0) == stage["out"] + stage["dropped"], stage
    samples = {}
    for shard in sorted((out / "images").glob("*.tar")):
        with tarfile.open(shard) as tar:
            for member in tar:
                if member.name.endswith(".json"):
                    meta = json.loads(tar.extractfile(member).read())
                    samples[meta["caption"]] = meta
    rejects = []
    for part in sorted((out / "rejects").glob("part-*.jsonl.gz")):
        with gzip.open(part, "rt", encoding="utf-8") as f:
            rejects += [json.loads(line) for line in f if line.strip()]
    return stats, samples, rejects


@pytest.mark.slow
def test_alignment_stage_scores_every_pair_and_its_floors_are_exact(shapes_model, tmp_path):
    inputs, own = _stage_input(tmp_path / "input")
    stats, samples, _ = _run_stage(tmp_path, "all", inputs, {"model_path": shapes_model, "batch_size": 8})
    assert set(samples) == set(own)                                   # nothing dropped without a floor
    scores = {caption: meta["alignment_score"] for caption, meta in samples.items()}
    matched = [s for c, s in scores.items() if own[c]]
    swapped = [s for c, s in scores.items() if not own[c]]
    assert sum(matched) / len(matched) > sum(swapped) / len(swapped) + 0.1
    stage = {s["stage"]: s for s in stats["stages"]}["alignment"]
    assert stage["in"] == stage["out"] == 40
    for caption, meta in samples.items():      # every caption here is a sentence about the drawing
        assert meta["caption_kind"] == "description"
        assert meta["strength"] == ("strong" if meta["alignment_score"] >= 0.28 else "weak")
    strong = sum(s >= 0.28 for s in scores.values())
    assert 0 < strong < 40
    assert stage["counts"] == {"tier:strong/description": strong, "tier:weak/description": 40 - strong}
    assert stats["histograms"]["alignment"]["alignment_score"] == dict(ordered(Counter(
        cosine_bucket(s) for s in scores.values())))

    # the same scores one pair at a time, straight from the step on the shards' JPEG and caption
    step = AlignmentScore(model_path=shapes_model, batch_size=1)
    one = dict(next(iter(samples.values())))
    with tarfile.open(next((tmp_path / "all" / "images").glob("*.tar"))) as tar:
        one["jpg"] = tar.extractfile(f"{one['id']}.jpg").read()
    single = {"jpg": one["jpg"], "caption": one["caption"]}
    step.score_batch([single])
    assert single["alignment_score"] == pytest.approx(one["alignment_score"], abs=2e-4)

    floor = sorted(scores.values())[len(scores) // 2]
    stats, kept, rejects = _run_stage(tmp_path, "min", inputs, {"model_path": shapes_model, "min_score": floor})
    assert set(kept) == {c for c, s in scores.items() if s >= floor}
    assert {r["reason"] for r in rejects} == {"alignment-below-min-score"}
    assert len(rejects) == 40 - len(kept)

    stats, kept, rejects = _run_stage(tmp_path, "pct", inputs, {"model_path": shapes_model, "min_percentile": 25})
    threshold = percentile_threshold(Counter(score_bin(s, 1000) for s in scores.values()), 25, 1000)
    assert set(kept) == {c for c, s in scores.items() if s >= threshold}
    assert 25 <= len(kept) <= 35                       # a quarter of 40, up to ties within one 0.002 bin
    stage = {s["stage"]: s for s in stats["stages"]}["alignment_percentile"]
    assert stage["dropped_by_reason"] == {"alignment-below-percentile": 40 - len(kept)}


def test_alignment_step_settings_are_checked_before_the_run():
    from cleaners.recipe import build_step

    with pytest.raises(ValueError, match="model_path"):
        build_step("alignment", {"model_path": ""}, kind="image_text")
    with pytest.raises(ValueError, match="min_score"):
        build_step("alignment", {"model_path": "m", "min_score": 2}, kind="image_text")
    with pytest.raises(ValueError, match="min_percentile"):
        build_step("alignment", {"model_path": "m", "min_percentile": 100}, kind="image_text")
    with pytest.raises(ValueError, match="bad parameters"):
        build_step("alignment", {"model_path": "m", "min_scor": 0.2}, kind="image_text")


def test_percentile_threshold_from_bins():
    bins = Counter(score_bin(s, 1000) for s in (-0.5, 0.1, 0.1, 0.2, 0.3, 0.9))
    assert percentile_threshold(bins, 0, 1000) == pytest.approx(-0.5)
    assert percentile_threshold(bins, 50, 1000) == pytest.approx(0.2)   # 3 of 6 below 0.2
    assert percentile_threshold(bins, 20, 1000) == pytest.approx(0.1)
    assert percentile_threshold({}, 50, 1000) == -1.0
    assert score_bin(1.0, 1000) == 999 and score_bin(-1.0, 1000) == 0


@pytest.mark.slow
def test_several_texts_per_image_best_or_all(shapes_model, tmp_path):
    """Each drawing comes with a wrong-colour caption and its true description as `title`: `best` makes the better
    text the caption (mostly the title), `all` keeps a record per text."""
    draw_pairs(tmp_path / "input", 20, seed=11)
    rows, truth = [], {}
    for i, line in enumerate((tmp_path / "input" / "pairs.jsonl").read_text("utf-8").splitlines()):
        right = json.loads(line)["captions"][0]
        colour, shape = right.split()[1:3]
        wrong = caption_en({"red": "green", "green": "blue", "blue": "red"}[colour], shape) + f" number {i}"
        right = f"{right} number {i}"
        rows.append({"images": [f"images/{i}.png"], "text": wrong, "title": right})
        truth[i] = (wrong, right)
    inputs = tmp_path / "input" / "titled.jsonl"
    inputs.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    read = {"text_cols": ["title"]}

    stats, samples, _ = _run_stage(tmp_path, "best", str(inputs), {"model_path": shapes_model}, read)
    assert len(samples) == 20
    stage = {s["stage"]: s for s in stats["stages"]}["alignment"]
    assert stage["counts"]["texts:best-is-other"] + stage["counts"].get("texts:best-is-caption", 0) == 20
    assert stage["counts"]["texts:best-is-other"] >= 14         # the model prefers the true colour
    for caption, meta in samples.items():
        other, = meta["texts"]
        assert meta["alignment_score"] >= other["alignment_score"]
        i = int(caption.rsplit(" ", 1)[1])
        assert {caption, other["text"]} == set(truth[i]) and other["lang"] == "en"

    stats, samples, _ = _run_stage(tmp_path, "every", str(inputs), {"model_path": shapes_model, "texts": "all"}, read)
    assert set(samples) == {text for pair in truth.values() for text in pair}
    assert len({meta["id"] for meta in samples.values()}) == 40 and all("texts" not in m for m in samples.values())
    stage = {s["stage"]: s for s in stats["stages"]}["alignment"]
    assert (stage["in"], stage["created"], stage["out"]) == (20, 20, 40)


def test_an_image_that_does_not_decode_is_left_out_and_counted(tmp_path):
    pairs = draw_pairs(tmp_path / "shapes", 40)
    (tmp_path / "shapes" / "images" / "3.png").write_bytes((tmp_path / "shapes" / "images" / "3.png").read_bytes()[:60])
    metrics = train_alignment(pairs, str(tmp_path / "model"), SMALL, replace(SETTINGS, epochs=1), log=lambda _: None)
    assert metrics["dropped"] == {"image-unreadable": 1}
    assert metrics["train_images"] + metrics["held_out"]["images"] == 39
