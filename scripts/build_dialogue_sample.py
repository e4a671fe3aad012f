#!/usr/bin/env python
"""Build the embedded dialogue sample (`pipelines/data/dialogue_sample/`) that `wudao demo` runs on.

    python scripts/build_dialogue_sample.py [--samples ../shared/corpus-samples] [--output DIR]

It copies small slices of permissively licensed real dialogue data (LCCC toy data, MIT; KdConv, Apache-2.0;
ChatAlpaca via FlagAI, Apache-2.0: rows in the sample's README) in their original formats, and writes a Weibo-style
thread dump and a few JSONL sessions of our own with planted noise for every rule: platform tags, URLs, phone and
QQ numbers, @mentions, repeated characters, an advertisement reply under many contexts, too-short turns, a cycle and
a missing parent in the thread dump, exact duplicate sessions and a bad JSON line. Deterministic output.
"""
from __future__ import annotations

import argparse
import gzip
import io
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

OWN_SESSIONS = [
    {"turns": ["周末去爬山吗？听说山顶的枫叶红了。", "好啊好啊好啊好啊好啊，几点出发？",
               "早上七点在地铁站集合吧。"], "lang": "zh"},
    {"turns": ["@小明 你的快递到了，放在门卫室了。", "谢谢提醒，我下班就去拿。",
               "不客气，记得带上取件码。"], "lang": "zh"},
    {"turns": ["这家店的火锅真的很好吃！", "地址发我一下 http://t.cn/A6abcdE 这个吗？",
               "对，就是这家，记得提前排队。"], "lang": "zh"},
    {"turns": ["有问题可以直接打我电话13812345678或者加QQ：384726159", "好的，我晚上联系你。",
               "嗯，八点以后都有空。"], "lang": "zh"},
    {"turns": ["今天的作业好难啊", "嗯", "哪一题不会？我可以帮你看看。", "第三题，关于函数的那道。"], "lang": "zh"},
    {"turns": ["#周末去哪儿# 推荐一个适合带孩子的公园吧[哈哈]", "城东的湿地公园不错，有很多鸟。",
               "谢谢，这周就去看看。"], "lang": "zh"},
    {"turns": ["Are you coming to the book club on Thursday?", "Yes, I finished the novel last night.",
               "Great, bring your notes, we will start at seven."], "lang": "en"},
    {"turns": ["Are you coming to the book club on Thursday?", "Yes, I finished the novel last night.",
               "Great, bring your notes, we will start at seven."], "lang": "en"},
]
AD = "加微信领取优惠券，全场五折包邮！"
AD_CONTEXTS = ["今天天气真好。", "这部电影太好看了。", "晚饭吃什么呢？", "我的猫又胖了。", "明天要考试了，好紧张。",
               "刚跑完五公里。", "新买的耳机音质不错。"]
THREAD = [
    {"id": "p1", "parent_id": None, "author": "阿青", "text": "求推荐适合新手的相机，预算三千左右。"},
    {"id": "p2", "parent_id": "p1", "author": "老周", "text": "入门微单就够了，二手的性价比更高。"},
    {"id": "p3", "parent_id": "p2", "author": "阿青", "text": "二手的会不会有问题？怎么挑比较好？"},
    {"id": "p4", "parent_id": "p3", "author": "老周", "text": "看快门次数和外观，最好当面验机。"},
    {"id": "p5", "parent_id": "p1", "author": "小鹿", "text": "回复@阿青:我去年买的那款挺好用的，推荐给你。"},
    {"id": "p6", "parent_id": "p5", "author": "阿青", "text": "能说一下具体型号吗？谢谢！"},
    {"id": "p7", "parent_id": "p404", "author": "路人", "text": "楼上说得对，我也是这么买的。"},
    {"id": "c1", "parent_id": "c2", "author": "甲", "text": "这条回复的上一条是下一条。"},
    {"id": "c2", "parent_id": "c1", "author": "乙", "text": "这是一个循环引用的帖子。"},
]


def lccc_slice(samples: Path) -> tuple[bytes, bytes]:
    data = json.loads((samples / "dialogue/cdial-gpt_lccc/toy_data.json").read_text("utf-8"))
    small = {split: rows[:20] for split, rows in data.items()}
    tsv = (samples / "dialogue/cdial-gpt_lccc/toy_train.txt").read_text("utf-8").splitlines()[:60]
    return ((json.dumps(small, ensure_ascii=False, indent=1) + "\n").encode("utf-8"),
            ("\n".join(tsv) + "\n").encode("utf-8"))


def kdconv_slice(samples: Path) -> bytes:
    data = json.loads((samples / "dialogue/kdconv/film_dev.json").read_text("utf-8"))[:5]
    for dialogue in data:  # keep the turns; the knowledge triples make the file large
        dialogue["messages"] = [{"message": m["message"]} for m in dialogue["messages"]]
    return (json.dumps(data, ensure_ascii=False, indent=1) + "\n").encode("utf-8")


def chatalpaca_slice(samples: Path) -> bytes:
    lines = (samples / "dialogue/flagai_chatalpaca/convo_samples.jsonl").read_text("utf-8").splitlines()[:10]
    return ("\n".join(lines) + "\n").encode("utf-8")


def own_sessions() -> bytes:
    rows = [json.dumps(s, ensure_ascii=False) for s in OWN_SESSIONS]
    rows += [json.dumps({"turns": [context, AD], "lang": "zh"}, ensure_ascii=False) for context in AD_CONTEXTS]
    rows.insert(3, '{"turns": ["这一行不是合法的JSON"')
    return ("\n".join(rows) + "\n").encode("utf-8")


def gz(data: bytes) -> bytes:
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0, filename="") as fh:
        fh.write(data)
    return buffer.getvalue()


def build(samples: Path) -> dict[str, bytes]:
    lccc_json, lccc_tsv = lccc_slice(samples)
    thread = "\n".join(json.dumps(p, ensure_ascii=False) for p in THREAD) + "\n"
    return {
        "lccc_toy_data.json": lccc_json,
        "lccc_toy_train.txt": lccc_tsv,
        "kdconv_film.json": kdconv_slice(samples),
        "chatalpaca.jsonl": chatalpaca_slice(samples),
        "sessions.jsonl.gz": gz(own_sessions()),
        "weibo_thread.jsonl": thread.encode("utf-8"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", default=str(REPO.parent / "shared" / "corpus-samples"))
    parser.add_argument("--output", default=str(REPO / "pipelines" / "data" / "dialogue_sample"))
    args = parser.parse_args(argv)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    for name, data in build(Path(args.samples)).items():
        (out / name).write_bytes(data)
    print(f"wrote {len(build(Path(args.samples)))} files to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
