"""Reader throughput: tokens/s on one core for shards.reader.StreamingShards (shuffle + packing included)
side by side with litdata's StreamingDataset + TokensLoader and a plain `webdataset.WebDataset(urls).decode()`
over the same tokens, in one run.

    .venv/bin/python bench/reader_throughput.py --out bench/results/reader.md

Setup for the litdata row (skipped with a note when the venv is missing): python3 -m venv bench/.venv-litdata &&
bench/.venv-litdata/bin/pip install torch==2.13.0 litdata==0.2.76 (bench/litdata_reader.py converts the same
documents, each followed by eos, with litdata's `optimize` and times its reader in that venv).

Synthetic shards: uint16 token arrays, document lengths log-normal (median ~450 tokens, mean ~700,
clipped to 16..16384), <key>.npy + <key>.json per sample, as the shard writer lays them out, plus the token index
`wudao shards` writes beside each shard (shards/index.py). Files are read from the page cache after a warm-up pass,
so this measures each reader's CPU cost, not the disk. Times are CPU seconds of the process (all its threads),
median of `--repeats`, pinned to one core.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
from shards.index import index_path, write_index  # noqa: E402
from shards.reader import StreamingShards  # noqa: E402

LITDATA_PYTHON = BENCH / ".venv-litdata" / "bin" / "python"
EOS = 50001


def write_shards(root: Path, total_mb: int, shard_mb: int, seed: int = 0) -> list[str]:
    """Write ~total_mb of token shards (skipped when a matching set exists)."""
    root.mkdir(parents=True, exist_ok=True)
    done = root / "manifest.json"
    if done.exists() and json.loads(done.read_text()).get("mb") == [total_mb, shard_mb]:
        urls = [str(root / e["name"]) for e in json.loads(done.read_text())["shards"]]
        for url in urls:
            if not os.path.exists(index_path(url)):
                write_index(url)
        return urls
    rng = np.random.default_rng(seed)
    entries, budget, idx = [], total_mb << 20, 0
    while budget > 0:
        name, size, samples, tokens = f"train-{len(entries):05d}.tar", 0, 0, 0
        with tarfile.open(root / name, "w", format=tarfile.GNU_FORMAT) as tar:
            while size < shard_mb << 20 and budget - size > 0:
                n = int(np.clip(rng.lognormal(np.log(450), 0.9), 16, 16384))
                buf = io.BytesIO()
                np.save(buf, rng.integers(0, 50000, n, dtype=np.uint16))
                meta = json.dumps({"id": f"d{idx}", "source": "bench", "lang": "zh", "tokens": n}).encode()
                for member, data in ((f"d{idx:09d}.npy", buf.getvalue()), (f"d{idx:09d}.json", meta)):
                    info = tarfile.TarInfo(member)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
                size = tar.offset
                samples, tokens, idx = samples + 1, tokens + n, idx + 1
        budget -= size
        entries.append({"name": name, "split": "train", "samples": samples, "tokens": tokens,
                        "bytes": (root / name).stat().st_size, "sha256": ""})
    urls = [str(root / e["name"]) for e in entries]
    for url in urls:
        write_index(url)
    done.write_text(json.dumps({"shards": entries, "dtype": "uint16", "mb": [total_mb, shard_mb]}))
    return urls


def run_streaming(urls, seq_len: int, buffer: int, **options) -> int:
    ds = StreamingShards(urls, seed=0, shuffle_buffer=buffer, seq_len=seq_len, eos_id=EOS, **options)
    tokens = sum(len(s) for s in ds)
    assert ds.stats["indexed_shards"] == len(urls), ds.stats
    return tokens


def run_tar_path(urls, seq_len: int, buffer: int) -> int:
    """StreamingShards without the token index: the index files are moved aside for the run."""
    moved = [(index_path(u), index_path(u) + ".aside") for u in urls]
    for path, aside in moved:
        os.replace(path, aside)
    try:
        ds = StreamingShards(urls, seed=0, shuffle_buffer=buffer, seq_len=seq_len, eos_id=EOS)
        tokens = sum(len(s) for s in ds)
        assert ds.stats["indexed_shards"] == 0
        return tokens
    finally:
        for path, aside in moved:
            os.replace(aside, path)


def run_litdata(root: Path, seq_len: int, repeats: int) -> tuple[float, int, str] | str:
    """(median CPU s, tokens, litdata version) from bench/litdata_reader.py in its venv, or why it did not run."""
    if not LITDATA_PYTHON.exists():
        return f"no {LITDATA_PYTHON.relative_to(BENCH.parent)} (see the setup line in this file's docstring)"
    cmd = [str(LITDATA_PYTHON), str(BENCH / "litdata_reader.py"), "--shards", str(root),
           "--out", str(root.parent / (root.name + "-litdata")), "--seq-len", str(seq_len), "--eos", str(EOS),
           "--repeats", str(repeats)]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=BENCH.parent)
    if done.returncode:
        return f"litdata run failed: {done.stderr.strip()[-500:]}"
    result = json.loads(done.stdout.strip().splitlines()[-1])
    runs = result["runs"]
    return statistics.median(r["cpu_s"] for r in runs), runs[0]["tokens"], result["litdata"]


def run_webdataset(urls) -> int:
    import webdataset as wds

    ds = wds.WebDataset(urls, shardshuffle=False, empty_check=False).decode()
    return sum(len(sample["npy"]) for sample in ds)


def timed(fn, repeats: int) -> tuple[float, int]:
    """(median CPU seconds of this process, tokens) over `repeats` calls of `fn`."""
    times, tokens = [], 0
    for _ in range(repeats):
        t0 = time.process_time()
        tokens = fn()
        times.append(time.process_time() - t0)
    return statistics.median(times), tokens


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=200)
    ap.add_argument("--shard-mb", type=int, default=50)
    ap.add_argument("--dir", default="bench/work/reader_shards")
    ap.add_argument("--seq-len", type=int, default=2048)
    ap.add_argument("--buffer", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    urls = write_shards(Path(args.dir), args.mb, args.shard_mb)
    total_bytes = sum(os.path.getsize(u) for u in urls)
    run_streaming(urls[:1], args.seq_len, args.buffer)  # warm the page cache for the first shard
    for u in urls:
        Path(u).read_bytes()
    readers = [
        ("ours: `StreamingShards`, token index, int64 sequences (the default)",
         lambda: run_streaming(urls, args.seq_len, args.buffer)),
        ("ours: `StreamingShards`, token index, `dtype=\"uint16\"` (litdata's output dtype)",
         lambda: run_streaming(urls, args.seq_len, args.buffer, dtype="uint16")),
        ("ours: `StreamingShards` without the index (tar reader), int64",
         lambda: run_tar_path(urls, args.seq_len, args.buffer)),
        ("`webdataset.WebDataset(urls).decode()` (no shuffle, no packing)", lambda: run_webdataset(urls)),
    ]
    times: dict[str, list[float]] = {label: [] for label, _ in readers}
    tokens: dict[str, int] = {}
    for _ in range(args.repeats):  # rounds, so that drift of the machine hits every reader alike
        for label, fn in readers:
            secs, tokens[label] = timed(fn, 1)
            times[label].append(secs)
    rows = [(label, statistics.median(times[label]), tokens[label]) for label, _ in readers]
    litdata = run_litdata(Path(args.dir), args.seq_len, args.repeats)
    notes = []
    if isinstance(litdata, str):
        notes.append(f"litdata row missing: {litdata}")
        reference = None
    else:
        secs, n, version = litdata
        rows.insert(0, (f"litdata {version} `StreamingDataset(item_loader=TokensLoader(block_size={args.seq_len}),"
                        " shuffle=True)` (reference; uint16 blocks)", secs, n))
        reference = n / secs
    for label, secs, n in rows:
        print(f"{label}: {n / secs / 1e6:.1f} M tokens/s ({secs:.3f} CPU s)", flush=True)
    lines = [
        "# Reader throughput (one core, local shards, page cache warm)", "",
        f"Command: `.venv/bin/python bench/reader_throughput.py --mb {args.mb} --shard-mb {args.shard_mb}"
        f" --seq-len {args.seq_len} --buffer {args.buffer} --repeats {args.repeats}`", "",
        f"{len(urls)} shards, {total_bytes / 2**20:.0f} MiB, uint16 tokens, log-normal doc lengths "
        f"(median ~450 tokens), each document followed by eos; sequences of {args.seq_len} tokens; CPU seconds of "
        f"the process, median of {args.repeats} runs, pinned to one core; ratio = tokens/s over litdata's.", "",
        "| reader | CPU s | tokens delivered | M tokens/s | vs litdata |", "|---|---:|---:|---:|---:|",
    ]
    for label, secs, n in rows:
        ratio = f"{n / secs / reference:.2f}x" if reference else "n/a"
        lines.append(f"| {label} | {secs:.3f} | {n:,} | {n / secs / 1e6:.1f} | {ratio} |")
    lines += [""] + notes
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
