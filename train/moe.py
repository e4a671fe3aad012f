"""Mixture-of-Experts MLP: a top-k gate, capacity-limited dispatch, experts as batched matrix products.

FastMoE's idea (He et al. 2021, laekov/fastmoe): the MLP of a transformer block becomes E expert MLPs and a
gate that sends each token to a few of them. Two gates:

* ``switch`` (Fedus et al. 2021, Switch Transformers): top-1; the expert output is scaled by the router
  probability; balance loss ``E * sum_i f_i * P_i`` (eq. 4-6) with ``f_i`` the fraction of tokens whose
  argmax is expert i and ``P_i`` the mean router probability of expert i. Training noise: multiplicative
  jitter on the *router input*, ``x * U(1 - eps, 1 + eps)`` with ``eps = noise_std`` (the Switch reference
  code's ``jitter_noise``, default 1e-2; 0 for gshard), so the logits move while the experts see the clean ``x``.
* ``gshard`` (Lepikhin et al. 2020, GShard, Algorithm 1): top-2; the two gate values are normalised over
  the chosen pair (``g1 + g2 = 1``); in training the second expert is kept only when ``2 * g2 > U(0, 1)``
  (random routing; a dropped second keeps ``g1`` as it was); balance loss ``E * sum_e c_e * m_e`` with
  ``c_e`` the fraction of tokens whose *first* choice is e and ``m_e`` the mean gate of e (the reference
  code's ``mean(density * density_proxy) * E**2``).

Both losses are 1.0 for a perfectly uniform router; add ``coef * aux["balance_loss"]`` per MoE layer to the
training loss (Switch uses coef 1e-2).

Capacity: each expert takes at most ``C = ceil(capacity_factor * N * top_k / E)`` of the N tokens in the call
(``eval_capacity_factor`` in eval mode). Seats are given first-come: all first choices in token order, then
all second choices in token order (GShard's ``position_in_expert_2`` offset), so a first choice never loses
its seat to a second choice. An assignment past capacity is skipped; a token that no expert processes gets
**zeros** from this layer, so the block's residual connection carries it through unchanged, and it counts in
``dropped_fraction``. Tokens of a [B, T, d] input compete in flattened (row-major) order across the batch.

The router runs in at least float32 (Switch's selective precision). Experts are stacked weights
``w1 [E, d, d_ff]``, ``w2 [E, d_ff, d]``: tokens are gathered into an ``[E, C, d]`` buffer by index and the
experts run as two ``torch.bmm`` calls; no Python loop over tokens or experts. Seats are found by a stable sort of
the assignments by expert, so dispatch needs memory linear in tokens x k (no tokens x experts one-hot).

Expert parallelism (FastMoE's model, He et al. 2021; GShard's all-to-all dispatch): with ``expert_group`` of W
processes each holds E / W experts (``w1 [E/W, d, d_ff]``...). Every rank routes its own tokens with the shared
gate, fills its ``[E, C, d]`` buffer (C from the largest token count in the group, so all buffers match), and one
``all_to_all_single`` sends each expert's rows to the rank that holds it; the experts run on ``[E/W, W*C, d]`` and
a second all-to-all brings the outputs back. Both are autograd-aware, so an expert's gradient sums the
contributions of every rank's tokens; expert parameters carry ``expert_parallel = True`` so that the training
loop keeps them out of the data-parallel all-reduce. Each expert's initial weights come from its own seed (a base
drawn from the global generator, plus its index), so a sharded layer starts as the same layer unsharded.
"""
from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

_ACTIVATIONS = {
    "gelu": F.gelu,
    "gelu_tanh": lambda h: F.gelu(h, approximate="tanh"),   # GLM's gelu_impl
    "relu": F.relu,
}
_TOP_K = {"switch": 1, "gshard": 2}


class _GatherRows(torch.autograd.Function):
    """``out = src[index]`` where index ``len(src)`` gives a zero row; the backward is a gather too:
    ``inverse [R, len(src)]`` lists, per source row, the output rows that copied it (``len(out)`` = none), and
    ``grad_src = sum_r grad_out[inverse[r]]``. Both routing directions are one-to-one (a token holds at most one
    seat per rank), so dispatch and combine need no scatter-add, which is slow on CPU."""

    @staticmethod
    def forward(ctx, src, index, inverse):
        ctx.save_for_backward(inverse)
        return torch.cat([src, src.new_zeros(1, src.shape[1])]).index_select(0, index)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        (inverse,) = ctx.saved_tensors
        padded = torch.cat([grad, grad.new_zeros(1, grad.shape[1])])
        return padded.index_select(0, inverse.reshape(-1)).view(*inverse.shape, -1).sum(0), None, None


