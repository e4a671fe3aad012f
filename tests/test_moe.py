"""train.moe.MoEMLP: routing, capacity, balance losses and expert math against hand cases and a float64 loop."""
import math

import pytest
import torch
import torch.nn.functional as F

from train.moe import MoEMLP

torch.set_num_threads(1)


def _moe(d=4, d_ff=6, e=4, gate="switch", seed=0, **kw):
    torch.manual_seed(seed)
    m = MoEMLP(d, d_ff, e, gate=gate, **kw).double()
    with torch.no_grad():          # non-zero biases so a wrong bias broadcast shows
        m.b1.normal_(0, 0.3)
        m.b2.normal_(0, 0.3)
        m.w1.normal_(0, 0.5)
        m.w2.normal_(0, 0.5)
        m.gate.weight.normal_(0, 1.0)
    return m


def _expert(m, e, x):
    """Expert e's MLP on one token, float64, written out."""
    h = F.gelu(x @ m.w1[e].double() + m.b1[e, 0].double())
    return h @ m.w2[e].double() + m.b2[e, 0].double()


def _naive(m, x, cf):
    """Per-token float64 reference: route, seat first-come (all 1st choices, then 2nd), combine."""
    x = x.double()
    n, e, k = x.shape[0], m.num_experts, m.top_k
    cap = math.ceil(cf * n * k / e)
    probs = torch.softmax(x @ m.gate.weight.double().T, -1)
    y, load, used = torch.zeros_like(x), [0] * e, [False] * n
    for rank in range(k):
        for t in range(n):
            order = sorted(range(e), key=lambda i: -probs[t, i].item())
            ex = order[rank]
            w = probs[t, ex]
            if k == 2:
                w = w / (probs[t, order[0]] + probs[t, order[1]])
            if load[ex] < cap:
                load[ex] += 1
                used[t] = True
                y[t] += w * _expert(m, ex, x[t])
    return y, load, 1 - sum(used) / n


def test_capacity_respected_and_overflow_returns_zeros():
    m = MoEMLP(2, 3, 4, capacity_factor=1.0, noise_std=0.0).double()
    with torch.no_grad():
        m.gate.weight.zero_()
        m.gate.weight[0] = torch.tensor([10.0, 10.0])     # every positive token picks expert 0
    x = torch.rand(8, 2, dtype=torch.float64) + 0.5
    y, aux = m(x)
    assert aux["capacity"] == 2                              # ceil(1.0 * 8 * 1 / 4)
    assert aux["expert_load"].tolist() == [2, 0, 0, 0]
    assert aux["routed_load"].tolist() == [8, 0, 0, 0]
    assert aux["dropped_fraction"].item() == pytest.approx(6 / 8)
    assert torch.equal(y[2:], torch.zeros(6, 2, dtype=torch.float64))
    p0 = torch.softmax(x[:2] @ m.gate.weight.T, -1)[:, 0:1]
    ref = torch.stack([_expert(m, 0, x[t]) for t in range(2)]) * p0
    torch.testing.assert_close(y[:2], ref, rtol=1e-12, atol=1e-12)


def test_capacity_formula_train_and_eval():
    assert MoEMLP(4, 4, 4).capacity(10) == 4                            # ceil(1.25*10/4)
    assert MoEMLP(4, 4, 4, gate="gshard").capacity(10) == 7             # ceil(1.25*10*2/4)
    m = MoEMLP(4, 4, 4).eval()
    assert m.capacity(10) == 5                                          # ceil(2.0*10/4)


def test_switch_balance_loss_hand_case():
    m = MoEMLP(2, 3, 2, noise_std=0.0).double()
    with torch.no_grad():
        m.gate.weight.copy_(torch.eye(2))
    a = math.log(3.0)                                        # softmax([ln3, 0]) = [0.75, 0.25]
    x = torch.tensor([[a, 0], [a, 0], [0, a], [a, 0]], dtype=torch.float64)
    _, aux = m(x)
    # f = [3/4, 1/4], P = [0.625, 0.375]: 2 * (0.75*0.625 + 0.25*0.375) = 1.125
    assert aux["balance_loss"].item() == pytest.approx(1.125, abs=1e-12)


