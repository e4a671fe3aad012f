"""The training loop on small synthetic shards: GLM and CogView losses fall, MoE trains, resume continues with
exactly the loss an uninterrupted run has, checkpoints load with weights_only, the command line works."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from shards.manifest import build_manifest, write_manifest
from shards.writer import encode_sample, write_shard
from tokenizer.cogview import cogview_sample
from tokenizer.vocab import Vocab
from train.loop import lr_at, train
from train.configs import load_config

TEXT_VOCAB, IMAGE_CODES = 200, 64


def _shards(folder, kind: str, n_train: int = 48, n_val: int = 8, seed: int = 0) -> str:
    """Shards of repetitive synthetic documents (learnable), plus vocab.json, like `wudao shards` writes."""
    folder.mkdir(parents=True)
    vocab = Vocab.build(TEXT_VOCAB, image_codes=IMAGE_CODES)
    vocab.write(str(folder))
    rng = np.random.default_rng(seed)
    entries = []
    for split, n in (("train", n_train), ("val", n_val)):
        samples = []
        for i in range(n):
            start = int(rng.integers(3, 50))
            text = [(start + k) % 60 + 3 for k in range(int(rng.integers(20, 60)))]   # counting sequences
            if kind == "cogview":
                colour = text[0] % IMAGE_CODES
                ids = cogview_sample(text[:8], [colour] * 16, vocab)                    # 4x4 grid, one code
            else:
                ids = text
            samples.append(encode_sample({"id": f"{split}{i:04d}"}, ids, "uint16"))
        info = write_shard(samples, str(folder / f"{split}-000000.tar"))
        entries.append({**info.to_dict(), "split": split})
    write_manifest(str(folder), build_manifest(entries, "synthetic", "uint16", 64, "test"))
    return str(folder)


TINY = dict(d_model=32, n_layers=2, n_heads=2, d_ff=64, seq_len=64, batch_size=4, warmup_steps=5, lr=3e-3,
            eval_every=10, eval_batches=2)


def test_glm_loss_and_validation_loss_fall(tmp_path):
    shards = _shards(tmp_path / "s", "glm")
    result = train("glm", shards, "tiny", steps=40, out=str(tmp_path / "run"), log=lambda _: None, **TINY)
    assert result["steps"] == 40
    assert result["val_loss_last"] < 0.8 * result["val_loss_first"]
    assert np.mean(result["losses"][-5:]) < 0.8 * np.mean(result["losses"][:5])
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [e["step"] for e in lines if "loss" in e] == list(range(1, 41))


def test_cogview_and_moe_train(tmp_path):
    shards = _shards(tmp_path / "s", "cogview")
    result = train("cogview", shards, "tiny", steps=60, out=str(tmp_path / "run"), log=lambda _: None,
                   num_experts=4, moe_every_n_layers=1, **{**TINY, "seq_len": 32})
    assert result["val_loss_last"] < 0.8 * result["val_loss_first"]
    state = torch.load(tmp_path / "run" / "ckpt.pt", weights_only=True)
    assert state["step"] == 60 and state["kind"] == "cogview"
    assert state["model"]["blocks.0.mlp.gate.weight"].shape[0] == 4            # a 4-expert router
    assert state["model"]["blocks.0.mlp.w1"].shape[0] == 4                     # stacked expert weights
    logged = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    loads = [e["expert_load"] for e in logged if "expert_load" in e]
    assert loads and all(len(layers) == 2 and len(layers[0]) == 4 for layers in loads)   # 2 MoE layers x 4 experts
    assert all(0 < sum(layer) <= 4 * 32 for layers in loads for layer in layers)           # at most B x L tokens


def test_resume_gives_the_same_next_losses(tmp_path):
    shards = _shards(tmp_path / "s", "glm")
    quiet = {"log": lambda _: None, **TINY}
    full = train("glm", shards, "tiny", steps=8, out=str(tmp_path / "full"), **quiet)
    train("glm", shards, "tiny", steps=4, out=str(tmp_path / "part"), **quiet)
    resumed = train("glm", shards, "tiny", steps=8, out=str(tmp_path / "part"), resume=True, **quiet)
    assert resumed["losses"] == full["losses"][4:]


def test_resume_from_a_periodic_checkpoint_with_dropout_and_moe(tmp_path):
    """Dropout and router jitter draw random numbers every step: resume is exact only with the random states."""
    import os
    import shutil

    shards = _shards(tmp_path / "s", "glm")
    quiet = {"log": lambda _: None, **TINY, "dropout": 0.1, "num_experts": 4, "moe_every_n_layers": 1}
    full = train("glm", shards, "tiny", steps=8, out=str(tmp_path / "full"), checkpoint_every=4, **quiet)
    names = sorted(os.listdir(tmp_path / "full"))
    assert names == ["ckpt-0000004.pt", "ckpt-0000008.pt", "ckpt.pt", "metrics.jsonl"]
    assert os.path.samefile(tmp_path / "full" / "ckpt.pt", tmp_path / "full" / "ckpt-0000008.pt")
    (tmp_path / "crashed").mkdir()
    shutil.copy(tmp_path / "full" / "ckpt-0000004.pt", tmp_path / "crashed" / "ckpt.pt")
    resumed = train("glm", shards, "tiny", steps=8, out=str(tmp_path / "crashed"), resume=True, **quiet)
    assert resumed["losses"] == full["losses"][4:]
    state = torch.load(tmp_path / "full" / "ckpt-0000004.pt", weights_only=True)
    assert state["world_size"] == 1 and set(state["ranks"][0]) == {"reader", "rng", "pending"}


def test_model_flops_per_token_counts_active_parameters():
    from train.loop import build_model, model_flops_per_token

    dense_cfg = load_config("tiny", vocab_size=300, **{k: TINY[k] for k in ("d_model", "n_layers", "n_heads",
                                                                             "d_ff", "seq_len")})
    dense = build_model("glm", dense_cfg)
    params = sum(p.numel() for p in dense.parameters())
    attention = 12 * 2 * 32 * 64
    assert model_flops_per_token(dense, dense_cfg) == 6 * params + attention
    moe_cfg = load_config("tiny", vocab_size=300, num_experts=4, moe_every_n_layers=1,
                          **{k: TINY[k] for k in ("d_model", "n_layers", "n_heads", "d_ff", "seq_len")})
    moe = build_model("glm", moe_cfg)
    per_expert = 32 * 64 + 64 + 64 * 32 + 32                                 # w1, b1, w2, b2 of one expert
    all_params = sum(p.numel() for p in moe.parameters())
    active = all_params - 2 * 4 * per_expert + 2 * 1 * per_expert           # switch: 1 of 4 experts per token
    assert model_flops_per_token(moe, moe_cfg) == 6 * active + attention


def test_fp16_trains_with_loss_scaling_and_resumes_exactly(tmp_path):
    from train.loop import precision

    shards = _shards(tmp_path / "s", "glm")
    quiet = {"log": lambda _: None, **TINY, "fp16": True}
    full = train("glm", shards, "tiny", steps=6, out=str(tmp_path / "full"), **quiet)
    assert all(np.isfinite(full["losses"])) and full["losses"][-1] < full["losses"][0]
    state = torch.load(tmp_path / "full" / "ckpt.pt", weights_only=True)
    assert state["scaler"]["scale"] > 1 and state["model"]["tok.weight"].dtype == torch.float32
    train("glm", shards, "tiny", steps=3, out=str(tmp_path / "part"), **quiet)
    resumed = train("glm", shards, "tiny", steps=6, out=str(tmp_path / "part"), resume=True, **quiet)
    assert resumed["losses"] == full["losses"][3:]
    assert precision(load_config("tiny", fp16=True), "cpu") == torch.float16
    assert precision(load_config("tiny", bf16=True), "cpu") == torch.bfloat16
    assert precision(load_config("tiny"), "cpu") is None
    import unittest.mock

    with unittest.mock.patch("torch.cuda.is_bf16_supported", return_value=False):   # e.g. a V100 or T4
        assert precision(load_config("tiny", bf16=True), "cuda") == torch.float16
    with pytest.raises(ValueError, match="one of bf16 and fp16"):
        load_config("tiny", bf16=True, fp16=True)


def test_masking_in_worker_processes_gives_the_same_batches_and_resumes_exactly(tmp_path):
    """GLM masking in a process pool, two batches ahead: the same losses as on the training thread, and a resume
    from a checkpoint taken while batches were in flight continues exactly (their windows are in it)."""
    shards = _shards(tmp_path / "s", "glm")
    quiet = {"log": lambda _: None, **TINY}
    inline = train("glm", shards, "tiny", steps=6, out=str(tmp_path / "inline"), **quiet)
    pooled = train("glm", shards, "tiny", steps=6, out=str(tmp_path / "pooled"), checkpoint_every=3,
                   mask_workers=1, **quiet)
    assert pooled["losses"] == inline["losses"]
    state = torch.load(tmp_path / "pooled" / "ckpt-0000003.pt", weights_only=True)
    assert len(state["ranks"][0]["pending"]) == 1        # the next batch was read (and being masked), not trained on
    (tmp_path / "crashed").mkdir()
    (tmp_path / "crashed" / "ckpt.pt").write_bytes((tmp_path / "pooled" / "ckpt-0000003.pt").read_bytes())
    resumed = train("glm", shards, "tiny", steps=6, out=str(tmp_path / "crashed"), resume=True, mask_workers=1,
                    **quiet)
    assert resumed["losses"] == inline["losses"][3:]
    on_thread = train("glm", shards, "tiny", steps=6, out=str(tmp_path / "crashed2"), resume=False, **quiet)
    assert on_thread["losses"] == inline["losses"]


def test_only_the_newest_checkpoints_are_kept(tmp_path):
    import os

    shards = _shards(tmp_path / "s", "glm")
    train("glm", shards, "tiny", steps=7, out=str(tmp_path / "run"), log=lambda _: None, checkpoint_every=2,
          keep_checkpoints=2, **TINY)
    assert sorted(os.listdir(tmp_path / "run")) == ["ckpt-0000006.pt", "ckpt-0000007.pt", "ckpt.pt",
                                                     "metrics.jsonl"]


def test_a_checkpoint_from_before_per_rank_states_still_resumes(tmp_path):
    shards = _shards(tmp_path / "s", "glm")
    quiet = {"log": lambda _: None, **TINY}
    full = train("glm", shards, "tiny", steps=6, out=str(tmp_path / "full"), **quiet)
    train("glm", shards, "tiny", steps=3, out=str(tmp_path / "old"), **quiet)
    state = torch.load(tmp_path / "old" / "ckpt.pt", weights_only=True)
    state["reader"] = state.pop("ranks")[0]["reader"]      # the layout written before issue 20
    del state["world_size"]
    torch.save(state, tmp_path / "old" / "ckpt.pt")
    resumed = train("glm", shards, "tiny", steps=6, out=str(tmp_path / "old"), resume=True, **quiet)
    assert resumed["losses"] == full["losses"][3:]         # dropout 0: no random state needed


def test_glm_objective_mix_comes_from_the_config(tmp_path):
    from train.data import glm_masking

    shards = _shards(tmp_path / "s", "glm")
    masking = glm_masking(Vocab.load(shards), shards, None, (0.0, 0.0, 1.0))
    assert masking.ratios == {"mask": 0.0, "sentence": 0.0, "gmask": 1.0}
    assert load_config("tiny", glm_objectives=[0.2, 0.3, 0.5]).glm_objectives == (0.2, 0.3, 0.5)


def test_schedule_warms_up_then_decays_to_the_floor():
    cfg = load_config("tiny", lr=1.0, warmup_steps=10, min_lr_ratio=0.1)
    assert lr_at(0, cfg, 100) == pytest.approx(0.1)
    assert lr_at(9, cfg, 100) == pytest.approx(1.0)
    assert lr_at(10, cfg, 100) == pytest.approx(1.0)
    assert lr_at(55, cfg, 100) == pytest.approx(0.55)
    assert lr_at(100, cfg, 100) == pytest.approx(0.1)


def test_train_command(tmp_path, capsys):
    from pipelines.cli import main

    shards = _shards(tmp_path / "s", "glm")
    config = tmp_path / "c.yaml"
    config.write_text("base: tiny\n" + "".join(f"{k}: {v}\n" for k, v in TINY.items()))
    assert main(["train", "--shards", shards, "--model", "glm", "--config", str(config), "--steps", "3",
                 "--out", str(tmp_path / "run")]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 3
    assert main(["train", "--shards", shards, "--model", "glm", "--config", str(config), "--steps", "5",
                 "--out", str(tmp_path / "run"), "--resume"]) == 0
    assert json.loads(capsys.readouterr().out)["steps"] == 5


def _torchrun(args: list[str], env: dict) -> None:
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "-m", "pipelines.cli", "train", *args], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-12000:]


@pytest.mark.slow
def test_data_parallel_with_torchrun_resumes_exactly(tmp_path):
    """Two CPU processes (gloo) under torchrun: each reads its half of the shards, DDP averages the gradients; a
    run resumed from a periodic checkpoint continues with the losses of the uninterrupted run, with dropout and
    MoE router jitter on (every rank's reader position and random state are in the checkpoint)."""
    import os
    import shutil

    shards = _shards(tmp_path / "s", "glm", n_train=96)
    config = tmp_path / "c.yaml"
    settings = {**TINY, "dropout": 0.1, "num_experts": 4, "moe_every_n_layers": 1}
    config.write_text("base: tiny\n" + "".join(f"{k}: {v}\n" for k, v in settings.items()))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.getcwd()}
    common = ["--shards", shards, "--model", "glm", "--config", str(config), "--steps", "6"]
    _torchrun([*common, "--out", str(tmp_path / "run"), "--checkpoint-every", "3"], env)
    state = torch.load(tmp_path / "run" / "ckpt.pt", weights_only=True)
    assert state["step"] == 6 and state["world_size"] == 2
    ranks = state["ranks"]
    assert [r["reader"]["consumer"] for r in ranks] == [0, 1]          # each rank's own position
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    full = [e["loss"] for e in lines if "loss" in e]
    assert len(full) == 6                                                   # rank 0 alone writes metrics
    per_rank_max = 6 * TINY["batch_size"] * TINY["seq_len"]                 # 6 steps of full batches on one rank
    assert lines[-1]["tokens"] > per_rank_max and lines[-1]["tokens_per_s"] > 0   # counted over both ranks
    (tmp_path / "crashed").mkdir()
    shutil.copy(tmp_path / "run" / "ckpt-0000003.pt", tmp_path / "crashed" / "ckpt.pt")
    _torchrun([*common, "--out", str(tmp_path / "crashed"), "--resume"], env)
    lines = [json.loads(line) for line in (tmp_path / "crashed" / "metrics.jsonl").read_text().splitlines()]
    assert [e["loss"] for e in lines if "loss" in e] == full[3:]


