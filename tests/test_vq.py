"""VQ-VAE image tokenizer: shapes, codebook updates, checkpoints, training on image files and WebDataset tars."""
from __future__ import annotations

import io
import json
import math
import tarfile

import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402
from PIL import Image  # noqa: E402

from tokenizer.vq import CheckpointError, VQConfig, VQVAE, VectorQuantizer, load_state_dict_checkpoint  # noqa: E402
from tokenizer.vq_train import (augment_image, codebook_stats, encode_images, iter_images, lr_factor,  # noqa: E402
                                preprocess, psnr, train_vq)

TINY = VQConfig(resolution=32, channels=16, channel_mult=(1, 2, 2), num_res_blocks=1, codebook_size=64,
                code_dim=16, downsample=4)


@pytest.fixture(autouse=True)
def _threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def _gradients(n: int, size: int = 32, seed: int = 1) -> torch.Tensor:
    """Smooth colour ramps in [-1, 1]: structured images a tiny model can learn."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    out = []
    for _ in range(n):
        a, b = torch.rand(3, 1, 1, generator=g) * 2 - 1, torch.rand(3, 1, 1, generator=g) * 2 - 1
        out.append((a * xx + b * yy).clamp(-1, 1))
    return torch.stack(out)


def _blocks(n: int, size: int = 48, seed: int = 2) -> torch.Tensor:
    """Images of 2x2 flat quadrants, each a corner of the RGB cube: far from the mean image, easy to code."""
    g = torch.Generator().manual_seed(seed)
    half = size // 2
    out = torch.empty(n, 3, size, size)
    for i in range(n):
        for r in (0, 1):
            for c in (0, 1):
                colour = torch.randint(0, 2, (3, 1, 1), generator=g).float() * 2 - 1
                out[i, :, r * half:(r + 1) * half, c * half:(c + 1) * half] = colour
    return out


def _png(tensor: torch.Tensor, fmt: str = "PNG") -> bytes:
    array = ((tensor.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt)
    return buf.getvalue()


# --- config and shapes -----------------------------------------------------------------------------------------

def test_default_config_is_cogview_shape():
    c = VQConfig()
    assert (c.resolution, c.codebook_size, c.downsample, c.grid) == (256, 8192, 8, 32)


@pytest.mark.parametrize("kwargs, message", [
    ({"downsample": 6}, "not a power of 2"),
    ({"downsample": 16}, "does not match 3 stride-2 stages"),
    ({"resolution": 100}, "not a multiple of downsample 8"),
    ({"decay": 1.0}, "decay"),
    ({"codebook_size": 0}, "codebook_size must be positive"),
])
def test_config_rejects_inconsistent_shapes(kwargs, message):
    with pytest.raises(ValueError, match=message):
        VQConfig(**kwargs)


def test_default_model_encodes_256_to_32x32_codes_and_decodes_back():
    torch.manual_seed(0)
    model = VQVAE().eval()
    x = torch.rand(1, 3, 256, 256) * 2 - 1
    codes = model.encode(x)
    assert codes.shape == (1, 32, 32) and codes.dtype == torch.int64
    assert 0 <= int(codes.min()) and int(codes.max()) < 8192
    images = model.decode(codes)
    assert images.shape == (1, 3, 256, 256)
    assert float(images.min()) >= -1.0 and float(images.max()) <= 1.0


def test_encode_and_decode_reject_bad_input():
    model = VQVAE(TINY).eval()
    with pytest.raises(ValueError, match="expected images"):
        model.encode(torch.zeros(3, 32, 32))
    with pytest.raises(ValueError, match="not a multiple of 4"):
        model.encode(torch.zeros(1, 3, 30, 32))
    with pytest.raises(ValueError, match="outside 0..63"):
        model.decode(torch.full((1, 8, 8), 64))
    with pytest.raises(ValueError, match="integer codes"):
        model.decode(torch.zeros(1, 8, 8))


# --- quantizer ---------------------------------------------------------------------------------------------------

def _quantizer(**overrides) -> VectorQuantizer:
    c = VQConfig(**{**TINY.__dict__, "codebook_size": 2, "code_dim": 2, "decay": 0.5,
                    "restart_dead_codes": False, **overrides})
    q = VectorQuantizer(c)
    with torch.no_grad():
        q.embedding.data.copy_(torch.tensor([[0.0, 0.0], [10.0, 10.0]]))
        q.cluster_size.fill_(1.0)
        q.embed_avg.copy_(q.embedding.data)
        q.initialized.fill_(True)
    return q


def _as_map(rows: list[list[float]]) -> torch.Tensor:
    """[N, 2] rows -> [1, 2, 1, N] encodings."""
    return torch.tensor(rows, dtype=torch.float32).t().reshape(1, 2, 1, -1)


def test_ema_update_matches_the_formula():
    q = _quantizer().train()
    _, loss, codes = q(_as_map([[1, 1], [-1, -1], [12, 12], [10, 10]]))
    assert codes.reshape(-1).tolist() == [0, 0, 1, 1]
    # cluster_size = 0.5*1 + 0.5*2 = 1.5; embed_avg[1] = 0.5*10 + 0.5*22 = 16; smoothed size ~1.5
    assert torch.allclose(q.cluster_size, torch.tensor([1.5, 1.5]))
    assert torch.allclose(q.embedding, torch.tensor([[0.0, 0.0], [16 / 1.5, 16 / 1.5]]), atol=1e-4)
    # commitment loss only: 0.25 * mean squared distance to the (pre-update) codes = 0.25 * (1+1+1+1+4+4+0+0)/8
    assert math.isclose(float(loss), 0.25 * 12 / 8, rel_tol=1e-6)


def test_eval_mode_and_encode_leave_the_codebook_alone():
    q = _quantizer().eval()
    before = q.state_dict()
    q(_as_map([[12, 12], [3, 3]]))
    assert all(torch.equal(before[k], v) for k, v in q.state_dict().items())
    model = VQVAE(TINY)
    model.train()
    snapshot = {k: v.clone() for k, v in model.state_dict().items()}
    model.encode(_gradients(2))
    assert all(torch.equal(snapshot[k], v) for k, v in model.state_dict().items())


def test_straight_through_gradient_and_codebook_loss_without_ema():
    q = _quantizer(ema=False).train()
    assert isinstance(q.embedding, torch.nn.Parameter)
    z = _as_map([[1, 1], [12, 12]]).requires_grad_(True)
    out, loss, _ = q(z)
    assert torch.equal(out.detach(), _as_map([[0, 0], [10, 10]]))  # forward value is the code
    # codebook + commitment: (1 + 0.25) * mean((z - e)^2) = 1.25 * (1+1+4+4)/4
    assert math.isclose(float(loss.detach()), 1.25 * 10 / 4, rel_tol=1e-6)
    (out.sum() + loss).backward()
    assert z.grad is not None and float(z.grad.abs().sum()) > 0
    assert q.embedding.grad is not None and float(q.embedding.grad.abs().sum()) > 0


def test_dead_code_is_restarted_at_a_batch_encoding():
    q = _quantizer(restart_dead_codes=True, restart_threshold=0.5)
    with torch.no_grad():
        q.embedding.data[1] = torch.tensor([100.0, 100.0])
        q.embed_avg[1] = q.embedding.data[1]
    q.train()
    torch.manual_seed(0)
    batch = [[1, 1], [2, 2], [3, 3], [1, 2]]
    q(_as_map(batch))  # usage averages become [2.5, 0.5]: code 1 falls below 0.5 * mean 1.5 and restarts
    assert q.embedding[1].tolist() in batch
    assert q.cluster_size.tolist() == [2.5, 1.5]


def test_first_training_batch_initializes_the_codebook_from_encodings():
    q = VectorQuantizer(VQConfig(**{**TINY.__dict__, "codebook_size": 4, "code_dim": 2})).train()
    torch.manual_seed(0)
    batch = [[5, 5], [6, 6], [7, 7], [8, 8], [9, 9]]
    q(_as_map(batch))
    assert bool(q.initialized)
    assert float(q.embedding.min()) > 4.0  # every code now lives among the encodings, none at the random start


def test_l2_normalized_lookup_is_by_angle_and_codes_stay_unit_vectors():
    q = _quantizer(l2_normalize=True, restart_dead_codes=False).train()
    with torch.no_grad():
        q.embedding.data.copy_(torch.tensor([[10.0, 0.0], [0.0, 3.0]]))
        q.embed_avg.copy_(q.embedding.data)
    # [2, 1.5] is nearer code 1 ([0, 3]) by plain L2 but within 37 degrees of code 0; [0.1, 0.2] leans to code 1
    out, _, codes = q(_as_map([[2, 1.5], [0.1, 0.2]]))
    assert codes.reshape(-1).tolist() == [0, 1]
    assert torch.allclose(q.embedding.norm(dim=1), torch.ones(2), atol=1e-5)  # EMA result renormalized
    assert torch.allclose(out.detach().reshape(2, 2).t().norm(dim=1), torch.ones(2), atol=1e-5)
    plain = _quantizer(restart_dead_codes=False).eval()
    with torch.no_grad():
        plain.embedding.data.copy_(torch.tensor([[10.0, 0.0], [0.0, 3.0]]))
    assert plain.codes(_as_map([[2, 1.5]])).reshape(-1).tolist() == [1]


def test_l2_normalized_model_without_ema_trains_and_round_trips(tmp_path):
    config = VQConfig(**{**TINY.__dict__, "l2_normalize": True, "ema": False, "code_dim": 8})
    torch.manual_seed(0)
    model = VQVAE(config).train()
    recon, loss, _ = model(_gradients(2))
    (F.mse_loss(recon, _gradients(2)) + loss).backward()
    assert model.quantizer.embedding.grad is not None
    model.eval().save(str(tmp_path / "vq.pt"))
    loaded = VQVAE.load(str(tmp_path / "vq.pt"))
    x = _gradients(3, seed=4)
    assert loaded.config.l2_normalize and torch.equal(loaded.encode(x), model.encode(x))


def test_augment_is_seeded_and_keeps_shape_and_range():
    x = _gradients(1, size=16)[0]
    a = augment_image(x, torch.Generator().manual_seed(5))
    b = augment_image(x, torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and a.shape == x.shape
    assert float(a.min()) >= -1.0 and float(a.max()) <= 1.0
    g = torch.Generator().manual_seed(0)
    outs = [augment_image(x, g) for _ in range(8)]
    assert len({tuple(o.flatten().tolist()) for o in outs}) > 1  # one generator, different draws
    flat = torch.full((3, 16, 16), 0.25)
    assert torch.allclose(augment_image(flat, torch.Generator().manual_seed(1)), flat)  # crops of flat are flat
    ramp = torch.linspace(-1, 1, 16).expand(3, 16, 16).clone()  # increases left to right
    flips = [bool(augment_image(ramp, torch.Generator().manual_seed(s), min_scale=1.0)[0, 0, 0] > 0)
             for s in range(20)]
    assert any(flips) and not all(flips)  # full-size crop: only the flip changes it, sometimes


def test_lr_factor_warms_up_then_decays_to_a_tenth():
    assert [lr_factor(s, 10, "constant", 3) for s in (0, 9)] == [1.0, 1.0]
    assert [lr_factor(s, 10, "cosine", 4) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_factor(4, 10, "cosine", 4) == pytest.approx(1.0)
    assert lr_factor(9, 10, "cosine", 4) == pytest.approx(0.1)
    values = [lr_factor(s, 10, "cosine", 4) for s in range(4, 10)]
    assert values == sorted(values, reverse=True)


# --- training ----------------------------------------------------------------------------------------------------

def test_tiny_model_learns_a_fixed_batch():
    torch.manual_seed(0)
    model = VQVAE(TINY).train()
    x = _gradients(8)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    codebook_before = model.quantizer.embedding.clone()
    losses = []
    for _ in range(60):
        recon, vq_loss, _ = model(x)
        loss = F.mse_loss(recon, x)
        optimizer.zero_grad()
        (loss + vq_loss).backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.3 * losses[0]
    assert not torch.equal(codebook_before, model.quantizer.embedding)  # the EMA codebook moved


def test_psnr_and_codebook_stats_exact():
    a = torch.zeros(2, 3, 4, 4)
    assert math.isclose(psnr(a, a + 0.2), 20.0, rel_tol=1e-5)  # 10*log10(2^2 / 0.04)
    assert psnr(a, a) == pytest.approx(100.0)
    with pytest.raises(ValueError, match="shapes differ"):
        psnr(a, a[:1])
    stats = codebook_stats(torch.tensor([[0, 0], [1, 1]]), 4)
    assert stats["codebook_usage"] == 0.5 and stats["perplexity"] == pytest.approx(2.0)


def test_preprocess_center_crops_the_shorter_side_and_whitens_transparency():
    image = Image.new("RGB", (60, 20), (0, 0, 255))
    image.paste((255, 0, 0), (20, 0, 40, 20))  # a red middle third, blue sides
    x = preprocess(image, 16)
    assert x.shape == (3, 16, 16)
    assert torch.allclose(x[:, :, 2:14], torch.tensor([1.0, -1.0, -1.0]).view(3, 1, 1), atol=0.02)
    clear = preprocess(Image.new("RGBA", (8, 8), (0, 0, 0, 0)), 8)
    assert torch.equal(clear, torch.ones(3, 8, 8))


def test_iter_images_reports_bad_input_and_keeps_going(tmp_path):
    good = tmp_path / "a.png"
    good.write_bytes(_png(_gradients(1)[0]))
    (tmp_path / "b.jpg").write_bytes(b"not an image")
    data = _png(_gradients(1)[0], "JPEG")
    tar = tmp_path / "c.tar"
    with tarfile.open(tar, "w") as t:
        info = tarfile.TarInfo("k.jpg")
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    truncated = tmp_path / "d.tar"
    truncated.write_bytes(tar.read_bytes()[:700])
    skips = []
    names = [n for n, _ in iter_images([str(tmp_path), str(tmp_path / "missing.png")], 32, skips)]
    assert names == [str(good), f"{tar}#k.jpg"]
    reasons = dict(skips)
    assert reasons[str(tmp_path / "b.jpg")].startswith("undecodable image")
    assert reasons[str(truncated)].startswith("truncated or corrupt tar")
    assert reasons[str(tmp_path / "missing.png")].startswith("unreadable file")


def _write_dataset(root) -> list[str]:
    """40 PNGs of odd sizes in a folder, 8 JPEGs in a WebDataset tar, one corrupt file."""
    images = _blocks(48)
    folder = root / "images"
    folder.mkdir()
    for i in range(40):
        crop = images[i][:, : 44 + i % 3, :]  # non-square: exercises resize and crop
        (folder / f"{i:03d}.png").write_bytes(_png(crop))
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    tar = root / "shard-00000.tar"
    with tarfile.open(tar, "w") as t:
        for i in range(40, 48):
            for ext, payload in (("jpg", _png(images[i], "JPEG")), ("txt", b"a caption"),
                                 ("json", json.dumps({"key": i}).encode())):
                info = tarfile.TarInfo(f"{i:09d}.{ext}")
                info.size = len(payload)
                t.addfile(info, io.BytesIO(payload))
    return [str(folder / "*.png"), str(tar)]


def test_train_vq_on_files_and_webdataset_tar_writes_model_and_metrics(tmp_path):
    sources = _write_dataset(tmp_path)
    out = tmp_path / "out"
    metrics = train_vq(sources, str(out), TINY, steps=80, batch_size=4, lr=2e-3, seed=0, eval_images=4)
    assert metrics["steps"] == 80 and metrics["heldout_images"] == 4
    assert metrics["skipped"] == 1 and list(metrics["skip_reasons"])[0].startswith("undecodable image: ")
    heldout = torch.stack([t for _, t in list(iter_images(sources, 32))[:4]])
    assert metrics["psnr_db"] > psnr(torch.zeros_like(heldout), heldout) + 2.0  # beats the flat grey image
    assert metrics["recon_mse_last"] < 0.75 * metrics["recon_mse_first"]
    assert 0 < metrics["codebook_usage"] <= 1 and 1 <= metrics["perplexity"] <= 64
    assert json.loads((out / "vq_metrics.json").read_text()) == json.loads(json.dumps(metrics))
    model = VQVAE.load(str(out / "vq.pt"))
    assert model.config == TINY
    encoded = list(encode_images(model, sources, batch_size=3))
    assert len(encoded) == 48 and encoded[-1][0].endswith("#000000047.jpg")
    assert all(c.shape == (8, 8) for _, c in encoded)


def test_train_vq_is_deterministic_with_a_seed(tmp_path):
    sources = _write_dataset(tmp_path)
    a = train_vq(sources, str(tmp_path / "a"), TINY, steps=4, batch_size=4, seed=3, eval_images=2, log_every=1)
    b = train_vq(sources, str(tmp_path / "b"), TINY, steps=4, batch_size=4, seed=3, eval_images=2, log_every=1)
    assert a["loss_curve"] == b["loss_curve"] and a["psnr_db"] == b["psnr_db"]
    assert (tmp_path / "a" / "vq.pt").read_bytes() != b""  # written
    sd_a = torch.load(tmp_path / "a" / "vq.pt", weights_only=True)["state_dict"]
    sd_b = torch.load(tmp_path / "b" / "vq.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(sd_a[k], sd_b[k]) for k in sd_a)


def test_train_vq_augmented_is_deterministic_and_differs_from_plain(tmp_path):
    sources = _write_dataset(tmp_path)
    kw = dict(config=TINY, steps=3, batch_size=4, seed=1, eval_images=2, log_every=1, lr_schedule="cosine",
              warmup_steps=1)
    a = train_vq(sources, str(tmp_path / "a"), augment=True, **kw)
    b = train_vq(sources, str(tmp_path / "b"), augment=True, **kw)
    c = train_vq(sources, str(tmp_path / "c"), augment=False, **kw)
    assert a["loss_curve"] == b["loss_curve"] and a["loss_curve"] != c["loss_curve"]
    assert a["augment"] and a["lr_schedule"] == "cosine"
    with pytest.raises(ValueError, match="lr_schedule must be one of"):
        train_vq(sources, str(tmp_path / "d"), TINY, steps=1, eval_images=2, lr_schedule="step")


def test_training_stream_replays_cached_images_like_a_fresh_read(tmp_path, monkeypatch):
    import random as _random
    from tokenizer import vq_train
    sources = _write_dataset(tmp_path)
    def stream(cache_bytes):
        first = iter_images(sources, 32)
        next(first)
        out = vq_train._training_stream(first, sources, 32, 1, _random.Random(0), 8, cache_bytes)
        return [next(out) for _ in range(47 * 2 + 5)]
    cached, reread = stream(10 ** 9), stream(0)
    assert all(torch.equal(a, b) for a, b in zip(cached, reread))


def test_train_vq_single_pass_iterable_stops_when_it_runs_out(tmp_path):
    images = [_png(t) for t in _gradients(10)]
    metrics = train_vq(iter(images), str(tmp_path), TINY, steps=50, batch_size=4, eval_images=2)
    assert metrics["steps"] == 2  # 8 training images, batches of 4
    with pytest.raises(ValueError, match="fewer than eval_images=16"):
        train_vq(images, str(tmp_path), TINY, steps=1)


# --- checkpoints ---------------------------------------------------------------------------------------------------

def _trained_tiny() -> VQVAE:
    torch.manual_seed(0)
    model = VQVAE(TINY).train()
    model(_gradients(4))  # initializes the codebook from encodings and runs one EMA update
    return model.eval()


def test_save_load_round_trip_gives_identical_codes(tmp_path):
    model = _trained_tiny()
    path = str(tmp_path / "vq.pt")
    model.save(path)
    loaded = VQVAE.load(path, map_location="cpu")
    x = _gradients(3, seed=7)
    assert loaded.config == model.config
    assert torch.equal(loaded.encode(x), model.encode(x))
    assert torch.equal(loaded.decode(model.encode(x)), model.decode(model.encode(x)))


class _Payload:
    """Unpickling this would create a marker file: weights-only loading must refuse it first."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_load_refuses_pickled_objects(tmp_path):
    marker = tmp_path / "executed"
    path = tmp_path / "evil.pt"
    torch.save({"config": TINY.to_dict(), "state_dict": {}, "x": _Payload(str(marker))}, path)
    for loader in (lambda: VQVAE.load(str(path)), lambda: load_state_dict_checkpoint(str(path), TINY)):
        with pytest.raises(CheckpointError, match="refused: it holds objects that could run code"):
            loader()
    assert not marker.exists()


