"""The training loop (nanoGPT-shaped): GLM or CogView on our shards, with resume, validation and DDP.

AdamW (weight decay on matrices only), linear warmup then cosine decay to `min_lr_ratio` x lr, gradient clipping,
gradient accumulation, bf16 autocast when the config asks and the device supports it, the MoE balance loss added
with `moe_balance_weight` (Switch, Fedus et al. 2021: 1e-2). Every `eval_every` steps the validation split is read
from its start (the same batches each time) and its mean loss logged.

Checkpoints hold tensors and plain values only (model, optimizer, step, config, and per rank the reader's position
and the random states of torch, CUDA, Python and numpy) and load with `load_checkpoint` (weights only: a file
holding pickled objects is refused with a CheckpointError, as is one that is not a torch checkpoint). Every
`checkpoint_every` steps and at the end, rank 0 writes `ckpt-0000100.pt` (temporary name, then rename), points
`ckpt.pt` at the newest and keeps the newest `keep_checkpoints`. `resume=True` continues from `ckpt.pt` with the
exact next batch on every rank, the optimizer state and the random streams where they were, so dropout and MoE
router jitter draw what an uninterrupted run draws.

Under `torchrun` each rank reads its own part of the shards (the reader's rank split), sits on its own GPU
(`LOCAL_RANK`; gloo on CPU, NCCL on CUDA) and the model is wrapped in DistributedDataParallel. With
`expert_parallel` each rank holds num_experts / world experts of every MoE layer (`train.expert_parallel`: kept out
of DDP, clipped by the whole model's norm, whole in the checkpoint).
"""
from __future__ import annotations

import json
import os
import random
import re
import sys
import time
from contextlib import nullcontext
from typing import Any, Callable

import numpy as np
import torch

from tokenizer.cogview import CaptionMix
from tokenizer.schedule import warmup_cosine
from tokenizer.vq import CheckpointError, load_weights
from train import data, expert_parallel
from train.configs import Config, load_config, with_vocab

CHECKPOINT = "ckpt.pt"
METRICS = "metrics.jsonl"
_STEP_FILE = re.compile(r"ckpt-(\d{7,})\.pt")


def load_checkpoint(path: str, map_location: str = "cpu", need: tuple[str, ...] = ("model", "config")) -> dict:
    """A `ckpt.pt` written by `train`, read weights-only (`tokenizer.vq.load_weights`), holding the keys `need`."""
    state = load_weights(path, map_location)
    missing = [k for k in need if not isinstance(state, dict) or k not in state]
    if missing:
        raise CheckpointError(f"{path}: not a wudao training checkpoint (lacks {missing})")
    return state


def build_model(kind: str, cfg: Config, expert_group=None) -> torch.nn.Module:
    """The model; with `expert_group` (a process group) its MoE layers split their experts over that group."""
    from train.layers import block_mlp

    factory = lambda i: block_mlp(cfg, i, expert_group)  # noqa: E731
    if kind == "glm":
        from train.glm_model import GLMModel

        return GLMModel(cfg, factory)
    if kind == "cogview":
        from train.cogview_model import CogViewModel

        return CogViewModel(cfg, factory)
    raise ValueError(f"unknown model kind {kind!r} (glm or cogview)")


#: dense bf16 tensor-core peak per GPU, FLOP/s, from the vendors' data sheets (SXM parts); MFU is reported only
#: for these (PaLM's model FLOPs utilization, Chowdhery et al. 2022, appendix B)
PEAK_BF16_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12}


def model_flops_per_token(model: torch.nn.Module, cfg: Config) -> float:
    """Training FLOPs per token, PaLM's estimate: 6 x active parameters (forward and backward) + 12 x layers x
    d_model x seq_len for attention. An MoE layer's experts count as top_k experts' parameters (what one token runs
    through; also when this rank holds only E / W experts); embeddings count too, as in nanoGPT's estimate."""
    from train.moe import MoEMLP

    expert = {id(p): m.top_k / m.local_experts for m in model.modules() if isinstance(m, MoEMLP)
              for p in (m.w1, m.b1, m.w2, m.b2)}
    active = sum(p.numel() * expert.get(id(p), 1.0) for p in model.parameters())
    return 6.0 * active + 12.0 * cfg.n_layers * cfg.d_model * cfg.seq_len


