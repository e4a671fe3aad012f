"""Expert parallelism (issue 20, item 7): a MoE layer whose experts are sharded over 2 or 4 CPU processes (gloo,
all-to-all dispatch) gives the outputs, balance losses and gradients of the same layer unsharded in one process,
with every rank routing its own tokens; each rank holds only its share of the experts."""
from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from train.moe import MoEMLP

D, D_FF, TOKENS = 8, 16, 24


def layer(gate: str, experts: int, group=None) -> MoEMLP:
    torch.manual_seed(0)  # the same gate and the same per-expert seeds on every rank and in the reference
    return MoEMLP(D, D_FF, experts, gate=gate, capacity_factor=1.0, noise_std=0.0, expert_group=group)


def rank_inputs(rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(100 + rank)
    return torch.randn(TOKENS, D, generator=g), torch.randn(TOKENS, D, generator=g)


def _worker(rank: int, world: int, gate: str, experts: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        moe = layer(gate, experts, dist.group.WORLD).eval()   # eval: gshard's random routing off
        x, weight = rank_inputs(rank)
        x.requires_grad_(True)
        y, aux = moe(x)
        ((y * weight).sum() + aux["balance_loss"]).backward()
        dist.all_reduce(moe.gate.weight.grad)                   # the replicated router: gradients summed
        torch.save({"y": y.detach(), "x_grad": x.grad, "balance": aux["balance_loss"].detach(),
                    "load": aux["expert_load"], "gate_grad": moe.gate.weight.grad,
                    "w1": moe.w1.detach(), "w1_grad": moe.w1.grad, "b2_grad": moe.b2.grad,
                    "slice": (moe.expert_slice().start, moe.expert_slice().stop),
                    "flags": [getattr(p, "expert_parallel", False) for p in (moe.w1, moe.b1, moe.w2, moe.b2)]},
                   os.path.join(out, f"rank{rank}.pt"))
        dist.barrier()   # every rank done with its collectives before any tears the group (and rank 0 its store) down
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.parametrize("world, gate, experts", [(2, "switch", 4), (4, "gshard", 8), (4, "switch", 4)])
def test_sharded_experts_equal_the_unsharded_layer(tmp_path, world, gate, experts):
    mp.start_processes(_worker, args=(world, gate, experts, _free_port(), str(tmp_path)), nprocs=world,
                       start_method="spawn")
    reference = layer(gate, experts).eval()
    gate_grad = torch.zeros_like(reference.gate.weight)
    for rank in range(world):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        reference.zero_grad()
        x, weight = rank_inputs(rank)
        x.requires_grad_(True)
        y, aux = reference(x)
        ((y * weight).sum() + aux["balance_loss"]).backward()
        gate_grad += reference.gate.weight.grad
        lo, hi = got["slice"]
        assert hi - lo == experts // world and got["flags"] == [True] * 4
        torch.testing.assert_close(got["w1"], reference.w1.detach()[lo:hi], rtol=0, atol=0)   # same init
        torch.testing.assert_close(got["y"], y.detach(), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(got["x_grad"], x.grad, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(got["balance"], aux["balance_loss"].detach())
        torch.testing.assert_close(got["load"], aux["expert_load"])
    # an expert's gradient sums every rank's tokens: compare with the reference summed over the ranks' inputs
    full_w1, full_b2 = torch.zeros_like(reference.w1), torch.zeros_like(reference.b2)
    for rank in range(world):
        reference.zero_grad()
        x, weight = rank_inputs(rank)
        y, aux = reference(x)
        ((y * weight).sum() + aux["balance_loss"]).backward()
        full_w1 += reference.w1.grad
        full_b2 += reference.b2.grad
    for rank in range(world):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        lo, hi = got["slice"]
        torch.testing.assert_close(got["w1_grad"], full_w1[lo:hi], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(got["b2_grad"], full_b2[lo:hi], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(got["gate_grad"], gate_grad, rtol=1e-5, atol=1e-6)


def test_experts_must_split_evenly_and_dispatch_memory_is_linear():
    with pytest.raises(ValueError, match="split"):
        class _Group:  # a stand-in group of 3 for the check that runs before any communication
            pass
        import unittest.mock

        with unittest.mock.patch("torch.distributed.get_world_size", return_value=3), \
                unittest.mock.patch("torch.distributed.get_rank", return_value=0):
            MoEMLP(D, D_FF, 4, expert_group=_Group())
    # 20k tokens x 2 choices over 4096 experts: the old one-hot seat count alone was 160M int64 entries (1.3 GB)
    moe = MoEMLP(4, 4, 4096, gate="gshard").eval()
    import tracemalloc

    tracemalloc.start()
    with torch.no_grad():
        moe(torch.randn(20_000, 4))
    tracemalloc.stop()
    import resource

    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss < 3_000_000   # KiB: well under the one-hot's 1.3 GB