def test_load_names_what_does_not_fit(tmp_path):
    model = _trained_tiny()
    path = str(tmp_path / "vq.pt")
    model.save(path)
    payload = torch.load(path, weights_only=True)
    payload["state_dict"]["quantizer.embedding"] = torch.zeros(32, 16)
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="1 shape mismatches, e.g. \\['quantizer.embedding \\(32, 16\\)"):
        VQVAE.load(path)
    del payload["state_dict"]["decoder.conv_out.bias"]
    payload["state_dict"]["quantizer.embedding"] = torch.zeros(64, 16)
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="missing 1 keys, e.g. \\['decoder.conv_out.bias'\\]"):
        VQVAE.load(path)
    payload["config"]["codebook_size"] = "big"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="bad config"):
        VQVAE.load(path)
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(CheckpointError, match="cannot be read as a torch checkpoint"):
        VQVAE.load(str(tmp_path / "text.pt"))
    with pytest.raises(CheckpointError, match="no such file"):
        VQVAE.load(str(tmp_path / "absent.pt"))


@pytest.mark.parametrize("wrap", ["plain", "state_dict", "model"])
def test_user_state_dict_with_module_prefix_loads(tmp_path, wrap):
    model = _trained_tiny()
    state = {f"module.{k}": v for k, v in model.state_dict().items()
             if not k.startswith("quantizer.") or k == "quantizer.embedding"}  # no codebook statistics
    payload = state if wrap == "plain" else {wrap: state, "epoch": 3}
    path = str(tmp_path / "user.pt")
    torch.save(payload, path)
    loaded = load_state_dict_checkpoint(path, TINY)
    x = _gradients(2, seed=5)
    assert torch.equal(loaded.encode(x), model.encode(x))
    assert bool(loaded.quantizer.initialized)
    with pytest.raises(CheckpointError, match="does not fit the config"):
        load_state_dict_checkpoint(path, VQConfig(**{**TINY.__dict__, "code_dim": 8}))