class MoEMLP(nn.Module):
    """forward(x [B, T, d] or [N, d]) -> (y like x, aux dict).

    aux: ``balance_loss`` (scalar tensor, differentiable), ``expert_load`` (float [E]: tokens each expert
    processed, after capacity), ``routed_load`` (float [E]: assignments before capacity), ``dropped_fraction``
    (scalar: fraction of tokens no expert processed), ``capacity`` (int C).
    """

    def __init__(self, d_model: int, d_ff: int, num_experts: int, gate: str = "switch", top_k: int | None = None,
                 capacity_factor: float = 1.25, eval_capacity_factor: float = 2.0, noise_std: float | None = None,
                 activation: str = "gelu", dropout: float = 0.0, init_std: float = 0.02, expert_group=None):
        super().__init__()
        if gate not in _TOP_K:
            raise ValueError(f"gate must be one of {sorted(_TOP_K)}, got {gate!r}")
        top_k = _TOP_K[gate] if top_k is None else top_k
        if top_k != _TOP_K[gate]:
            raise ValueError(f"gate {gate!r} routes top_k={_TOP_K[gate]}, got top_k={top_k}")
        for name, v in (("d_model", d_model), ("d_ff", d_ff), ("num_experts", num_experts)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if num_experts < top_k:
            raise ValueError(f"num_experts={num_experts} < top_k={top_k}")
        for name, v in (("capacity_factor", capacity_factor), ("eval_capacity_factor", eval_capacity_factor)):
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a positive finite number, got {v!r}")
        noise_std = (1e-2 if gate == "switch" else 0.0) if noise_std is None else noise_std
        if not (math.isfinite(noise_std) and 0.0 <= noise_std < 1.0):
            raise ValueError(f"noise_std must be in [0, 1), got {noise_std!r}")
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.d_model, self.d_ff, self.num_experts = d_model, d_ff, num_experts
        self.gate_type, self.top_k = gate, top_k
        self.capacity_factor, self.eval_capacity_factor = float(capacity_factor), float(eval_capacity_factor)
        self.noise_std, self.activation = float(noise_std), activation
        self.group = expert_group
        self.world = dist.get_world_size(expert_group) if expert_group is not None else 1
        self.rank = dist.get_rank(expert_group) if expert_group is not None else 0
        if num_experts % self.world:
            raise ValueError(f"num_experts={num_experts} does not split over {self.world} expert-parallel ranks")
        self.local_experts = num_experts // self.world
        self.gate = nn.Linear(d_model, num_experts, bias=False)
        self.w1 = nn.Parameter(torch.empty(self.local_experts, d_model, d_ff))
        self.b1 = nn.Parameter(torch.empty(self.local_experts, 1, d_ff))
        self.w2 = nn.Parameter(torch.empty(self.local_experts, d_ff, d_model))
        self.b2 = nn.Parameter(torch.empty(self.local_experts, 1, d_model))
        if self.world > 1:
            for p in (self.w1, self.b1, self.w2, self.b2):
                p.expert_parallel = True
        self.dropout = nn.Dropout(dropout)
        self.reset_parameters(init_std)

    def expert_slice(self) -> slice:
        """The experts this rank holds, as a slice of all E."""
        return slice(self.rank * self.local_experts, (self.rank + 1) * self.local_experts)

    def reset_parameters(self, std: float = 0.02) -> None:
        """Normal(0, std) weights (GLM/Megatron's init_method_std), zero biases; expert e's weights from the seed
        base + e, so every rank draws the same values for the same expert."""
        nn.init.normal_(self.gate.weight, 0.0, std)
        base = int(torch.randint(0, 2 ** 62, ()))
        with torch.no_grad():
            for local, expert in enumerate(range(self.expert_slice().start, self.expert_slice().stop)):
                generator = torch.Generator().manual_seed(base + expert)
                for w in (self.w1, self.w2):
                    w[local].copy_(torch.randn(w.shape[1:], generator=generator) * std)
        nn.init.zeros_(self.b1)
        nn.init.zeros_(self.b2)

    def _experts(self, buf: torch.Tensor, cap: int) -> torch.Tensor:
        """The experts applied to the [E * C, d] buffer of this rank's tokens -> [E * C, d] outputs."""
        d, local = self.d_model, self.local_experts
        if self.world > 1:   # each expert's rows to the rank that holds it, from every rank: [W, E/W, C, d]
            from torch.distributed.nn.functional import all_to_all_single

            recv = all_to_all_single(torch.empty_like(buf), buf.contiguous(), group=self.group)
            buf = recv.view(self.world, local, cap, d).transpose(0, 1).reshape(local, self.world * cap, d)
        h = torch.baddbmm(self.b1, buf.view(local, -1, d), self.w1)
        h = self.dropout(_ACTIVATIONS[self.activation](h))
        out = torch.baddbmm(self.b2, h, self.w2)
        if self.world > 1:   # and back: rank r gets its tokens' rows of every expert, in expert order
            from torch.distributed.nn.functional import all_to_all_single

            send = out.view(local, self.world, cap, d).transpose(0, 1).reshape(-1, d).contiguous()
            out = all_to_all_single(torch.empty_like(send), send, group=self.group)
        return out.reshape(self.num_experts * cap, d)

    def capacity(self, num_tokens: int) -> int:
        cf = self.capacity_factor if self.training else self.eval_capacity_factor
        return math.ceil(cf * num_tokens * self.top_k / self.num_experts)

    def _route(self, x: torch.Tensor):
        """Router probabilities [N, E], chosen experts [k, N], their weights [k, N], active mask [k, N]."""
        rdtype = torch.promote_types(x.dtype, torch.float32)
        with torch.autocast(device_type=x.device.type, enabled=False):
            xr = x.to(rdtype)
            if self.training and self.noise_std > 0:
                xr = xr * torch.empty_like(xr).uniform_(1.0 - self.noise_std, 1.0 + self.noise_std)
            probs = torch.softmax(F.linear(xr, self.gate.weight.to(rdtype)), dim=-1)
        top_w, top_e = probs.topk(self.top_k, dim=-1)                       # [N, k], sorted descending
        if self.gate_type == "gshard":
            top_w = top_w / top_w.sum(-1, keepdim=True).clamp_min(1e-9)
        active = torch.ones_like(top_e, dtype=torch.bool)
        if self.gate_type == "gshard" and self.training:
            active[:, 1] = 2.0 * top_w[:, 1].detach() > torch.rand_like(top_w[:, 1])
        return probs, top_e.T, top_w.T, active.T

    def forward(self, x: torch.Tensor):
        if x.dim() not in (2, 3) or x.shape[-1] != self.d_model:
            raise ValueError(f"expected [N, {self.d_model}] or [B, T, {self.d_model}], got {tuple(x.shape)}")
        if not x.is_floating_point():
            raise ValueError(f"expected a floating-point input, got {x.dtype}")
        shape, x = x.shape, x.reshape(-1, self.d_model)
        n, e, k = x.shape[0], self.num_experts, self.top_k
        most = n
        if self.world > 1:   # one capacity for the group, so every rank's buffer has the same shape
            count = torch.tensor([n], device=x.device)
            dist.all_reduce(count, op=dist.ReduceOp.MAX, group=self.group)
            most = int(count.item())
        cap = self.capacity(most)
        probs, top_e, top_w, active = self._route(x)

        # Seats: position of each assignment among its expert's, in priority order (all 1st choices, then 2nd):
        # a stable sort by expert keeps that order inside each expert; memory is linear in k * N.
        flat_e, flat_active = top_e.reshape(-1), active.reshape(-1)
        routed = torch.where(flat_active, flat_e, e)                        # inactive assignments sort last
        order = torch.sort(routed, stable=True).indices
        counts = torch.bincount(routed, minlength=e + 1)
        starts = counts.cumsum(0) - counts
        seat = torch.empty_like(order)
        seat[order] = torch.arange(len(order), device=x.device) - starts[routed[order]]
        keep = flat_active & (seat < cap)
        none_slot, none_assign = e * cap, k * n                             # "no row" markers (a zero row)
        assign_slot = torch.where(keep, flat_e * cap + seat, none_slot)     # [k*N] slot of each assignment
        kept = keep.nonzero().squeeze(1)
        slot_assign = torch.full((e * cap,), none_assign, device=x.device).index_put_(
            (assign_slot[kept],), kept)                                     # [E*C] assignment in each slot
        slot_token = torch.where(slot_assign < none_assign, slot_assign % max(n, 1), n)

        buf = _GatherRows.apply(x, slot_token, assign_slot.view(k, n))     # [E*C, d], empty slots zero
        out = self._experts(buf, cap)
        picked = _GatherRows.apply(out, assign_slot, slot_assign.view(1, e * cap))   # [k*N, d], dropped zero
        y = (picked.view(k, n, self.d_model) * top_w.to(out.dtype).unsqueeze(2)).sum(0)

        first = torch.bincount(top_e[0], minlength=e).to(probs.dtype)      # balance loss uses 1st choices
        balance = e * (first / max(n, 1) * probs.mean(0)).sum() if n else probs.new_zeros(())
        processed = keep.view(k, n).any(0)
        aux = {
            "balance_loss": balance,
            "expert_load": torch.bincount(flat_e[keep], minlength=e).float(),
            "routed_load": counts[:e].float(),
            "dropped_fraction": (1.0 - processed.float().mean()) if n else torch.zeros(()),
            "capacity": cap,
        }
        return y.reshape(shape), aux

    def extra_repr(self) -> str:
        return (f"d_model={self.d_model}, d_ff={self.d_ff}, num_experts={self.num_experts}, gate={self.gate_type}, "
                f"top_k={self.top_k}, capacity_factor={self.capacity_factor}, noise_std={self.noise_std}, "
                f"expert_parallel={self.world}")
