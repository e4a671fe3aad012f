"""litdata's side of bench/reader_throughput.py; runs in bench/.venv-litdata (never the project's venv).

    bench/.venv-litdata/bin/python bench/litdata_reader.py --shards DIR --out DIR --seq-len 2048 --eos 50001

Converts the same token documents (each followed by `eos`, in shard order) into litdata's chunk format with
`litdata.optimize(..., item_loader=TokensLoader())`, once (skipped when the converted set exists), then reads
them back with `StreamingDataset(item_loader=TokensLoader(block_size=seq_len), shuffle=True)`: litdata's own
way to stream packed, shuffled token windows. Prints one JSON line: tokens, wall and CPU seconds per repeat.
Pinning to one core is done by the caller (the affinity is inherited).
"""
from __future__ import annotations

import argparse
import io
import json
import shutil
import tarfile
import time
from pathlib import Path

import numpy as np


def documents(job: tuple[str, int]):
    """Each `<key>.npy` of one of our tar shards, followed by eos (tarfile is fine: conversion is not timed)."""
    shard, eos = job
    with tarfile.open(shard) as tar:
        for member in tar:
            if member.name.endswith(".npy"):
                tokens = np.load(io.BytesIO(tar.extractfile(member).read()))
                yield np.append(tokens, np.uint16(eos)).astype(np.uint16)


def convert(shards: list[str], out: Path, eos: int) -> None:
    from litdata import TokensLoader, optimize

    stamp = out / "converted-from.json"
    if stamp.exists() and json.loads(stamp.read_text()) == {"shards": shards, "eos": eos}:
        return
    shutil.rmtree(out, ignore_errors=True)
    optimize(fn=documents, inputs=[(shard, eos) for shard in shards], output_dir=str(out), chunk_bytes="64MB",
             item_loader=TokensLoader(), num_workers=1, reorder_files=False, verbose=False)
    stamp.write_text(json.dumps({"shards": shards, "eos": eos}))


def read_all(out: Path, seq_len: int, seed: int) -> int:
    from litdata import StreamingDataset, TokensLoader

    ds = StreamingDataset(str(out), item_loader=TokensLoader(block_size=seq_len), shuffle=True, seed=seed)
    return sum(len(block) for block in ds)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shards", required=True, help="folder with manifest.json of bench/reader_throughput.py")
    ap.add_argument("--out", required=True)
    ap.add_argument("--seq-len", type=int, default=2048)
    ap.add_argument("--eos", type=int, default=50001)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    root = Path(args.shards)
    shards = [str(root / e["name"]) for e in json.loads((root / "manifest.json").read_text())["shards"]]
    out = Path(args.out).resolve()
    convert(shards, out, args.eos)
    read_all(out, args.seq_len, seed=0)  # warm-up: page cache and litdata's index
    runs = []
    for i in range(args.repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        tokens = read_all(out, args.seq_len, seed=i)
        runs.append({"tokens": tokens, "wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu})
    import litdata

    print(json.dumps({"litdata": litdata.__version__, "runs": runs}))


if __name__ == "__main__":
    main()