def peak_flops(device: str) -> float | None:
    """This GPU's dense bf16 peak from `PEAK_BF16_FLOPS` by its name; None on CPU or for a GPU not listed."""
    if not device.startswith("cuda"):
        return None
    name = torch.cuda.get_device_name(torch.device(device))
    return next((flops for key, flops in PEAK_BF16_FLOPS.items() if key in name), None)


def lr_at(step: int, cfg: Config, total: int) -> float:
    """Linear warmup over `warmup_steps`, then cosine from lr down to lr x min_lr_ratio at `total`
    (`tokenizer.schedule.warmup_cosine`)."""
    return cfg.lr * warmup_cosine(step, cfg.warmup_steps, total - cfg.warmup_steps, cfg.min_lr_ratio)


def make_optimizer(model: torch.nn.Module, cfg: Config) -> torch.optim.AdamW:
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=cfg.betas)


def forward_loss(kind: str, model: torch.nn.Module, batch: dict[str, torch.Tensor], cfg: Config,
                 moe_stats: dict[str, Any] | None = None):
    """(total loss to backpropagate, language-model loss, tokens in the batch); with `moe_stats`, the MoE
    layers' per-expert loads (tokens processed, per layer) and dropped fractions are put there for logging."""
    if kind == "glm":
        out = model(batch["input_ids"], batch["position_ids"], batch["sep"], targets=batch["targets"],
                    loss_mask=batch["loss_mask"])
        tokens = int((batch["input_ids"] != cfg.pad_id).sum())
    else:
        out = model(batch["ids"])
        tokens = int(out.get("n_text", 0)) + int(out.get("n_image", 0))
    if moe_stats is not None:
        layers = [a for a in out.get("aux", []) if "expert_load" in a]
        moe_stats["expert_load"] = [[int(round(float(n))) for n in a["expert_load"]] for a in layers]
        moe_stats["dropped_fraction"] = [round(float(a["dropped_fraction"]), 4) for a in layers]
    loss = out["loss"]
    aux = out.get("aux_loss", 0.0)
    total = loss + cfg.moe_balance_weight * aux if torch.is_tensor(aux) else loss
    return total, loss, tokens


def precision(cfg: Config, device: str) -> torch.dtype | None:
    """The autocast dtype: bf16 when the config asks and the device has it; fp16 when the config asks, or asks for
    bf16 on a GPU without it (then with loss scaling: fp16's narrow range needs it, Micikevicius et al. 2018);
    None for fp32."""
    if cfg.fp16 or (cfg.bf16 and device.startswith("cuda") and not torch.cuda.is_bf16_supported()):
        return torch.float16
    return torch.bfloat16 if cfg.bf16 else None


def _autocast(cfg: Config, device: str):
    dtype = precision(cfg, device)
    if dtype is None:
        return nullcontext()
    return torch.autocast(device_type="cuda" if device.startswith("cuda") else "cpu", dtype=dtype)


@torch.no_grad()
def validate(kind: str, model: torch.nn.Module, shards: str, vocab, masking, cfg: Config, device: str,
             seed: int) -> float | None:
    """Mean loss over the first `eval_batches` batches of the validation split (None when it has none)."""
    try:
        reader = data.make_reader(kind, shards, vocab, cfg.seq_len, split="val", seed=seed, shuffle_buffer=0)
    except (ValueError, FileNotFoundError):
        return None
    model.eval()
    losses = []
    try:
        for i, batch in enumerate(data.batches(kind, reader, masking, cfg.batch_size, cfg.seq_len, seed=seed + 1,
                                               rank=0)):
            if i >= cfg.eval_batches:
                break
            with _autocast(cfg, device):
                _, loss, _ = forward_loss(kind, model, data.to_device(batch, device), cfg)
            losses.append(float(loss))
    except ValueError:  # fewer than one batch of validation data
        pass
    model.train()
    return sum(losses) / len(losses) if losses else None


