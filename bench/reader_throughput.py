"""Reader throughput: tokens/s on one core for shards.reader.StreamingShards (shuffle + packing included)
against a plain `webdataset.WebDataset(urls).decode()` pipeline over the same local shards.

    .venv/bin/python bench/reader_throughput.py --mb 200 --out bench/results/reader.md

Synthetic shards: uint16 token arrays, document lengths log-normal (median ~450 tokens, mean ~700,
clipped to 16..16384), <key>.npy + <key>.json per sample, as the shard writer lays them out. Files are
read from the page cache after a warm-up pass, so this measures the reader's CPU cost, not the disk.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import tarfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from shards.reader import StreamingShards  # noqa: E402


def write_shards(root: Path, total_mb: int, shard_mb: int, seed: int = 0) -> list[str]:
    """Write ~total_mb of token shards (skipped when a matching set exists)."""
    root.mkdir(parents=True, exist_ok=True)
    done = root / "manifest.json"
    if done.exists() and json.loads(done.read_text()).get("mb") == [total_mb, shard_mb]:
        return [str(root / e["name"]) for e in json.loads(done.read_text())["shards"]]
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
    done.write_text(json.dumps({"shards": entries, "dtype": "uint16", "mb": [total_mb, shard_mb]}))
    return [str(root / e["name"]) for e in entries]


def run_streaming(urls, seq_len: int, buffer: int) -> int:
    ds = StreamingShards(urls, seed=0, shuffle_buffer=buffer, seq_len=seq_len, eos_id=50001)
    return sum(len(s) for s in ds)


def run_webdataset(urls) -> int:
    import webdataset as wds

    ds = wds.WebDataset(urls, shardshuffle=False, empty_check=False).decode()
    return sum(len(sample["npy"]) for sample in ds)


def timed(fn, repeats: int) -> tuple[float, int]:
    times, tokens = [], 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        tokens = fn()
        times.append(time.perf_counter() - t0)
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
    rows = []
    for label, fn in (("StreamingShards (shuffle buffer %d, pack to %d, eos)" % (args.buffer, args.seq_len),
                       lambda: run_streaming(urls, args.seq_len, args.buffer)),
                      ("webdataset.WebDataset(urls).decode() (no shuffle, no packing)",
                       lambda: run_webdataset(urls))):
        secs, tokens = timed(fn, args.repeats)
        rows.append((label, secs, tokens))
        print(f"{label}: {tokens / secs / 1e6:.1f} M tokens/s ({secs:.2f} s)", flush=True)
    base = rows[1][2] / rows[1][1]
    lines = [
        "# Reader throughput (one core, local shards, page cache warm)", "",
        f"Command: `.venv/bin/python bench/reader_throughput.py --mb {args.mb} --shard-mb {args.shard_mb}"
        f" --seq-len {args.seq_len} --buffer {args.buffer}`", "",
        f"{len(urls)} shards, {total_bytes / 2**20:.0f} MiB, uint16 tokens, log-normal doc lengths "
        f"(median ~450 tokens); median of {args.repeats} runs, pinned to one core.", "",
        "| reader | seconds | tokens delivered | M tokens/s | vs webdataset |", "|---|---|---|---|---|",
    ]
    for label, secs, tokens in rows:
        lines.append(f"| {label} | {secs:.2f} | {tokens:,} | {tokens / secs / 1e6:.1f} | "
                     f"{tokens / secs / base:.2f}x |")
    lines += ["", "Goal: >= 20 M tokens/s per core for StreamingShards, packing included."]
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
