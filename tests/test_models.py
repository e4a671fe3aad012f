"""train/ models: layers against float64 references, the GLM mask, overfitting, CogView's loss split and sampling."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tokenizer.vocab import Vocab
from train.cogview_model import CogViewModel, generate_image_codes
from train.configs import CONFIGS, Config, load_config, with_vocab
from train.glm_model import GLMModel, glm_attention_mask
from train.layers import Attention, Block, PBRelaxLayerNorm, pb_relax_scores

torch.set_num_threads(1)
VOCAB = Vocab.build(40, image_codes=24)


def small_cfg(**kw) -> Config:
    base = dict(d_model=32, n_layers=2, n_heads=4, d_ff=64, seq_len=32, lr=3e-3)
    base.update(kw)
    return with_vocab(Config(**base), VOCAB)


def ref_ln(x, w, b, eps):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * w + b


def ref_attention(x, attn: Attention, mask):
    """Plain softmax attention written out in float64."""
    B, L, D = x.shape
    H, d = attn.n_heads, D // attn.n_heads
    qkv = x @ attn.qkv.weight.T + attn.qkv.bias
    q, k, v = (t.reshape(B, L, H, d).transpose(1, 2) for t in qkv.split(D, -1))
    s = q @ k.transpose(-2, -1) / math.sqrt(d)
    s = s.masked_fill(~mask, float("-inf"))
    y = (torch.softmax(s, -1) @ v).transpose(1, 2).reshape(B, L, D)
    return y @ attn.proj.weight.T + attn.proj.bias


@pytest.mark.parametrize("pb_relax", [False, True])
def test_sandwich_block_matches_float64_reference(pb_relax):
    torch.manual_seed(0)
    blk = Block(16, 2, 32, sandwich_ln=True, pb_relax=pb_relax).double().eval()
    for p in blk.parameters():                       # non-trivial LN weights too
        nn.init.normal_(p, 0.0, 0.5)
    x = torch.randn(2, 5, 16, dtype=torch.float64)
    causal = torch.ones(5, 5, dtype=torch.bool).tril()
    eps = 1e-5

    def in_ln(t, ln):
        m = t.abs().amax(-1, keepdim=True) if pb_relax else torch.ones(())
        return ref_ln(t / m, ln.weight, ln.bias, eps)

    a = ref_attention(in_ln(x, blk.ln_attn_in), blk.attn, causal)
    h = x + ref_ln(a, blk.ln_attn_out.weight, blk.ln_attn_out.bias, eps)
    u = in_ln(h, blk.ln_mlp_in)
    m = F.gelu(u @ blk.mlp.fc.weight.T + blk.mlp.fc.bias) @ blk.mlp.proj.weight.T + blk.mlp.proj.bias
    want = h + ref_ln(m, blk.ln_mlp_out.weight, blk.ln_mlp_out.bias, eps)
    got, aux = blk(x, causal=True)
    assert aux == {}
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_pb_relax_attention_equals_plain_in_float64():
    torch.manual_seed(1)
    x = torch.randn(2, 7, 24, dtype=torch.float64) * 3
    plain = Attention(24, 3, pb_relax=False).double()
    relax = Attention(24, 3, pb_relax=True, alpha=32.0).double()
    relax.load_state_dict(plain.state_dict())
    mask = torch.rand(2, 7, 7) < 0.5
    mask |= torch.eye(7, dtype=torch.bool)
    want = ref_attention(x, plain, mask[:, None])
    torch.testing.assert_close(relax(x, mask), want, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(plain(x, mask), want, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(relax(x, causal=True), plain(x, causal=True), rtol=1e-10, atol=1e-10)


def test_pb_relax_scores_finite_in_half_where_plain_overflows():
    torch.manual_seed(2)
    d = 16
    q = (torch.rand(1, 6, d) * 100 + 150).double()       # q.k ~ 16 * 200^2 = 640000 > fp16 max 65504
    k = (torch.rand(1, 6, d) * 100 + 150).double()
    want = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(d), -1)
    plain = torch.softmax((q.half() @ k.half().transpose(-2, -1)) / math.sqrt(d), -1)
    assert not torch.isfinite(plain).all()
    for dtype in (torch.float16, torch.bfloat16):
        got = torch.softmax(pb_relax_scores(q.to(dtype), k.to(dtype), 32.0, None).float(), -1)
        assert torch.isfinite(got).all()
        torch.testing.assert_close(got.double(), want, atol=0.05, rtol=0)


def test_pb_relax_layernorm():
    torch.manual_seed(3)
    ln = PBRelaxLayerNorm(8, eps=1e-5).double()
    nn.init.normal_(ln.weight)
    nn.init.normal_(ln.bias)
    x = torch.randn(4, 8, dtype=torch.float64) * 50
    m = x.abs().amax(-1, keepdim=True)
    # exactly: (x - mean) / sqrt(var + eps * max|x|^2)
    exact = (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, unbiased=False, keepdim=True) + 1e-5 * m ** 2)
    torch.testing.assert_close(ln(x), exact * ln.weight + ln.bias, rtol=1e-12, atol=1e-12)
    # plain LN, up to the epsilon's effect (~ eps * max^2 / var)
    torch.testing.assert_close(ln(x), ref_ln(x, ln.weight, ln.bias, 1e-5), rtol=1e-4, atol=1e-4)
    # scale-free: huge inputs give the same result, finite in half precision
    torch.testing.assert_close(ln(x * 1e6), ln(x), rtol=1e-9, atol=1e-9)
    big = PBRelaxLayerNorm(8).half()
    y = big((x * 1000).clamp(-6e4, 6e4).half())
    assert torch.isfinite(y).all()
    assert not PBRelaxLayerNorm(8, relax=False).relax


def test_glm_attention_mask_content():
    got = glm_attention_mask(torch.tensor([3, 0]), 5)
    want0 = torch.tensor([[1, 1, 1, 0, 0],
                          [1, 1, 1, 0, 0],
                          [1, 1, 1, 0, 0],
                          [1, 1, 1, 1, 0],
                          [1, 1, 1, 1, 1]], dtype=torch.bool)
    assert got.shape == (2, 5, 5)
    assert torch.equal(got[0], want0)
    assert torch.equal(got[1], torch.ones(5, 5, dtype=torch.bool).tril())   # no Part A: plain causal


def glm_batch(L=12, sep=7):
    torch.manual_seed(4)
    ids = torch.randint(0, 40, (2, L))
    pos = torch.stack([torch.cat([torch.arange(sep), torch.full((L - sep,), 2)]),
                       torch.cat([torch.zeros(sep, dtype=torch.long), torch.arange(1, L - sep + 1)])])
    return ids, pos.expand(2, 2, L).clone(), torch.tensor([sep, sep])


def test_glm_visibility():
    torch.manual_seed(5)
    model = GLMModel(small_cfg()).eval()
    ids, pos, sep = glm_batch()
    base = model(ids, pos, sep)["logits"]
    later = ids.clone()
    later[:, 10] = (later[:, 10] + 1) % 40            # a later Part B token
    out = model(later, pos, sep)["logits"]
    torch.testing.assert_close(out[:, :10], base[:, :10], rtol=0, atol=0)
    assert not torch.allclose(out[:, 10:], base[:, 10:])
    a_tok = ids.clone()
    a_tok[:, 6] = (a_tok[:, 6] + 1) % 40              # the last Part A token: all of Part A sees it
    out = model(a_tok, pos, sep)["logits"]
    assert all(not torch.allclose(out[:, i], base[:, i]) for i in range(12))


def overfit(model, step_fn, steps):
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    first = None
    for _ in range(steps):
        loss = step_fn()
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return first, step_fn().item()


def test_tiny_glm_overfits_one_batch():
    torch.manual_seed(6)
    model = GLMModel(small_cfg())
    ids, pos, sep = glm_batch()
    targets = torch.full_like(ids, -100)
    targets[:, 7:-1] = ids[:, 8:]
    first, last = overfit(model, lambda: model(ids, pos, sep, targets)["loss"], 120)
    assert last < first / 5


def test_glm_loss_mask_and_bad_input():
    torch.manual_seed(7)
    model = GLMModel(small_cfg()).eval()
    ids, pos, sep = glm_batch()
    targets = torch.randint(0, 40, ids.shape)
    lm = torch.zeros_like(ids)
    lm[:, 7:] = 1
    t2 = targets.masked_fill(lm == 0, -100)
    out = model(ids, pos, sep, targets, loss_mask=lm)
    torch.testing.assert_close(out["loss"], model(ids, pos, sep, t2)["loss"])
    assert out["aux_loss"] == 0.0
    with pytest.raises(ValueError):
        model(ids, pos[:, 0], sep)
    with pytest.raises(ValueError):
        GLMModel(Config(d_model=32, n_heads=4))        # no vocab_size


def cogview_ids(text_len=3, grid=3, seed=8):
    g = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(2):
        text = torch.randint(0, 40, (text_len,), generator=g).tolist()
        codes = torch.randint(0, 24, (grid * grid,), generator=g).tolist()
        rows.append([VOCAB.token_id("[ROI1]")] + text + [VOCAB.token_id("[BASE]"), VOCAB.token_id("[BOI1]")]
                    + [VOCAB.image_code_offset + c for c in codes] + [VOCAB.token_id("[EOI1]")])
    return torch.tensor(rows)


def test_cogview_text_image_loss_split_hand_case():
    torch.manual_seed(9)
    model = CogViewModel(small_cfg()).eval()
    ids = cogview_ids()                    # targets: 3 text + [BASE] [BOI1] (5 text), 9 image, [EOI1] (text)
    out = model(ids, text_weight=1.0, image_weight=3.0)
    ce = F.cross_entropy(out["logits"][:, :-1].flatten(0, 1), ids[:, 1:].flatten(), reduction="none").view(2, -1)
    assert ids.shape[1] - 1 == 15
    img = torch.tensor([False] * 5 + [True] * 9 + [False])
    assert (out["n_text"], out["n_image"]) == (12, 18)
    torch.testing.assert_close(out["text_loss"], ce[:, ~img].mean())
    torch.testing.assert_close(out["image_loss"], ce[:, img].mean())
    want = (ce[:, ~img].sum() + 3 * ce[:, img].sum()) / (12 + 3 * 18)
    torch.testing.assert_close(out["loss"], want)
    padded = ids.clone()
    padded[:, -1] = VOCAB.token_id("[PAD]")
    assert model(padded)["n_text"] == 10


def test_tiny_cogview_overfits_and_samples_valid_codes():
    torch.manual_seed(10)
    model = CogViewModel(small_cfg())
    assert isinstance(model.blocks[0].ln_attn_out, nn.LayerNorm) and model.blocks[0].attn.pb_relax
    ids = cogview_ids()
    first, last = overfit(model, lambda: model(ids)["loss"], 120)
    assert last < first / 5
    g = torch.Generator().manual_seed(0)
    codes = generate_image_codes(model, ids[0, 1:4], VOCAB, grid=3, temperature=1.0, top_k=5, generator=g)
    assert codes.shape == (1, 9) and codes.dtype == torch.long
    assert ((codes >= 0) & (codes < VOCAB.image_codes)).all()
    # the overfit model reproduces its training image under near-greedy sampling
    greedy = generate_image_codes(model, ids[0, 1:4], VOCAB, grid=3, temperature=1e-3, generator=g)
    assert greedy[0].tolist() == (ids[0, 6:15] - VOCAB.image_code_offset).tolist()
    with pytest.raises(ValueError):
        generate_image_codes(model, [VOCAB.token_id("[BASE]")], VOCAB, grid=3)
    with pytest.raises(ValueError):
        generate_image_codes(model, [1, 2], VOCAB, grid=6)       # 4 + 36 - 1 > seq_len 32
    few = generate_image_codes(model, ids[0, 1:4], VOCAB, grid=3, generator=g, num_codes=2)   # a 2-code VQ
    assert set(few.flatten().tolist()) <= {0, 1}
    with pytest.raises(ValueError):
        generate_image_codes(model, ids[0, 1:4], VOCAB, grid=3, num_codes=VOCAB.image_codes + 1)


class StubMoE(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.lin = nn.Linear(d, d)

    def forward(self, x):
        return self.lin(x), {"balance_loss": self.lin.weight.square().mean()}


def test_external_mlp_in_block_and_models():
    torch.manual_seed(11)
    blk = Block(16, 2, 32, mlp=StubMoE(16))
    x = torch.randn(2, 4, 16)
    y, aux = blk(x, causal=True)
    assert y.shape == x.shape and set(aux) == {"balance_loss"}
    cfg = small_cfg()
    model = GLMModel(cfg, mlp_factory=lambda i: StubMoE(cfg.d_model) if i == 1 else None)
    ids, pos, sep = glm_batch()
    out = model(ids, pos, sep, targets=ids)
    want = model.blocks[1].mlp.lin.weight.square().mean()
    torch.testing.assert_close(out["aux_loss"], want)
    (out["loss"] + out["aux_loss"]).backward()
    assert model.blocks[1].mlp.lin.weight.grad is not None


def test_moe_from_config():
    pytest.importorskip("train.moe")
    model = CogViewModel(small_cfg(num_experts=4, moe_gate="switch"))
    assert type(model.blocks[1].mlp).__name__ == "MoEMLP" and type(model.blocks[0].mlp).__name__ == "MLP"
    out = model(cogview_ids())
    assert torch.isfinite(out["aux_loss"]) and torch.isfinite(out["loss"])


def test_configs(tmp_path):
    assert set(CONFIGS) >= {"tiny", "small", "base", "large"}
    assert (CONFIGS["base"].d_model, CONFIGS["base"].n_layers, CONFIGS["large"].n_layers) == (768, 12, 24)
    p = tmp_path / "c.yaml"
    p.write_text("base: small\nlr: 0.001\nnum_experts: 8\nbetas: [0.9, 0.99]\n")
    cfg = load_config(str(p), seq_len=128)
    assert (cfg.d_model, cfg.lr, cfg.num_experts, cfg.betas, cfg.seq_len) == (512, 1e-3, 8, (0.9, 0.99), 128)
    assert with_vocab(cfg, VOCAB).vocab_size == VOCAB.total_size
    p.write_text("learning_rate: 1\n")
    with pytest.raises(ValueError, match="unknown"):
        load_config(str(p))
    with pytest.raises(ValueError):
        load_config("huge")
    with pytest.raises(ValueError):
        Config(d_model=30, n_heads=4)


def test_glm_uses_block_positions():
    """Issue 20: GLM's second position id (the place inside a Part B span) must change what Part B predicts."""
    torch.manual_seed(12)
    model = GLMModel(small_cfg()).eval()
    ids, pos, sep = glm_batch()
    base = model(ids, pos, sep)["logits"]
    shifted = pos.clone()
    shifted[:, 1, 7:] += 1                           # the same spans, their tokens one place later in the span
    out = model(ids, shifted, sep)["logits"]
    torch.testing.assert_close(out[:, :7], base[:, :7], rtol=0, atol=0)   # Part A has block position 0 throughout
    assert all(not torch.allclose(out[:, i], base[:, i]) for i in range(7, 12))
    model.block_pos.weight.data.zero_()              # a model that ignores block positions fails the check above
    assert torch.equal(model(ids, pos, sep)["logits"], model(ids, shifted, sep)["logits"])


def test_training_loss_includes_the_moe_balance_loss():
    """Issue 20: the loss the optimizer sees is the LM loss plus moe_balance_weight x the summed balance losses."""
    from train.loop import forward_loss

    torch.manual_seed(13)
    cfg = small_cfg(num_experts=4, moe_gate="switch", moe_balance_weight=0.5)
    model = CogViewModel(cfg)
    batch = {"ids": cogview_ids()}
    total, loss, _ = forward_loss("cogview", model, batch, cfg)
    torch.manual_seed(13)
    aux = CogViewModel(cfg)(batch["ids"])["aux_loss"]
    assert float(aux.detach()) > 0
    torch.testing.assert_close(total, loss + 0.5 * aux)