def _progress_bar(step: int, total: int, loss: float, rate: float, width: int = 30) -> None:
    """One self-overwriting line on a terminal: bar, step, loss, tokens/s."""
    done = int(width * step / max(1, total))
    sys.stderr.write(f"\r[{'#' * done}{'.' * (width - done)}] {step}/{total} loss {loss:.4f} {rate:,.0f} tok/s ")
    sys.stderr.flush()


def _distributed(device: str) -> tuple[int, int, str]:
    """(rank, world size, this rank's device). Under torchrun a CUDA run puts each rank on `cuda:LOCAL_RANK` and
    uses NCCL; a CPU run uses gloo even where CUDA exists."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and device.startswith("cuda"):
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
        torch.cuda.set_device(device)
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return (torch.distributed.get_rank(), world, device) if world > 1 else (0, 1, device)


def rng_state(device: str) -> dict[str, Any]:
    """The random streams this process draws from, as tensors and plain values (weights-only loadable)."""
    kind, key, pos, has_gauss, gauss = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": [kind, torch.from_numpy(key.astype(np.int64)), pos, has_gauss, gauss]}
    if device.startswith("cuda"):
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], device: str) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, key, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, key.numpy().astype(np.uint32), pos, has_gauss, cached))
    if "cuda" in state and device.startswith("cuda"):
        torch.cuda.set_rng_state(state["cuda"], device)


def step_checkpoints(out: str) -> list[tuple[int, str]]:
    """(step, path) of the step-numbered checkpoints in `out`, oldest first."""
    found = [(int(m.group(1)), os.path.join(out, name)) for name in os.listdir(out)
             if (m := _STEP_FILE.fullmatch(name))]
    return sorted(found)


def _write_checkpoint(state: dict[str, Any], out: str, step: int, keep: int) -> str:
    """`ckpt-<step>.pt` (atomically), `ckpt.pt` pointing at it (a hard link, else a copy), older ones pruned."""
    path = os.path.join(out, f"ckpt-{step:07d}.pt")
    torch.save(state, path + ".tmp")
    os.replace(path + ".tmp", path)
    latest = os.path.join(out, CHECKPOINT)
    if os.path.exists(latest + ".tmp"):
        os.remove(latest + ".tmp")
    try:
        os.link(path, latest + ".tmp")
    except OSError:
        import shutil

        shutil.copyfile(path, latest + ".tmp")
    os.replace(latest + ".tmp", latest)
    for _, old in step_checkpoints(out)[:-keep]:
        os.remove(old)
    return path


def _rank_states(state: dict[str, Any], world: int, path: str) -> list[dict[str, Any]]:
    """Every rank's {reader, rng} from a checkpoint; one written before per-rank states holds rank 0's reader."""
    if "ranks" not in state:
        if world != 1 or "reader" not in state:
            raise CheckpointError(f"{path}: holds one rank's reader position, this run has {world} ranks")
        return [{"reader": state["reader"]}]
    if not isinstance(state["ranks"], list) or len(state["ranks"]) != world:
        raise CheckpointError(f"{path}: written by another number of ranks than this run's {world}; resume with "
                              f"the same number of processes")
    return state["ranks"]


def train(kind: str, shards: str, config: str | Config = "tiny", *, steps: int | None = None, out: str = "run",
          resume: bool = False, device: str = "cpu", seed: int = 0, tokenizer_dir: str | None = None,
          log_every: int = 10, checkpoint_every: int | None = None, log: Callable[[str], None] | None = None,
          **overrides) -> dict[str, Any]:
    """Train `kind` ("glm" or "cogview") on the shards; returns a summary (losses, tokens/s, steps).
    `checkpoint_every` (steps; None: the config's) overrides the config's field."""
    rank, world, device = _distributed(device)
    log_is_default = log is None
    if rank != 0:
        log = lambda line: None  # noqa: E731 - only rank 0 reports
    elif log is None:
        log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    vocab = data.load_vocab(shards, tokenizer_dir)
    cfg = config if isinstance(config, Config) else load_config(config, **overrides)
    cfg = with_vocab(cfg, vocab)
    if checkpoint_every is not None:
        cfg = Config(**{**cfg.to_dict(), "checkpoint_every": checkpoint_every})
    total = steps if steps is not None else cfg.max_steps
    torch.manual_seed(seed)   # the same initial weights on every rank (a sharded expert too: train.moe)
    experts_split = cfg.expert_parallel and world > 1 and cfg.num_experts > 0
    model = build_model(kind, cfg, torch.distributed.group.WORLD if experts_split else None).to(device)
    optimizer = make_optimizer(model, cfg)
    half = precision(cfg, device) == torch.float16
    scaler = torch.amp.GradScaler("cuda" if device.startswith("cuda") else "cpu", enabled=half)
    if half and cfg.bf16:
        log("this GPU has no bf16: training in fp16 with loss scaling")
    masking = data.glm_masking(vocab, shards, tokenizer_dir, cfg.glm_objectives) if kind == "glm" else (
        CaptionMix(vocab, cfg.caption_share) if cfg.caption_share > 0 else None)
    reader = data.make_reader(kind, shards, vocab, cfg.seq_len, seed=seed, rank=rank, world_size=world)
    os.makedirs(out, exist_ok=True)
    step, first_batch, pending = 0, 0, []
    ckpt_path = os.path.join(out, CHECKPOINT)
    if resume and os.path.isfile(ckpt_path):
        state = load_checkpoint(ckpt_path, device, need=("model", "optimizer", "step", "batches"))
        mine = _rank_states(state, world, ckpt_path)[rank]
        try:
            state = expert_parallel.shard_state(model, optimizer, state)
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            if half and "scaler" in state:
                scaler.load_state_dict(state["scaler"])
            reader.load_state_dict(data.reader_state_from_tensors(mine["reader"]))
            if "rng" in mine:
                set_rng_state(mine["rng"], device)
            pending = data.reader_state_from_tensors(mine.get("pending", []))
            step, first_batch = int(state["step"]), int(state["batches"])
        except (AttributeError, KeyError, TypeError, ValueError, RuntimeError) as exc:
            why = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
            raise CheckpointError(f"{ckpt_path}: does not fit this run ({why})") from None
        log(f"resumed from {ckpt_path} at step {step}")
    net = model
    if world > 1:
        expert_parallel.ddp_ignore(model)
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[torch.device(device).index] if device.startswith("cuda") else None)
    stream = data.BatchStream(kind, reader, masking, cfg.batch_size, cfg.seq_len, seed=seed, rank=rank,
                              first_batch=first_batch, workers=cfg.mask_workers, pending=pending)
    batches_used = first_batch
    history: list[dict[str, Any]] = []
    metrics_file = open(os.path.join(out, METRICS), "a", encoding="utf-8") if rank == 0 else None
    started, tokens_seen = time.perf_counter(), 0
    flops_per_token, peak = model_flops_per_token(model, cfg), peak_flops(device)
    show_progress = rank == 0 and log_is_default and sys.stderr.isatty()

    def record(entry: dict[str, Any]) -> None:
        history.append(entry)
        if metrics_file:
            metrics_file.write(json.dumps(entry) + "\n")
            metrics_file.flush()

    def global_tokens() -> int:
        """Tokens all ranks have trained on since this process started (every rank calls it at the same steps)."""
        if world == 1:
            return tokens_seen
        counts = torch.tensor([tokens_seen], dtype=torch.int64, device=device if device.startswith("cuda") else "cpu")
        torch.distributed.all_reduce(counts)
        return int(counts.item())

    def utilization(rate: float) -> float | None:
        """Model FLOPs utilization of the whole job at `rate` tokens/s (None off the GPUs in PEAK_BF16_FLOPS)."""
        return rate * flops_per_token / (peak * world) if peak else None

    rate = 0.0

    def save() -> None:
        """Every rank hands its reader position and random state to rank 0, which writes the checkpoint."""
        mine = {"reader": data.reader_state_to_tensors(reader.state_dict()), "rng": rng_state(device),
                "pending": data.reader_state_to_tensors(stream.pending())}
        ranks = [mine]
        if world > 1:
            ranks = [None] * world
            torch.distributed.all_gather_object(ranks, mine)
        whole = expert_parallel.gather_state(model, optimizer) if experts_split else (
            (model.state_dict(), optimizer.state_dict()) if rank == 0 else None)
        if rank == 0:
            state = {"model": whole[0], "optimizer": whole[1], "scaler": scaler.state_dict(),
                     "step": step, "batches": batches_used, "ranks": ranks, "world_size": world,
                     "config": cfg.to_dict(), "kind": kind}
            _write_checkpoint(state, out, step, cfg.keep_checkpoints)
        if world > 1:
            torch.distributed.barrier()  # no rank runs on (or exits) before the checkpoint is complete

    val = validate(kind, model, shards, vocab, masking, cfg, device, seed) if step == 0 else None
    if val is not None:
        record({"step": 0, "val_loss": val})
        log(f"step 0: val loss {val:.4f}")
    model.train()
    while step < total:
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, cfg, total)
        optimizer.zero_grad(set_to_none=True)
        step_loss, moe_stats = 0.0, {}
        for micro in range(cfg.grad_accum):
            batch = data.to_device(next(stream), device)
            batches_used += 1
            sync = nullcontext() if world == 1 or micro == cfg.grad_accum - 1 else net.no_sync()
            with sync, _autocast(cfg, device):
                loss_total, loss, tokens = forward_loss(kind, net, batch, cfg, moe_stats)
                scaler.scale(loss_total / cfg.grad_accum).backward()
            step_loss += float(loss.detach()) / cfg.grad_accum
            tokens_seen += tokens
        if experts_split:
            expert_parallel.average_expert_gradients(model, world)
            if half:
                expert_parallel.share_overflow(model, device)
        scaler.unscale_(optimizer)   # clip the true gradients (a no-op without fp16)
        if cfg.grad_clip > 0 and experts_split:
            expert_parallel.clip_grad_norm(model, cfg.grad_clip, device)
        elif cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        scaler.step(optimizer)       # skipped when fp16 gradients overflowed; the scale then shrinks
        scaler.update()
        step += 1
        entry: dict[str, Any] = {"step": step, "loss": round(step_loss, 6), "lr": optimizer.param_groups[0]["lr"]}
        if moe_stats.get("expert_load") and (step % log_every == 0 or step == total):
            entry.update(moe_stats)   # per MoE layer: tokens each expert processed, share of tokens dropped
        if step % cfg.eval_every == 0 or step == total:
            val = validate(kind, model, shards, vocab, masking, cfg, device, seed)
            if val is not None:
                entry["val_loss"] = val
        if step % log_every == 0 or step == total or step % cfg.eval_every == 0:
            entry["tokens"] = global_tokens()
            rate = entry["tokens"] / max(1e-9, time.perf_counter() - started)
            entry["tokens_per_s"] = round(rate, 1)
            mfu = f", MFU {utilization(rate):.1%}" if peak else ""
            if peak:
                entry["mfu"] = round(utilization(rate), 4)
            val_text = f", val loss {entry['val_loss']:.4f}" if "val_loss" in entry else ""
            if show_progress:
                sys.stderr.write("\r\x1b[K")  # clear the bar before a log line
            log(f"step {step}/{total}: loss {step_loss:.4f}{val_text}, lr {entry['lr']:.2e}, "
                f"{rate:,.0f} tokens/s (all ranks){mfu}")
        record(entry)
        if show_progress:
            _progress_bar(step, total, step_loss, rate)
        if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step < total:
            save()
    if show_progress:
        sys.stderr.write("\n")
    save()
    stream.close()
    rate = global_tokens() / max(1e-9, time.perf_counter() - started)
    if world > 1:
        torch.distributed.barrier()   # no rank tears the group down (rank 0: its store) while another still uses it
        torch.distributed.destroy_process_group()
    if metrics_file:
        metrics_file.close()
    seconds = time.perf_counter() - started
    losses = [e["loss"] for e in history if "loss" in e]
    vals = [e["val_loss"] for e in history if "val_loss" in e]
    return {"kind": kind, "steps": step, "seconds": round(seconds, 2), "tokens_per_s": round(rate, 1),
            "flops_per_token": flops_per_token, "mfu": round(utilization(rate), 4) if peak else None,
            "loss_first": losses[0] if losses else None, "loss_last": losses[-1] if losses else None,
            "val_loss_first": vals[0] if vals else None, "val_loss_last": vals[-1] if vals else None,
            "losses": losses, "checkpoint": ckpt_path, "config": cfg.to_dict()}
