#!/usr/bin/env python
"""How strict the dialogue cleaning is on real clean dialogue, and whether planted noise still goes.

    .venv/bin/python bench/dialogue_quality.py        # writes bench/results/dialogue_quality.md, about 1 min

Inputs: every session of the real dialogue samples (`../shared/corpus-samples/dialogue`: KdConv film and music
dev, the LCCC toy splits, ChatAlpaca) and the held-out KdConv splits in `bench/data/dialogue` (travel dev and test,
film and music test; sources in its SOURCES.md), read with the pipeline's own reader and written as JSONL with
an id per session; plus planted noise: KdConv travel sessions with one noise turn each (an ad with a link after
8 different contexts, a phone number, a Weibo repost chain, a repeated spam reply, a reply copying its context,
a word repeated ten times).

One `wudao dialogue` run (default recipe, in-process) over the real sessions, another over the planted ones (so
that dedup does not meet a planted session's clean original); each input session is then
- whole: one output session, its turns unchanged (`unchanged`) or with some turn edited in place (a URL, name or
  number erased, a repeat cut: `edited`);
- split: one or more pieces (`meta.fragment_of`), noise or a window boundary between them;
- dropped by cleaning: no output, nothing of 2+ good turns left;
- duplicate: no output, dropped by the exact or MinHash dedup stage as a (near-)copy of another session.
Per rule, the sessions each per-session rule touched come from running the recipe's rule steps on every session
(`cleaners.runner.StepRunner`); the corpus-wide stages' counts come from the run's stats.json.
"""
from __future__ import annotations

import argparse
import gzip
import re
import json
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))

from cleaners.dialogue.records import Session  # noqa: E402
from cleaners.dialogue.rules import SessionCleaner  # noqa: E402
from cleaners.runner import StepRunner  # noqa: E402
from pipelines.readers.dialogue import iter_dialogue_file  # noqa: E402
from pipelines.run import run_dialogue  # noqa: E402

RESULTS = BENCH / "results" / "dialogue_quality.md"
AD = "全场五折包邮，点击 http://shop.example.com/sale 抢购"
NOISE = {  # kind -> (the planted turn, given the turn before it; text that must not survive)
    "ad with a link, 8 contexts": (lambda prev: AD, "五折包邮"),
    "phone number": (lambda prev: "有事打我电话13812345678，随时找我", "13812345678"),
    "repost chain": (lambda prev: "说得对//@路人甲:转发一下 //@路人乙: 原文在这里", "路人甲"),
    "repeated spam reply, 8 contexts": (lambda prev: "求关注求互粉，私信我有惊喜", "求互粉"),
    "reply copies its context": (lambda prev: prev, None),
    "word repeated 10 times": (lambda prev: "好" * 10 + "，就这么定了", "好" * 4),
}
PLANTED_PER_KIND = 8


def sample_sets(samples: Path, held_out: Path) -> dict[str, list[Path]]:
    dialogue = samples / "dialogue"
    return {
        "KdConv film + music dev (shared)": sorted((dialogue / "kdconv").glob("*.json")),
        "KdConv travel dev + test (held out)": sorted(held_out.glob("kdconv_travel_*.json.gz")),
        "KdConv film + music test (held out)": sorted(held_out.glob("kdconv_film_test.json.gz"))
        + sorted(held_out.glob("kdconv_music_test.json.gz")),
        "LCCC toy (Weibo, already LCCC-cleaned)": sorted((dialogue / "cdial-gpt_lccc").iterdir()),
        "ChatAlpaca (English, synthetic)": sorted((dialogue / "flagai_chatalpaca").glob("*.jsonl")),
    }


def read_sessions(paths: list[Path]) -> list[Session]:
    sessions = []
    for path in paths:
        with open(path, "rb") as stream:
            sessions += [item for item in iter_dialogue_file(stream, str(path)) if isinstance(item, Session)]
    return sessions


