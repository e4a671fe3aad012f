"""Expert parallelism: memory per rank and tokens/s of a MoE layer trained on 4 processes with its experts split
over them (`MoEMLP(expert_group=...)`, all-to-all dispatch) against the same layer replicated on every rank with its
expert gradients all-reduced, which is what DDP does without expert parallelism (the reference, same run).

    .venv/bin/python bench/moe_parallel.py      # writes bench/results/moe_parallel.md, ~2 min on 2 cores

Each rank: gloo on CPU, one thread, its own [batch, seq, d_model] tokens; a training step is forward, loss
y.square().mean() + 1e-2 * balance loss, backward, the reference's all-reduce of the expert gradients (or nothing:
the all-to-all backward already summed them), AdamW step. Memory per rank: the expert state this rank holds
(weights, gradients, two Adam moments; exact) and the peak RSS of the rank's process (VmHWM; it includes PyTorch
itself, about the same in both). On 2 cores the 4 ranks share the CPUs, so tokens/s compares the two set-ups with
each other, not with a machine with a core per rank.
"""
from __future__ import annotations

import argparse
import os
import platform
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from train.moe import MoEMLP  # noqa: E402


def _peak_rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024


def _rank(rank: int, world: int, port: int, experts: int, split: bool, args, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        layer = MoEMLP(args.d_model, 4 * args.d_model, experts, expert_group=dist.group.WORLD if split else None)
        optimizer = torch.optim.AdamW(layer.parameters(), lr=1e-4)
        x = torch.randn(args.batch, args.seq, args.d_model, generator=torch.Generator().manual_seed(rank))
        expert_params = [layer.w1, layer.b1, layer.w2, layer.b2]
        times = []
        for i in range(args.warmup + args.steps):
            dist.barrier()
            start = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            y, aux = layer(x)
            (y.square().mean() + 1e-2 * aux["balance_loss"]).backward()
            for p in ([layer.gate.weight] + ([] if split else expert_params)):   # DDP's all-reduce
                dist.all_reduce(p.grad)
                p.grad.div_(world)
            optimizer.step()
            dist.barrier()
            if i >= args.warmup:
                times.append(time.perf_counter() - start)
        state_bytes = sum(4 * p.numel() * p.element_size() for p in expert_params)   # weight, grad, 2 moments
        torch.save({"seconds": statistics.median(times), "expert_state_mb": state_bytes / 2**20,
                    "rss_mb": _peak_rss_mb()}, os.path.join(out, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(experts: int, split: bool, args) -> dict:
    with tempfile.TemporaryDirectory() as out:
        mp.start_processes(_rank, args=(args.world, _free_port(), experts, split, args, out), nprocs=args.world,
                           start_method="spawn")
        ranks = [torch.load(os.path.join(out, f"rank{r}.pt"), weights_only=True) for r in range(args.world)]
    seconds = max(r["seconds"] for r in ranks)
    return {"tokens_per_s": args.world * args.batch * args.seq / seconds,
            "expert_state_mb": max(r["expert_state_mb"] for r in ranks), "rss_mb": max(r["rss_mb"] for r in ranks)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--experts", default="16,64,256")
    ap.add_argument("--world", type=int, default=4)
    ap.add_argument("--d-model", type=int, default=128)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--out", default="bench/results/moe_parallel.md")
    args = ap.parse_args()
    rows = []
    for experts in (int(e) for e in args.experts.split(",")):
        replicated, split = run(experts, False, args), run(experts, True, args)
        rows.append((experts, replicated, split))
        print(experts, replicated, split, flush=True)
    lines = [
        "# Expert parallelism: MoE layer on 4 processes, experts split vs replicated",
        "",
        f"Machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, Python "
        f"{platform.python_version()}, torch {torch.__version__}. {args.world} processes (gloo), switch gate, "
        f"d_model {args.d_model}, d_ff {4 * args.d_model}, {args.batch}x{args.seq} tokens per rank per step, median "
        f"of {args.steps} steps after {args.warmup}. Reference: the same layer replicated on every rank, expert "
        "gradients all-reduced (DDP without expert parallelism).",
        "",
        "| experts | expert state per rank MB (replicated / split) | ratio | peak RSS per rank MB (replicated / split) "
        "| ratio | tokens/s, all ranks (replicated / split) | ratio |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for experts, rep, spl in rows:
        lines.append(
            f"| {experts} | {rep['expert_state_mb']:.1f} / {spl['expert_state_mb']:.1f} "
            f"| {spl['expert_state_mb'] / rep['expert_state_mb']:.2f}x | {rep['rss_mb']:.0f} / {spl['rss_mb']:.0f} "
            f"| {spl['rss_mb'] / rep['rss_mb']:.2f}x | {rep['tokens_per_s']:,.0f} / {spl['tokens_per_s']:,.0f} "
            f"| {spl['tokens_per_s'] / rep['tokens_per_s']:.2f}x |")
    lines += ["", "Rerun:", "", "```", "python bench/moe_parallel.py", "```", ""]
    Path(args.out).write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
