"""The training loop (nanoGPT-shaped): GLM or CogView on our shards, with resume, validation and DDP.

AdamW (weight decay on matrices only), linear warmup then cosine decay to `min_lr_ratio` x lr, gradient clipping,
gradient accumulation, bf16 autocast when the config asks and the device supports it, the MoE balance loss added
with `moe_balance_weight` (Switch, Fedus et al. 2021: 1e-2). Every `eval_every` steps the validation split is read
from its start (the same batches each time) and its mean loss logged. Checkpoints (`ckpt.pt`) hold tensors and
plain values only (model, optimizer, step, reader position, config) and load with `load_checkpoint` (weights only:
a file holding pickled objects is refused with a CheckpointError, as is one that is not a torch checkpoint);
`resume=True` continues with the exact next batch and optimizer state. Under `torchrun` each rank reads its own
part of the shards (the reader's rank split) and the model is wrapped in DistributedDataParallel.
"""
from __future__ import annotations

import json
import os
import sys
import time
from contextlib import nullcontext
from typing import Any, Callable

import torch

from tokenizer.schedule import warmup_cosine
from tokenizer.vq import CheckpointError, load_weights
from train import data
from train.configs import Config, load_config, with_vocab

CHECKPOINT = "ckpt.pt"
METRICS = "metrics.jsonl"


def load_checkpoint(path: str, map_location: str = "cpu", need: tuple[str, ...] = ("model", "config")) -> dict:
    """A `ckpt.pt` written by `train`, read weights-only (`tokenizer.vq.load_weights`), holding the keys `need`."""
    state = load_weights(path, map_location)
    missing = [k for k in need if not isinstance(state, dict) or k not in state]
    if missing:
        raise CheckpointError(f"{path}: not a wudao training checkpoint (lacks {missing})")
    return state


def build_model(kind: str, cfg: Config) -> torch.nn.Module:
    if kind == "glm":
        from train.glm_model import GLMModel

        return GLMModel(cfg)
    if kind == "cogview":
        from train.cogview_model import CogViewModel

        return CogViewModel(cfg)
    raise ValueError(f"unknown model kind {kind!r} (glm or cogview)")


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


def _autocast(cfg: Config, device: str):
    device_type = "cuda" if device.startswith("cuda") else "cpu"
    if cfg.bf16 and (device_type == "cpu" or torch.cuda.is_bf16_supported()):
        return torch.autocast(device_type=device_type, dtype=torch.bfloat16)
    return nullcontext()


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


def _distributed() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (torch.distributed.get_rank(), world) if world > 1 else (0, 1)