def planted(clean: list[Session]) -> tuple[list[tuple[str, Session, str | None]], int]:
    """(kind, session with one noise turn inserted, text that must not survive) for PLANTED_PER_KIND sessions per
    kind, each after a different context; and the number of sessions used."""
    cases, used = [], 0
    for kind, (make, banned) in NOISE.items():
        for n in range(PLANTED_PER_KIND):
            base = clean[used]
            used += 1
            at = 1 + n % (len(base.turns) - 1)
            noise = make(base.turns[at - 1])
            turns = [*base.turns[:at], noise, *base.turns[at:]]
            cases.append((kind, Session(turns=turns, lang="zh"), banned if banned else noise))
    return cases, used


def write_jsonl(path: Path, rows: list[dict]) -> None:
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def read_corpus(folder: Path) -> list[dict]:
    rows = []
    for path in sorted(folder.glob("part-*.jsonl.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            rows += [json.loads(line) for line in fh if line.strip()]
    return rows


_INPUT_KEY = re.compile(r"/(set\d+|planted)\.jsonl\.gz#(\d+)")
DEDUP_STAGES = ("exact_dedup", "minhash_dedup")


def outcome(turns: list[str], outputs: list[dict], duplicate: bool) -> str:
    if not outputs:
        return "duplicate" if duplicate else "dropped"
    if any("fragment_of" in (o.get("meta") or {}) for o in outputs):
        return "split"
    return "unchanged" if outputs[0]["turns"] == turns else "edited"


def run_pipeline(folder: Path, files: dict[str, list[dict]]) -> tuple[dict, dict[str, list[dict]], set[str], float]:
    """Write `files` (name -> rows with an `id`) as JSONL.gz into `folder`, run `wudao dialogue` on them: (stats,
    output records by input id, input ids dropped by a dedup stage, CPU seconds)."""
    ids = {}
    for name, rows in files.items():
        write_jsonl(folder / f"{name}.jsonl.gz", rows)
        ids.update({(name, str(line)): row["id"] for line, row in enumerate(rows, 1)})
    started = time.process_time()
    stats = run_dialogue([str(folder / f"{name}.jsonl.gz") for name in files], str(folder / "out"), None, [])
    cpu = time.process_time() - started
    by_source: dict[str, list[dict]] = defaultdict(list)
    for record in read_corpus(folder / "out" / "corpus"):
        by_source[(record.get("meta") or {}).get("source_id", "")].append(record)
    duplicates = set()
    for row in read_corpus(folder / "out" / "rejects"):
        match = _INPUT_KEY.search(row.get("key", ""))
        if row.get("stage") in DEDUP_STAGES and match:
            duplicates.add(ids[match.group(1), match.group(2)])
    return stats, by_source, duplicates, cpu


def noise_removed(case: tuple[str, Session, str], outputs: list[dict]) -> bool:
    """Whether the planted noise is gone: its banned text is in no output turn, and for a copied reply no output
    holds two equal turns in a row."""
    kind, _, banned = case
    if kind == "reply copies its context":
        return not any(a == b for o in outputs for a, b in zip(o["turns"], o["turns"][1:]))
    return not any(banned in turn for o in outputs for turn in o["turns"])


def rule_sessions(sessions: list[Session]) -> Counter:
    """Sessions each per-session rule touched (utt-edited:* / utt-dropped:* / windows fired at least once)."""
    runner = StepRunner(SessionCleaner().steps())
    touched: Counter = Counter()
    for session in sessions:
        events = runner.run(session).events
        touched.update({detail for (_, kind, detail), n in events.items() if kind == "count" and n
                        and (detail.startswith(("utt-edited:", "utt-dropped:")) or detail == "windows")})
    return touched


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=Path, default=REPO.parent / "shared" / "corpus-samples")
    parser.add_argument("--held-out", type=Path, default=BENCH / "data" / "dialogue")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    sets = {name: read_sessions(paths) for name, paths in sample_sets(args.samples, args.held_out).items() if paths}
    travel = [s for s in sets["KdConv travel dev + test (held out)"] if len(s.turns) >= 4]
    cases, _ = planted(travel)
    inputs: dict[str, tuple[str, list[str]]] = {}
    files: dict[str, list[dict]] = {}
    for number, (name, sessions) in enumerate(sets.items()):
        files[f"set{number}"] = rows = []
        for i, session in enumerate(sessions):
            sid = f"s{number}-{i}"
            inputs[sid] = (name, list(session.turns))
            rows.append({"id": sid, "turns": session.turns, **({"lang": session.lang} if session.lang else {})})
    with tempfile.TemporaryDirectory() as tmp:
        stats, by_source, duplicates, cpu = run_pipeline(Path(tmp), files)
    with tempfile.TemporaryDirectory() as tmp:
        planted_rows = [{"id": f"p-{i}", "turns": s.turns, "lang": "zh"} for i, (_, s, _) in enumerate(cases)]
        _, planted_out, _, _ = run_pipeline(Path(tmp), {"planted": planted_rows})

    lines = ["# Dialogue cleaning on real clean dialogue, and planted noise", "", "```",
             ".venv/bin/python bench/dialogue_quality.py", "```", "",
             f"One `wudao dialogue` run, default recipe, in-process ({cpu:.0f} s CPU). *Whole*: the session comes out "
             "in one piece, unchanged or edited in place (see the script's docstring).", "",
             "| sessions | n | **whole** | unchanged | edited | split | dropped by cleaning | duplicate |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, sessions in sets.items():
        tally = Counter(outcome(turns, by_source.get(sid, []), sid in duplicates)
                        for sid, (set_name, turns) in inputs.items() if set_name == name)
        n = sum(tally.values())
        lines.append(f"| {name} | {n} | **{(tally['unchanged'] + tally['edited']) / n:.1%}** | "
                     f"{tally['unchanged'] / n:.1%} | {tally['edited'] / n:.1%} | {tally['split'] / n:.1%} | "
                     f"{tally['dropped'] / n:.1%} | {tally['duplicate'] / n:.1%} |")

    lines += ["", "Planted noise (each kind in 8 KdConv travel sessions, after 8 different contexts; its own run): "
              "the noise must be gone from every output.", "",
              "| noise | planted | removed | turns out (clean turns in) |", "|---|---:|---:|---:|"]
    for kind in NOISE:
        idx = [i for i, (k, _, _) in enumerate(cases) if k == kind]
        removed = sum(noise_removed(cases[i], planted_out.get(f"p-{i}", [])) for i in idx)
        kept_turns = sum(len(o["turns"]) for i in idx for o in planted_out.get(f"p-{i}", []))
        clean_turns = sum(len(cases[i][1].turns) - 1 for i in idx)
        lines.append(f"| {kind} | {len(idx)} | {removed} | {kept_turns} / {clean_turns} |")

    lines += ["", "Sessions each per-session rule touched (`cleaners/dialogue/rules.py`; a session can count under "
              "several rules):", ""]
    names = list(sets)
    header = "| rule | " + " | ".join(names) + " |"
    lines += [header, "|---|" + "---:|" * len(names)]
    touched = {name: rule_sessions(sessions) for name, sessions in sets.items()}
    for rule in sorted(set().union(*touched.values())):
        lines.append(f"| {rule} | " + " | ".join(str(touched[name][rule]) for name in names) + " |")

    lines += ["", "Corpus-wide stages in the run over the real sessions:", "",
              "| stage | in | created | out | dropped | replies removed / drop reasons |",
              "|---|---:|---:|---:|---:|---|"]
    for stage in stats["stages"]:
        if stage["stage"] in ("ad_replies", "generic_replies", "dialogue_quality", "exact_dedup", "minhash_dedup"):
            counts = stage.get("counts") or {}
            detail = ", ".join([f"replies-removed {counts['replies-removed']}"] if "replies-removed" in counts else []
                               + [f"{r} {n}" for r, n in stage["dropped_by_reason"].items()])
            lines.append(f"| {stage['stage']} | {stage['in']} | {stage.get('created', 0)} | {stage['out']} | "
                         f"{stage['dropped']} | {detail} |")
    scores = stats.get("histograms", {}).get("write", {}).get("score:dialogue_quality", {})
    if scores:
        lines += ["", "Quality scores of the kept sessions (`scores.dialogue_quality`): "
                  + ", ".join(f"{bucket}: {n}" for bucket, n in scores.items())]
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, "utf-8")


if __name__ == "__main__":
    main()