def test_gshard_balance_loss_and_top2_weights_hand_case():
    m = MoEMLP(3, 2, 3, gate="gshard", capacity_factor=4.0).double().eval()
    with torch.no_grad():
        m.gate.weight.copy_(torch.eye(3))
    p = torch.tensor([[0.5, 0.3, 0.2], [0.2, 0.5, 0.3], [0.6, 0.1, 0.3], [0.1, 0.2, 0.7]], dtype=torch.float64)
    x = p.log()                                              # softmax(log p) = p
    y, aux = m(x)
    # first choices 0,1,0,2 -> c = [.5,.25,.25]; mean gates m = [.35,.275,.375]; 3 * sum c*m = 1.0125
    assert aux["balance_loss"].item() == pytest.approx(1.0125, abs=1e-12)
    assert aux["expert_load"].tolist() == [2, 3, 3]                # top-2: {0,1} {1,2} {0,2} {2,1}
    ref0 = 0.625 * _expert(m, 0, x[0]) + 0.375 * _expert(m, 1, x[0])   # 0.5/0.8, 0.3/0.8
    torch.testing.assert_close(y[0], ref0, rtol=1e-12, atol=1e-12)


def test_gshard_first_choices_take_seats_before_second_choices():
    m = MoEMLP(2, 3, 2, gate="gshard", capacity_factor=0.5).double().eval()
    m.eval_capacity_factor = 0.5                             # C = ceil(0.5 * 2 * 2 / 2) = 1
    with torch.no_grad():
        m.gate.weight.copy_(torch.eye(2))
    x = torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=torch.float64)   # t0: 1st e1, 2nd e0; t1: 1st e0
    y, aux = m(x)
    g1 = torch.softmax(torch.tensor([1.0, 0.0], dtype=torch.float64), 0)[0]
    torch.testing.assert_close(y[0], g1 * _expert(m, 1, x[0]), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(y[1], g1 * _expert(m, 0, x[1]), rtol=1e-12, atol=1e-12)
    assert aux["expert_load"].tolist() == [1, 1] and aux["dropped_fraction"].item() == 0.0


@pytest.mark.parametrize("gate,cf", [("switch", 1.0), ("switch", 0.5), ("gshard", 1.0), ("gshard", 0.6)])
def test_matches_naive_per_token_loop(gate, cf):
    m = _moe(d=5, d_ff=7, e=4, gate=gate, seed=3).eval()
    m.eval_capacity_factor = cf
    torch.manual_seed(4)
    x = torch.randn(3, 9, 5, dtype=torch.float64)
    y, aux = m(x)
    ref, load, dropped = _naive(m, x.reshape(-1, 5), cf)
    torch.testing.assert_close(y.reshape(-1, 5), ref, rtol=1e-10, atol=1e-12)
    assert aux["expert_load"].tolist() == load
    assert aux["dropped_fraction"].item() == pytest.approx(dropped)
    assert max(load) <= aux["capacity"]
    if cf < 1:
        assert dropped > 0 or gate == "gshard"              # the small capacities really drop something
        assert (y.reshape(-1, 5).abs().sum(1) == 0).sum().item() == round(dropped * 27)


def test_batched_input_equals_flat_input():
    m = _moe(e=4, seed=1).eval()
    x = torch.randn(2, 6, 4, dtype=torch.float64)
    y3, a3 = m(x)
    y2, a2 = m(x.reshape(12, 4))
    assert torch.equal(y3.reshape(12, 4), y2) and torch.equal(a3["expert_load"], a2["expert_load"])


def test_gshard_random_routing_in_training():
    m = _moe(d=6, d_ff=4, e=4, gate="gshard", seed=5, capacity_factor=4.0)
    m.train()
    torch.manual_seed(6)
    x = torch.randn(4000, 6, dtype=torch.float64)
    with torch.no_grad():
        y, aux = m(x)
    probs = torch.softmax(x @ m.gate.weight.T, -1).topk(2, -1).values
    g = probs / probs.sum(-1, keepdim=True)
    expect = (2 * g[:, 1]).sum().item()                      # E[kept second choices] = sum 2*g2
    kept = aux["expert_load"].sum().item() - 4000
    assert abs(kept - expect) < 4 * math.sqrt(4000 * 0.25)
    assert 0 < kept < 4000
    # each token's output is either the full top-2 mix or the first expert alone with its normalised g1
    top = torch.softmax(x @ m.gate.weight.T, -1).topk(2, -1).indices
    for t in range(0, 4000, 400):
        first = g[t, 0] * _expert(m, top[t, 0].item(), x[t])
        both = first + g[t, 1] * _expert(m, top[t, 1].item(), x[t])
        assert torch.allclose(y[t], first, atol=1e-12) or torch.allclose(y[t], both, atol=1e-12)


def test_switch_jitter_is_multiplicative_on_router_input_only():
    m = _moe(d=4, e=3, seed=7, noise_std=0.2, capacity_factor=3.0).train()
    x = torch.randn(10, 4, dtype=torch.float64)
    torch.manual_seed(11)
    y, _ = m(x)
    torch.manual_seed(11)
    u = torch.empty_like(x).uniform_(0.8, 1.2)               # the layer's first random draw
    p = torch.softmax((x * u) @ m.gate.weight.T, -1)
    w, e = p.max(-1)
    ref = torch.stack([w[t] * _expert(m, e[t].item(), x[t]) for t in range(10)])   # experts see clean x
    torch.testing.assert_close(y, ref, rtol=1e-12, atol=1e-12)
    y2, _ = m(x)
    assert not torch.equal(y, y2)                            # noise on in training


@pytest.mark.parametrize("gate", ["switch", "gshard"])
def test_eval_is_deterministic(gate):
    m = _moe(e=4, gate=gate, seed=8, noise_std=0.3).eval()
    x = torch.randn(40, 4, dtype=torch.float64)
    torch.manual_seed(0)
    y1, a1 = m(x)
    torch.manual_seed(1)
    y2, a2 = m(x)
    assert torch.equal(y1, y2) and torch.equal(a1["expert_load"], a2["expert_load"])


@pytest.mark.parametrize("gate", ["switch", "gshard"])
def test_gradients_reach_gate_and_experts(gate):
    m = _moe(e=4, gate=gate, seed=9, noise_std=0.0).eval()
    x = torch.randn(16, 4, dtype=torch.float64, requires_grad=True)
    y, aux = m(x)
    y.pow(2).sum().backward()                                # output alone must train the gate
    for name, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    g_out = m.gate.weight.grad.clone()
    m.zero_grad()
    m(x)[1]["balance_loss"].backward()
    assert m.gate.weight.grad.abs().sum() > 0 and not torch.equal(g_out, m.gate.weight.grad)
    assert m.w1.grad is None or m.w1.grad.abs().sum() == 0


def test_gradcheck_float64():
    m = _moe(d=3, d_ff=4, e=3, gate="gshard", seed=10).eval()
    x = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    w = m.gate.weight.detach().clone().requires_grad_(True)
    w1 = m.w1.detach().clone().requires_grad_(True)

    def f(x, w, w1):
        return torch.func.functional_call(m, {"gate.weight": w, "w1": w1}, (x,))[0]
    assert torch.autograd.gradcheck(f, (x, w, w1), eps=1e-6, atol=1e-7)


def test_bf16_autocast_router_in_float32():
    torch.manual_seed(12)
    m = MoEMLP(8, 16, 4)
    x = torch.randn(2, 5, 8, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y, aux = m(x)
    assert aux["balance_loss"].dtype == torch.float32 and torch.isfinite(y.float()).all()
    (y.float().sum() + aux["balance_loss"]).backward()
    assert torch.isfinite(m.gate.weight.grad).all() and m.w1.grad.abs().sum() > 0


def test_empty_input():
    y, aux = MoEMLP(4, 4, 2)(torch.zeros(0, 4))
    assert y.shape == (0, 4) and aux["dropped_fraction"].item() == 0.0 and aux["balance_loss"].item() == 0.0


@pytest.mark.parametrize("kw", [
    dict(gate="topk"), dict(gate="switch", top_k=2), dict(gate="gshard", top_k=1), dict(num_experts=0),
    dict(num_experts=1, gate="gshard"), dict(d_model=0), dict(d_ff=2.5), dict(capacity_factor=0),
    dict(eval_capacity_factor=-1.0), dict(capacity_factor=float("inf")), dict(noise_std=-0.1),
    dict(noise_std=1.0), dict(activation="swish"), dict(dropout=1.0),
])
def test_bad_arguments(kw):
    args = dict(d_model=4, d_ff=4, num_experts=4) | kw
    with pytest.raises(ValueError):
        MoEMLP(**args)


@pytest.mark.parametrize("shape", [(4,), (2, 3), (1, 2, 3, 4), (2, 2, 5)])
def test_bad_input_shape(shape):
    with pytest.raises(ValueError):
        MoEMLP(4, 4, 2)(torch.zeros(shape))
    with pytest.raises(ValueError):
        MoEMLP(4, 4, 2)(torch.zeros(3, 4, dtype=torch.long))