def train(kind: str, shards: str, config: str | Config = "tiny", *, steps: int | None = None, out: str = "run",
          resume: bool = False, device: str = "cpu", seed: int = 0, tokenizer_dir: str | None = None,
          log_every: int = 10, checkpoint_every: int | None = None, log: Callable[[str], None] | None = None,
          **overrides) -> dict[str, Any]:
    """Train `kind` ("glm" or "cogview") on the shards; returns a summary (losses, tokens/s, steps)."""
    rank, world = _distributed()
    log_is_default = log is None
    if rank != 0:
        log = lambda line: None  # noqa: E731 - only rank 0 reports
    elif log is None:
        log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    vocab = data.load_vocab(shards, tokenizer_dir)
    cfg = config if isinstance(config, Config) else load_config(config, **overrides)
    cfg = with_vocab(cfg, vocab)
    total = steps if steps is not None else cfg.max_steps
    torch.manual_seed(seed)
    model = build_model(kind, cfg).to(device)
    optimizer = make_optimizer(model, cfg)
    masking = data.glm_masking(vocab, shards, tokenizer_dir, cfg.glm_objectives) if kind == "glm" else None
    reader = data.make_reader(kind, shards, vocab, cfg.seq_len, seed=seed, rank=rank, world_size=world)
    os.makedirs(out, exist_ok=True)
    step, first_batch = 0, 0
    ckpt_path = os.path.join(out, CHECKPOINT)
    if resume and os.path.isfile(ckpt_path):
        state = load_checkpoint(ckpt_path, device, need=("model", "optimizer", "reader", "step", "batches"))
        try:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            reader.load_state_dict(data.reader_state_from_tensors(state["reader"]))
            step, first_batch = int(state["step"]), int(state["batches"])
        except (AttributeError, KeyError, TypeError, ValueError, RuntimeError) as exc:
            why = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
            raise CheckpointError(f"{ckpt_path}: does not fit this run ({why})") from None
        log(f"resumed from {ckpt_path} at step {step}")
    net = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    stream = data.batches(kind, reader, masking, cfg.batch_size, cfg.seq_len, seed=seed, rank=rank,
                          first_batch=first_batch)
    batches_used = first_batch
    history: list[dict[str, Any]] = []
    metrics_file = open(os.path.join(out, METRICS), "a", encoding="utf-8") if rank == 0 else None
    started, tokens_seen = time.perf_counter(), 0
    show_progress = rank == 0 and log_is_default and sys.stderr.isatty()

    def record(entry: dict[str, Any]) -> None:
        history.append(entry)
        if metrics_file:
            metrics_file.write(json.dumps(entry) + "\n")
            metrics_file.flush()

    def save() -> None:
        if rank != 0:
            return
        state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                 "batches": batches_used, "reader": data.reader_state_to_tensors(reader.state_dict()),
                 "config": cfg.to_dict(), "kind": kind}
        torch.save(state, ckpt_path + ".tmp")
        os.replace(ckpt_path + ".tmp", ckpt_path)

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
                (loss_total / cfg.grad_accum).backward()
            step_loss += float(loss.detach()) / cfg.grad_accum
            tokens_seen += tokens
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        step += 1
        entry: dict[str, Any] = {"step": step, "loss": round(step_loss, 6), "lr": optimizer.param_groups[0]["lr"]}
        if moe_stats.get("expert_load") and (step % log_every == 0 or step == total):
            entry.update(moe_stats)   # per MoE layer: tokens each expert processed, share of tokens dropped
        if step % cfg.eval_every == 0 or step == total:
            val = validate(kind, model, shards, vocab, masking, cfg, device, seed)
            if val is not None:
                entry["val_loss"] = val
        record(entry)
        if step % log_every == 0 or step == total or "val_loss" in entry:
            rate = tokens_seen / max(1e-9, time.perf_counter() - started)
            val_text = f", val loss {entry['val_loss']:.4f}" if "val_loss" in entry else ""
            if show_progress:
                sys.stderr.write("\r\x1b[K")  # clear the bar before a log line
            log(f"step {step}/{total}: loss {step_loss:.4f}{val_text}, lr {entry['lr']:.2e}, {rate:,.0f} tokens/s")
        if show_progress:
            _progress_bar(step, total, step_loss, tokens_seen / max(1e-9, time.perf_counter() - started))
        if checkpoint_every and step % checkpoint_every == 0:
            save()
    if show_progress:
        sys.stderr.write("\n")
    save()
    if world > 1:
        torch.distributed.destroy_process_group()
    if metrics_file:
        metrics_file.close()
    seconds = time.perf_counter() - started
    losses = [e["loss"] for e in history if "loss" in e]
    vals = [e["val_loss"] for e in history if "val_loss" in e]
    return {"kind": kind, "steps": step, "seconds": round(seconds, 2), "tokens_per_s": round(tokens_seen / seconds, 1),
            "loss_first": losses[0] if losses else None, "loss_last": losses[-1] if losses else None,
            "val_loss_first": vals[0] if vals else None, "val_loss_last": vals[-1] if vals else None,
            "losses": losses, "checkpoint": ckpt_path, "config": cfg.to_dict()}
