"""The training loop's side of expert parallelism (FastMoE, He et al. 2021): what changes when every rank holds only
E / W of each MoE layer's experts (`train.moe.MoEMLP` with an ``expert_group``).

* **Gradients**: DDP must not all-reduce the experts (each rank's are different tensors), so they are left out of
  it (`ddp_ignore`). The all-to-all backward already sums every rank's contribution into an expert's gradient;
  `average_expert_gradients` divides by W so it is the mean DDP gives the replicated parameters.
* **Clipping**: the norm of the whole model's gradient is the replicated part's norm (equal on every rank) and the
  experts' squared norms summed over the ranks (`clip_grad_norm`).
* **fp16 loss scaling**: a step is skipped on every rank when any rank's expert gradients overflowed
  (`share_overflow`), so the replicated parameters and the scale stay equal on all ranks.
* **Checkpoints** hold the whole model and optimizer state, as a run without expert parallelism writes them:
  `gather_state` assembles each expert tensor on rank 0 (concatenated over ranks in expert order), `shard_state`
  takes this rank's experts from a loaded checkpoint. A checkpoint therefore loads into one process
  (`wudao sample`, a replicated run) and into any expert-parallel run whose W divides E.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

from train.moe import MoEMLP


def sharded_layers(model: torch.nn.Module) -> list[tuple[str, MoEMLP]]:
    """(qualified name, layer) of the MoE layers whose experts are split over more than one rank."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, MoEMLP) and m.world > 1]


def _expert_names(model: torch.nn.Module) -> dict[str, tuple[torch.nn.Parameter, MoEMLP]]:
    return {f"{name}.{attr}": (getattr(m, attr), m) for name, m in sharded_layers(model)
            for attr in ("w1", "b1", "w2", "b2")}


def ddp_ignore(model: torch.nn.Module) -> None:
    """Keep the sharded experts out of DDP's broadcast at start-up and its gradient all-reduce."""
    names = list(_expert_names(model))
    if names:
        torch.nn.parallel.DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(model, names)


def average_expert_gradients(model: torch.nn.Module, world: int) -> None:
    for p, _ in _expert_names(model).values():
        if p.grad is not None:
            p.grad.div_(world)


def share_overflow(model: torch.nn.Module, device: str) -> None:
    """Before `GradScaler.unscale_`: when any rank's expert gradients hold inf or NaN, put an inf into this rank's
    too, so every rank's scaler skips the step together."""
    grads = [p.grad for p, _ in _expert_names(model).values() if p.grad is not None]
    if not grads:
        return
    bad = torch.tensor([float(not all(bool(torch.isfinite(g).all()) for g in grads))], device=device)
    dist.all_reduce(bad, op=dist.ReduceOp.MAX)
    if bad.item():
        grads[0].view(-1)[0] = float("inf")


def clip_grad_norm(model: torch.nn.Module, max_norm: float, device: str) -> float:
    """Scale all gradients so the norm over the whole (unsharded) model is at most `max_norm`; returns that norm."""
    experts = {id(p) for p, _ in _expert_names(model).values()}
    with_grad = [p for p in model.parameters() if p.grad is not None]

    def square(params: list[torch.Tensor]) -> torch.Tensor:
        return sum((p.grad.detach().float().pow(2).sum() for p in params), torch.zeros((), device=device))

    expert_sq = square([p for p in with_grad if id(p) in experts]).reshape(1)
    dist.all_reduce(expert_sq)
    total = (square([p for p in with_grad if id(p) not in experts]) + expert_sq[0]).sqrt()
    scale = (max_norm / (total + 1e-6)).clamp(max=1.0)
    for p in with_grad:
        p.grad.mul_(scale.to(p.grad.dtype))
    return float(total)


def _gather(t: torch.Tensor, group_world: int) -> torch.Tensor | None:
    """This tensor from every rank, concatenated along dim 0 on rank 0 (None elsewhere)."""
    parts = [torch.empty_like(t) for _ in range(group_world)] if dist.get_rank() == 0 else None
    dist.gather(t.contiguous(), parts, dst=0)
    return torch.cat(parts) if parts is not None else None


def _optimizer_index(optimizer: torch.optim.Optimizer) -> dict[int, int]:
    """id(param) -> its index in `optimizer.state_dict()["state"]`."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    return {id(p): i for i, p in enumerate(params)}


def gather_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> tuple[dict, dict] | None:
    """(model state dict, optimizer state dict) with whole expert tensors, on rank 0; None on the other ranks.
    Every rank must call it (it gathers)."""
    model_state, optim_state = model.state_dict(), optimizer.state_dict()
    optim_state["state"] = {k: dict(v) for k, v in optim_state["state"].items()}   # not the optimizer's own dicts
    index = _optimizer_index(optimizer)
    for name, (p, layer) in _expert_names(model).items():
        model_state[name] = _gather(p.detach(), layer.world)
        moments = optim_state["state"].get(index[id(p)], {})
        for key, value in moments.items():
            if torch.is_tensor(value) and value.shape == p.shape:
                moments[key] = _gather(value, layer.world)
    return (model_state, optim_state) if dist.get_rank() == 0 else None


def shard_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> dict[str, Any]:
    """A copy of a loaded checkpoint whose expert tensors (model and optimizer moments) are this rank's slices."""
    experts = _expert_names(model)
    if not experts:
        return state
    model_state, optim_state = dict(state["model"]), dict(state["optimizer"])
    optim_state["state"] = {k: dict(v) for k, v in optim_state["state"].items()}
    index = _optimizer_index(optimizer)
    for name, (p, layer) in experts.items():
        full = model_state[name]
        if full.shape[0] != layer.num_experts:
            raise ValueError(f"{name} holds {full.shape[0]} experts, this model {layer.num_experts}")
        model_state[name] = full[layer.expert_slice()]
        for key, value in optim_state["state"].get(index[id(p)], {}).items():
            if torch.is_tensor(value) and value.dim() and value.shape[0] == layer.num_experts:
                optim_state["state"][index[id(p)]][key] = value[layer.expert_slice()]
    return {**state, "model": model_state, "optimizer": optim_state}