@pytest.mark.slow
def test_expert_parallel_under_torchrun_trains_as_replicated_experts(tmp_path):
    """`--expert-parallel` on 2 CPU processes: each rank holds 2 of the 4 experts of every MoE layer and the tokens
    travel by all-to-all; losses, weights and optimizer moments equal those of the same run with the experts
    replicated and all-reduced by DDP (float tolerance). The checkpoint holds the whole experts (one process loads
    it) and a run resumed from it continues with the losses of the uninterrupted run."""
    import os
    import shutil

    from train.sample import load_checkpoint_model

    shards = _shards(tmp_path / "s", "glm", n_train=96)
    config = tmp_path / "c.yaml"
    settings = {**TINY, "num_experts": 4, "moe_every_n_layers": 1}   # router jitter on (switch), dropout 0
    config.write_text("base: tiny\n" + "".join(f"{k}: {v}\n" for k, v in settings.items()))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.getcwd()}
    common = ["--shards", shards, "--model", "glm", "--config", str(config), "--steps", "6", "--checkpoint-every", "3"]
    _torchrun([*common, "--out", str(tmp_path / "replicated")], env)
    _torchrun([*common, "--out", str(tmp_path / "split"), "--expert-parallel"], env)

    def losses(run: str) -> list[float]:
        lines = (tmp_path / run / "metrics.jsonl").read_text().splitlines()
        return [e["loss"] for e in map(json.loads, lines) if "loss" in e]

    assert losses("split") == pytest.approx(losses("replicated"), rel=1e-4)
    replicated = torch.load(tmp_path / "replicated" / "ckpt.pt", weights_only=True)
    split = torch.load(tmp_path / "split" / "ckpt.pt", weights_only=True)
    assert split["config"]["expert_parallel"] and split["model"]["blocks.0.mlp.w1"].shape[0] == 4   # whole experts
    for name, tensor in replicated["model"].items():
        torch.testing.assert_close(split["model"][name], tensor, rtol=1e-4, atol=1e-5)
    for index, moments in replicated["optimizer"]["state"].items():
        torch.testing.assert_close(split["optimizer"]["state"][index]["exp_avg"], moments["exp_avg"],
                                   rtol=1e-3, atol=1e-6)
    model, _, _ = load_checkpoint_model(str(tmp_path / "split" / "ckpt.pt"))   # one process, all experts
    assert model.blocks[1].mlp.local_experts == 4

    (tmp_path / "crashed").mkdir()
    shutil.copy(tmp_path / "split" / "ckpt-0000003.pt", tmp_path / "crashed" / "ckpt.pt")
    _torchrun([*common, "--out", str(tmp_path / "crashed"), "--expert-parallel", "--resume"], env)
    assert losses("crashed") == losses("split")[3:]


def test_gradient_accumulation_and_bf16_autocast(tmp_path):
    shards = _shards(tmp_path / "s", "cogview")
    result = train("cogview", shards, "tiny", steps=3, out=str(tmp_path / "run"), log=lambda _: None,
                   grad_accum=2, bf16=True, **{**TINY, "seq_len": 32})
    state = torch.load(tmp_path / "run" / "ckpt.pt", weights_only=True)
    assert state["step"] == 3 and state["batches"] == 6          # two micro-batches per optimizer step
    assert all(np.isfinite(result["losses"]))
    assert state["model"]["tok.weight"].dtype == torch.float32    # autocast computes in bf16, keeps fp32 weights
