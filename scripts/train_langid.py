#!/usr/bin/env python
"""Train the bundled language-ID model (`cleaners/data/lid/lid_zh_en.ftz`) from the shared corpus samples.

    python scripts/train_langid.py --samples ../shared/corpus-samples --output cleaners/data/lid/lid_zh_en.ftz

Data (sources and licences in `cleaners/data/lid/README.md`): Chinese from chinese-poetry (simplified and
traditional), WuDao-format records and LCCC / KdConv dialogues; English from Tiny
Shakespeare, FlagAI wiki paragraphs, data-juicer samples and ChatAlpaca; Spanish / Portuguese from the
StackExchange sample (labelled by stop-word vote); other languages from pseudo-sentences drawn from the
justext stop-word lists (frequency-ranked, sampled Zipf-like) plus hand-written sentences
(`cleaners/data/lid/handwritten.tsv`) and a small Japanese lexicon below.

Every example carries a group key (file + record); about 1 group in 10 (by stable hash) is held out and
never trained on. The script prints held-out accuracy per label. Training is single-threaded with a
fixed seed, so the output file is byte-identical on reruns.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import re
import sys
import tempfile
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from cleaners.document import stable_hash  # noqa: E402
from cleaners.fasttext_text import train_supervised  # noqa: E402
from cleaners.language import lid_line  # noqa: E402

SEED = 20240601
HELD_OUT_MODULUS = 10          # 1 group in 10 is held out
EXPLICIT = ("zh", "en", "ja", "ko", "ru", "fr", "de", "es", "pt", "it", "ar")
# justext stop-list file stem -> label; every other list (except English variants) is `other`
STOPLIST_LABELS = {"Korean": "ko", "Russian": "ru", "French": "fr", "German": "de", "Spanish": "es",
                   "Portuguese": "pt", "Italian": "it", "Arabic": "ar"}
STOPLIST_SKIP = {"English", "Simple_English"}
CAP_PER_LABEL = 9000           # keeps zh / en from swamping the rest
HANDWRITTEN_REPEAT = 5

HYPERPARAMS = dict(lr=0.5, epoch=15, dim=16, wordNgrams=2, minn=2, maxn=4, bucket=200_000,
                   minCount=2, loss="softmax", thread=1, seed=SEED, verbose=0)
QUANTIZE = dict(cutoff=60_000, qnorm=True, retrain=False, dsub=2)


@dataclass(frozen=True)
class Example:
    label: str
    group: str
    text: str

    @property
    def held_out(self) -> bool:
        return is_held_out(self.group)


def is_held_out(group: str) -> bool:
    return int(stable_hash(group)[:8], 16) % HELD_OUT_MODULUS == 0


# ------------------------------------------------------------------------------------------- readers


def _chunks(text: str, size: int) -> Iterator[str]:
    """Split text into pieces of at most ~`size` characters at whitespace or sentence ends."""
    pieces = re.split(r"(?<=[。！？.!?\n])", text)
    buf = ""
    for piece in pieces:
        if buf and len(buf) + len(piece) > size:
            yield buf.strip()
            buf = ""
        buf += piece
    if buf.strip():
        yield buf.strip()


def _poetry(samples: Path) -> Iterator[Example]:
    for path in sorted((samples / "zh_text" / "chinese-poetry").glob("*.json")):
        data = json.loads(path.read_text("utf-8"))
        stack = [data]
        n = 0
        while stack:                       # walk nested collections (tangshisanbaishou nests content)
            node = stack.pop()
            if isinstance(node, list):
                stack.extend(reversed(node))
            elif isinstance(node, dict):
                lines = node.get("paragraphs") or node.get("content")
                if isinstance(lines, list) and lines and all(isinstance(x, str) for x in lines):
                    group = f"{path.name}#{n}"
                    n += 1
                    body = "".join(lines)
                    yield Example("zh", group, lines[0])
                    for chunk in _chunks(body, 300):
                        yield Example("zh", group, chunk)
                elif isinstance(lines, str):
                    yield Example("zh", f"{path.name}#{n}", lines)
                    n += 1
                else:
                    stack.extend(v for v in node.values() if isinstance(v, (list, dict)))


def _jsonl_texts(path: Path) -> Iterator[tuple[int, str]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        for i, line in enumerate(fh):
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            text = record.get("text") or record.get("content") if isinstance(record, dict) else None
            if isinstance(text, str) and text.strip():
                yield i, text


def _han_share(text: str) -> float:
    han = len(re.findall(r"[\u4e00-\u9fff]", text))
    letters = len(re.findall(r"[^\W\d_]", text))
    return han / letters if letters else 0.0


def _wudao(samples: Path) -> Iterator[Example]:
    folder = samples / "zh_text" / "wudao_format"
    records = json.loads((folder / "flagai_glm_pretrain_jinrong_data.json").read_text("utf-8"))["RECORDS"]
    for i, record in enumerate(records):
        for chunk in _chunks(record["content"], 400):
            yield Example("zh", f"jinrong#{i}", chunk)
    for i, text in _jsonl_texts(folder / "flagai_indexed_dataset_demo.jsonl"):
        label = "zh" if _han_share(text) > 0.5 else "en"   # the file is 10 Chinese + 10 English records
        for chunk in _chunks(text, 400):
            yield Example(label, f"demo#{i}", chunk)


def _dialogues(samples: Path) -> Iterator[Example]:
    folder = samples / "dialogue"
    for name in ("toy_train.txt", "toy_valid.txt"):
        for i, line in enumerate((folder / "cdial-gpt_lccc" / name).read_text("utf-8").splitlines()):
            turns = [t.replace(" ", "") for t in line.split("\t") if t.strip()]
            if turns:
                yield Example("zh", f"lccc-{name}#{i}", " ".join(turns))
    for path in sorted((folder / "kdconv").glob("*.json")):
        for i, dialogue in enumerate(json.loads(path.read_text("utf-8"))):
            for j, message in enumerate(dialogue.get("messages", [])):
                if message.get("message"):
                    yield Example("zh", f"{path.name}#{i}", message["message"])
    with open(folder / "flagai_chatalpaca" / "convo_samples.jsonl", encoding="utf-8") as fh:
        for i, line in enumerate(fh):
            for turn in json.loads(line).get("conversations", []):
                for chunk in _chunks(turn.get("value", ""), 400):
                    yield Example("en", f"chatalpaca#{i}", chunk)


def _english(samples: Path) -> Iterator[Example]:
    folder = samples / "en_text"
    lines = (folder / "tinyshakespeare_input.txt").read_text("utf-8").split("\n\n")
    for i, speech in enumerate(lines):           # one speech per example (speaker line included)
        for chunk in _chunks(speech, 400):
            yield Example("en", f"shakespeare#{i}", chunk)
    for i, line in enumerate((folder / "flagai_gpt2_title_generation_debug.txt").read_text("utf-8").splitlines()):
        for chunk in _chunks(line, 400):
            yield Example("en", f"flagai-wiki#{i}", chunk)
    for path in sorted(folder.glob("data-juicer_*.jsonl")):
        if "stack_exchange" in path.name:
            continue
        for i, text in _jsonl_texts(path):
            for chunk in list(_chunks(text, 400))[:20]:
                yield Example("en", f"{path.name}#{i}", chunk)


def _stoplist(stem: str) -> list[str]:
    import justext

    path = Path(justext.__file__).parent / "stoplists" / f"{stem}.txt"
    return [w.strip() for w in path.read_text("utf-8").splitlines() if w.strip()]


def _stack_exchange(samples: Path) -> Iterator[Example]:
    """English / Spanish / Portuguese Q&A: each record goes to the language whose 200 most frequent
    stop words it uses most (the sample mixes the three)."""
    vocab = {label: set(_stoplist(stem)[:200]) for label, stem in
             (("en", "English"), ("es", "Spanish"), ("pt", "Portuguese"))}
    for i, text in _jsonl_texts(samples / "en_text" / "data-juicer_stack_exchange.jsonl"):
        words = re.findall(r"[^\W\d_]+", text.lower())
        votes = {label: sum(w in v for w in words) for label, v in vocab.items()}
        label = max(sorted(votes), key=votes.__getitem__)
        for chunk in list(_chunks(text, 400))[:10]:
            yield Example(label, f"stack_exchange#{i}", chunk)


# ----------------------------------------------------------------------------------- synthetic text

_JA_NOUNS = ("日本 東京 大阪 会社 学校 先生 学生 時間 今日 明日 昨日 天気 電車 仕事 家族 友達 料理 映画 音楽 "
             "問題 世界 経済 政治 社会 情報 技術 研究 病院 駅 店 本 水 車 雨 花 山 川 海 町 国 人 話 "
             "コンピューター インターネット ニュース データ サービス システム スマートフォン ホテル "
             "レストラン テレビ ゲーム プログラム メール カメラ コーヒー").split()
_JA_PARTICLES = "は が を に で と の も から まで へ より".split()
_JA_VERBS = ("です ます でした ました ません ている ています ていた する します した しない ある あります "
             "いる います なる なります 行きます 来ました 見ました 食べました 思います 考えています "
             "使います 作りました 話しました わかりません 始まります 終わりました だ だった という ように").split()
_JA_FILLERS = "とても すこし もう まだ よく いつも たくさん そして しかし でも それから この その あの".split()


def _japanese_sentence(rng: random.Random) -> str:
    parts = []
    for _ in range(rng.randint(1, 3)):
        if rng.random() < 0.3:
            parts.append(rng.choice(_JA_FILLERS))
        parts.append(rng.choice(_JA_NOUNS) + rng.choice(_JA_PARTICLES))
        if rng.random() < 0.5:
            parts.append(rng.choice(_JA_NOUNS) + rng.choice(_JA_PARTICLES))
        parts.append(rng.choice(_JA_VERBS) + rng.choice(("。", "、", "")))
    return "".join(parts)


def _zipf_sentence(rng: random.Random, words: list[str], weights: list[float]) -> str:
    n = rng.randint(3, 30)
    return " ".join(rng.choices(words, weights=weights, k=n))


def _synthetic(rng: random.Random) -> Iterator[Example]:
    import justext

    stems = sorted(p.stem for p in (Path(justext.__file__).parent / "stoplists").glob("*.txt"))
    for stem in stems:
        if stem in STOPLIST_SKIP:
            continue
        label = STOPLIST_LABELS.get(stem, "other")
        words = _stoplist(stem)
        weights = [1.0 / (rank + 10) for rank in range(len(words))]
        count = 1500 if label != "other" else 120
        for i in range(count):
            yield Example(label, f"stoplist-{stem}#{i}", _zipf_sentence(rng, words, weights))
    for i in range(1500):
        yield Example("ja", f"ja-lexicon#{i}", _japanese_sentence(rng))


def _handwritten() -> Iterator[Example]:
    path = REPO / "cleaners" / "data" / "lid" / "handwritten.tsv"
    for i, line in enumerate(path.read_text("utf-8").splitlines()):
        if line and not line.startswith("#"):
            label, text = line.split("\t", 1)
            for r in range(HANDWRITTEN_REPEAT):
                yield Example(label, f"handwritten#{i}", text)


def build_examples(samples: str | Path, seed: int = SEED) -> list[Example]:
    """Every labelled example (train and held-out), in a deterministic order, before capping."""
    samples = Path(samples)
    rng = random.Random(seed)
    examples: list[Example] = []
    for source in (_poetry, _wudao, _dialogues, _english, _stack_exchange):
        examples.extend(source(samples))
    examples.extend(_synthetic(rng))
    examples.extend(_handwritten())
    return [e for e in examples if lid_line(e.text)]


def _mixed(rng: random.Random, train: list[Example], count: int) -> Iterator[Example]:
    """zh+en code-mixed text labelled by the majority of tokens (one token per Han character or word),
    kept only where the majority is at least two thirds, so the label is not a coin flip."""
    zh = [e for e in train if e.label == "zh"]
    en = [e for e in train if e.label == "en"]
    made = 0
    while made < count:
        a, b = rng.choice(zh), rng.choice(en)
        na, nb = len(lid_line(a.text).split()), len(lid_line(b.text).split())
        if max(na, nb) < 2 * min(na, nb):
            continue
        label = "zh" if na > nb else "en"
        parts = [a.text, b.text]
        rng.shuffle(parts)
        yield Example(label, f"mixed#{made}", " ".join(parts))
        made += 1


def training_set(examples: list[Example], seed: int = SEED) -> list[Example]:
    rng = random.Random(seed)
    train = [e for e in examples if not e.held_out]
    by_label: dict[str, list[Example]] = defaultdict(list)
    for e in train:
        by_label[e.label].append(e)
    capped: list[Example] = []
    for label in sorted(by_label):
        items = by_label[label]
        if len(items) > CAP_PER_LABEL:
            items = rng.sample(items, CAP_PER_LABEL)
        capped.extend(items)
    capped.extend(_mixed(rng, capped, 800))
    rng.shuffle(capped)
    return capped


def train(samples: str | Path, output: str | Path, seed: int = SEED) -> dict[str, tuple[int, float]]:
    """Train, quantize and write the model; returns {label: (held-out count, accuracy)}."""
    examples = build_examples(samples, seed)
    train_examples = training_set(examples, seed)
    with tempfile.TemporaryDirectory() as tmp:
        train_file = os.path.join(tmp, "train.txt")
        with open(train_file, "w", encoding="utf-8") as fh:
            for e in train_examples:
                fh.write(f"__label__{e.label} {lid_line(e.text)}\n")
        model = train_supervised(train_file, **{**HYPERPARAMS, "seed": seed}, quantize=QUANTIZE)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    model.save_model(str(partial))
    os.replace(partial, output)
    return evaluate(model, [e for e in examples if e.held_out])


def evaluate(model, held_out: list[Example]) -> dict[str, tuple[int, float]]:
    total: Counter[str] = Counter()
    right: Counter[str] = Counter()
    for e in held_out:
        labels, _ = model.predict(lid_line(e.text), k=1)
        total[e.label] += 1
        right[e.label] += labels[0] == f"__label__{e.label}"
    return {label: (total[label], right[label] / total[label]) for label in sorted(total)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", default=str(REPO.parent / "shared" / "corpus-samples"))
    parser.add_argument("--output", default=str(REPO / "cleaners" / "data" / "lid" / "lid_zh_en.ftz"))
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args(argv)
    if not os.path.isdir(args.samples):
        parser.error(f"samples folder not found: {args.samples}")
    report = train(args.samples, args.output, args.seed)
    print(f"wrote {args.output} ({os.path.getsize(args.output) / 1e6:.2f} MB)")
    print("held-out accuracy per label:")
    for label, (n, acc) in report.items():
        print(f"  {label:6s} n={n:6d} accuracy={acc:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
