"""VQ-VAE image tokenizer: images in [-1, 1] <-> grids of discrete codes.

VQ-VAE (van den Oord et al. 2017): a convolutional encoder, a nearest-neighbour codebook lookup with a
straight-through gradient, a decoder mirroring the encoder. CogView (Ding et al. 2021) tokenizes 256x256 images
into 32x32 codes from 8192 (8x downsampling), the defaults here. Codebook training follows the paper's two
variants: exponential moving averages of assignments and encodings (appendix A.1, decay 0.99, Laplace-smoothed
counts) or, with `ema=False`, the codebook loss ||sg[z] - e||^2; both with the commitment loss beta=0.25.
Codes whose usage average falls far below the mean are restarted at random encodings from the batch (Dhariwal
et al. 2020, Jukebox), and the codebook starts from batch encodings, which keeps usage high.
With `l2_normalize=True` encodings and codes are unit vectors and the lookup is by cosine similarity, which
with a small `code_dim` (8-32, "factorized codes") raises codebook usage (Yu et al. 2021, ViT-VQGAN, sec. 3.2).

Checkpoints are a dict {"format", "config", "state_dict"} read with `load_weights` only (`torch.load` with
`weights_only=True`), which refuses files holding pickled objects; the training loop reads its checkpoints with it too.
"""
from __future__ import annotations

import math
import os
import pickle
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

CHECKPOINT_FORMAT = "wudao-vq/1"
_OPTIONAL_BUFFERS = ("quantizer.cluster_size", "quantizer.embed_avg", "quantizer.initialized")
_DISTANCE_CHUNK = 4096  # encodings per distance block: bounds the [rows, codebook_size] matrix


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read as weights or does not fit the config."""


@dataclass(frozen=True)
class VQConfig:
    """Model shape. `downsample` must equal 2 ** (len(channel_mult) - 1): one stride-2 stage between levels."""

    resolution: int = 256
    in_channels: int = 3
    channels: int = 64
    channel_mult: tuple[int, ...] = (1, 2, 2, 4)
    num_res_blocks: int = 2
    codebook_size: int = 8192
    code_dim: int = 256
    downsample: int = 8
    ema: bool = True
    decay: float = 0.99
    commitment: float = 0.25
    eps: float = 1e-5
    restart_dead_codes: bool = True
    restart_threshold: float = 0.03  # a code is dead below this fraction of the mean usage average
    l2_normalize: bool = False  # cosine lookup on unit vectors (ViT-VQGAN); off keeps plain squared-L2 VQ-VAE

    def __post_init__(self) -> None:
        object.__setattr__(self, "channel_mult", tuple(int(m) for m in self.channel_mult))
        problems = []
        if self.downsample < 1 or self.downsample & (self.downsample - 1):
            problems.append(f"downsample {self.downsample} is not a power of 2")
        elif self.downsample != 2 ** (len(self.channel_mult) - 1):
            problems.append(f"downsample {self.downsample} does not match {len(self.channel_mult) - 1} "
                            f"stride-2 stages (channel_mult {self.channel_mult})")
        if not self.channel_mult or min(self.channel_mult) < 1:
            problems.append("channel_mult needs positive multipliers")
        if self.resolution < 1 or self.resolution % max(self.downsample, 1):
            problems.append(f"resolution {self.resolution} is not a multiple of downsample {self.downsample}")
        for name in ("in_channels", "channels", "codebook_size", "code_dim"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be positive")
        if self.num_res_blocks < 0:
            problems.append("num_res_blocks must be >= 0")
        if not 0.0 < self.decay < 1.0:
            problems.append(f"decay {self.decay} outside (0, 1)")
        if self.commitment < 0 or self.eps <= 0 or self.restart_threshold < 0:
            problems.append("commitment and restart_threshold must be >= 0, eps > 0")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def grid(self) -> int:
        """Codes per side for a `resolution` x `resolution` image."""
        return self.resolution // self.downsample

    def to_dict(self) -> dict:
        data = asdict(self)
        data["channel_mult"] = list(self.channel_mult)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "VQConfig":
        if not isinstance(data, dict):
            raise CheckpointError("config is not a dict")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise CheckpointError(f"config has unknown fields {unknown}")
        try:
            return cls(**data)
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"bad config: {exc}") from None


def _groups(channels: int) -> int:
    return math.gcd(32, channels)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, with a 1x1 projection on the skip path when the width changes."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(cin), cin, eps=1e-6)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2 = nn.GroupNorm(_groups(cout), cout, eps=1e-6)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class Encoder(nn.Module):
    def __init__(self, c: VQConfig):
        super().__init__()
        widths = [c.channels * m for m in c.channel_mult]
        self.conv_in = nn.Conv2d(c.in_channels, c.channels, 3, padding=1)
        layers: list[nn.Module] = []
        width = c.channels
        for level, out in enumerate(widths):
            for _ in range(c.num_res_blocks):
                layers.append(ResBlock(width, out))
                width = out
            if level < len(widths) - 1:
                layers.append(nn.Conv2d(width, width, 4, stride=2, padding=1))  # halves H and W exactly
        self.body = nn.Sequential(*layers)
        self.mid = ResBlock(width, width)
        self.norm_out = nn.GroupNorm(_groups(width), width, eps=1e-6)
        self.conv_out = nn.Conv2d(width, c.code_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.body(self.conv_in(x)))
        return self.conv_out(F.silu(self.norm_out(h)))


class Upsample(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.conv = nn.Conv2d(width, width, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Decoder(nn.Module):
    """The encoder in reverse: widest level first, nearest-neighbour upsampling plus conv between levels."""

    def __init__(self, c: VQConfig):
        super().__init__()
        widths = [c.channels * m for m in c.channel_mult]
        width = widths[-1]
        self.conv_in = nn.Conv2d(c.code_dim, width, 3, padding=1)
        self.mid = ResBlock(width, width)
        layers: list[nn.Module] = []
        for level in reversed(range(len(widths))):
            for _ in range(c.num_res_blocks):
                layers.append(ResBlock(width, widths[level]))
                width = widths[level]
            if level > 0:
                layers.append(Upsample(width))
        self.body = nn.Sequential(*layers)
        self.norm_out = nn.GroupNorm(_groups(width), width, eps=1e-6)
        self.conv_out = nn.Conv2d(width, c.in_channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.body(self.mid(self.conv_in(z)))
        return self.conv_out(F.silu(self.norm_out(h)))


class VectorQuantizer(nn.Module):
    """Nearest-code lookup over a [codebook_size, code_dim] codebook.

    Buffers: `cluster_size` (moving average of per-batch assignment counts; drives EMA updates and dead-code
    restarts in both modes), `embed_avg` (moving average of assigned encodings' sums, EMA mode), `initialized`.
    """

    def __init__(self, c: VQConfig):
        super().__init__()
        self.config = c
        embedding = torch.randn(c.codebook_size, c.code_dim) / math.sqrt(c.code_dim)
        if c.ema:
            self.register_buffer("embedding", embedding)
        else:
            self.embedding = nn.Parameter(embedding)
        self.register_buffer("cluster_size", torch.zeros(c.codebook_size))
        self.register_buffer("embed_avg", embedding.clone())
        self.register_buffer("initialized", torch.tensor(False))

    def _prepare(self, flat: torch.Tensor) -> torch.Tensor:
        """Encodings as looked up: unit rows when `l2_normalize`, else unchanged."""
        return F.normalize(flat, dim=1) if self.config.l2_normalize else flat

    def codebook(self) -> torch.Tensor:
        """The [codebook_size, code_dim] code vectors as used (unit rows when `l2_normalize`)."""
        return F.normalize(self.embedding, dim=1) if self.config.l2_normalize else self.embedding

    def nearest(self, flat: torch.Tensor) -> torch.Tensor:
        """Index of the nearest code (squared L2) for each row of `flat` [N, code_dim], taken as looked up."""
        codebook = self.codebook().detach()
        sq = codebook.pow(2).sum(1)
        out = []
        for block in flat.detach().split(_DISTANCE_CHUNK):
            dist = sq.unsqueeze(0) - 2.0 * block @ codebook.t()  # ||z||^2 is constant per row
            out.append(dist.argmin(1))
        return torch.cat(out) if out else torch.zeros(0, dtype=torch.long, device=flat.device)

    def codes(self, z: torch.Tensor) -> torch.Tensor:
        """[B, D, h, w] encodings -> [B, h, w] codes."""
        b, d, h, w = z.shape
        return self.nearest(self._prepare(z.permute(0, 2, 3, 1).reshape(-1, d))).view(b, h, w)

    def embed(self, codes: torch.Tensor) -> torch.Tensor:
        """[B, h, w] codes -> [B, D, h, w] codebook vectors."""
        return F.embedding(codes, self.codebook()).permute(0, 3, 1, 2).contiguous()

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns (straight-through quantized z, vq loss, codes)."""
        b, d, h, w = z.shape
        flat = self._prepare(z.permute(0, 2, 3, 1).reshape(-1, d))
        if self.training and not bool(self.initialized):
            self._initialize(flat.detach())
        codes = self.nearest(flat)
        quant = F.embedding(codes, self.codebook())
        loss = self.config.commitment * F.mse_loss(flat, quant.detach())
        if not self.config.ema:
            loss = loss + F.mse_loss(quant, flat.detach())
        if self.training:
            self._update(flat.detach(), codes)
        quant = flat + (quant - flat).detach()  # straight-through estimator
        return quant.view(b, h, w, d).permute(0, 3, 1, 2).contiguous(), loss, codes.view(b, h, w)

    @staticmethod
    def _sample(flat: torch.Tensor, n: int) -> torch.Tensor:
        """`n` random rows of `flat`, with a little noise when rows must repeat."""
        idx = torch.randint(0, flat.shape[0], (n,), device=flat.device)
        rows = flat[idx]
        if n > flat.shape[0]:
            rows = rows + 1e-3 * flat.std().clamp_min(1e-6) * torch.randn_like(rows)
        return rows

    @torch.no_grad()
    def _initialize(self, flat: torch.Tensor) -> None:
        c = self.config
        start = self._sample(flat, c.codebook_size)
        usage = flat.shape[0] / c.codebook_size
        self.embedding.data.copy_(start)
        self.cluster_size.fill_(usage)
        self.embed_avg.copy_(start * usage)
        self.initialized.fill_(True)

    @torch.no_grad()
    def _update(self, flat: torch.Tensor, codes: torch.Tensor) -> None:
        c = self.config
        counts = torch.bincount(codes, minlength=c.codebook_size).to(flat.dtype)
        self.cluster_size.mul_(c.decay).add_(counts, alpha=1 - c.decay)
        if c.ema:
            sums = torch.zeros_like(self.embed_avg).index_add_(0, codes, flat)
            self.embed_avg.mul_(c.decay).add_(sums, alpha=1 - c.decay)
            n = self.cluster_size.sum()
            smoothed = (self.cluster_size + c.eps) / (n + c.codebook_size * c.eps) * n  # Laplace smoothing
            self.embedding.data.copy_(self._prepare(self.embed_avg / smoothed.unsqueeze(1)))
        if c.restart_dead_codes:
            self._restart(flat)

    @torch.no_grad()
    def _restart(self, flat: torch.Tensor) -> None:
        mean = self.cluster_size.mean()
        dead = (self.cluster_size < self.config.restart_threshold * mean).nonzero().squeeze(1)
        if dead.numel() == 0:
            return
        fresh = self._sample(flat, dead.numel())
        self.embedding.data[dead] = fresh
        self.cluster_size[dead] = mean
        self.embed_avg[dead] = fresh * mean

    def alive_fraction(self) -> float:
        """Fraction of codes whose usage average is at or above the restart threshold."""
        mean = self.cluster_size.mean()
        return float((self.cluster_size >= self.config.restart_threshold * mean).float().mean())


class VQVAE(nn.Module):
    def __init__(self, config: VQConfig | None = None):
        super().__init__()
        self.config = config or VQConfig()
        self.encoder = Encoder(self.config)
        self.quantizer = VectorQuantizer(self.config)
        self.decoder = Decoder(self.config)

    def _check_images(self, x: torch.Tensor) -> None:
        c = self.config
        if x.dim() != 4 or x.shape[1] != c.in_channels:
            raise ValueError(f"expected images [B, {c.in_channels}, H, W], got {tuple(x.shape)}")
        if x.shape[2] % c.downsample or x.shape[3] % c.downsample:
            raise ValueError(f"image size {tuple(x.shape[2:])} is not a multiple of {c.downsample}")
        if not x.is_floating_point():
            raise ValueError(f"expected a float tensor in [-1, 1], got {x.dtype}")

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x [B, C, H, W] in [-1, 1] -> (reconstruction, vq loss, codes [B, H/d, W/d])."""
        self._check_images(x)
        quant, vq_loss, codes = self.quantizer(self.encoder(x))
        return self.decoder(quant), vq_loss, codes

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Images [B, C, H, W] in [-1, 1] -> LongTensor codes [B, H/d, W/d]; never updates the codebook."""
        self._check_images(x)
        return self.quantizer.codes(self.encoder(x))

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes [B, h, w] -> images [B, C, h*d, w*d] clamped to [-1, 1]."""
        if codes.dim() != 3 or codes.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"expected integer codes [B, h, w], got {codes.dtype} {tuple(codes.shape)}")
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.config.codebook_size):
            raise ValueError(f"codes outside 0..{self.config.codebook_size - 1}")
        return self.decoder(self.quantizer.embed(codes.long())).clamp(-1.0, 1.0)

    def save(self, path: str) -> None:
        """Write {"format", "config", "state_dict"} (tensors and plain values only) atomically."""
        state = {k: v.detach().cpu() for k, v in self.state_dict().items()}
        payload = {"format": CHECKPOINT_FORMAT, "config": self.config.to_dict(), "state_dict": state}
        torch.save(payload, path + ".tmp")
        os.replace(path + ".tmp", path)

    @classmethod
    def load(cls, path: str, map_location: str | torch.device = "cpu") -> "VQVAE":
        """Read a checkpoint written by `save`; CheckpointError names what is wrong."""
        payload = load_weights(path, map_location)
        if not isinstance(payload, dict) or "config" not in payload or "state_dict" not in payload:
            raise CheckpointError(f"{path}: not a VQ checkpoint (needs 'config' and 'state_dict')")
        if payload.get("format", CHECKPOINT_FORMAT) != CHECKPOINT_FORMAT:
            raise CheckpointError(f"{path}: unknown format {payload.get('format')!r}")
        model = cls(VQConfig.from_dict(payload["config"]))
        load_checked(model, payload["state_dict"], path, allow_missing=())
        return model


def load_state_dict_checkpoint(path: str, config: VQConfig, map_location: str | torch.device = "cpu") -> VQVAE:
    """A VQVAE of `config` from a user's state dict: plain, or under "state_dict"/"model"; "module." stripped.

    Codebook statistics buffers may be absent (a model trained elsewhere); they are rebuilt from the codebook.
    """
    payload = load_weights(path, map_location)
    state = payload
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: no state dict of tensors found")
    state = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}
    model = VQVAE(config)
    missing = load_checked(model, state, path, allow_missing=_OPTIONAL_BUFFERS)
    q = model.quantizer
    with torch.no_grad():
        if "quantizer.cluster_size" in missing:
            q.cluster_size.fill_(1.0)
        if "quantizer.embed_avg" in missing:
            q.embed_avg.copy_(q.embedding * q.cluster_size.unsqueeze(1))
        if "quantizer.initialized" in missing:
            q.initialized.fill_(True)
    return model


def load_weights(path: str, map_location: str | torch.device = "cpu") -> object:
    """`torch.load(path, weights_only=True)`: the one way this project reads a checkpoint (VQ or training).

    A file holding pickled objects, which could run code when loaded, is refused unread; a file that is not a
    torch checkpoint (empty, truncated, other bytes) is reported. Both raise CheckpointError naming the file."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such file") from None
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    except pickle.UnpicklingError as exc:
        if "Unsupported global" in str(exc):  # torch's weights-only unpickler met a class or function
            raise CheckpointError(
                f"{path}: refused: it holds objects that could run code when loaded. Only checkpoints written by "
                "`wudao train` or `wudao tokenizer train-vq` and plain state dicts of tensors load.") from None
        detail = "UnpicklingError"  # torch's text here suggests weights_only=False: not repeated
    except Exception as exc:  # RuntimeError (bad zip), EOFError (empty), KeyError... for other bytes
        first = str(exc).strip().split("\n")[0].split(". ")[0][:160]
        detail = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    raise CheckpointError(f"{path}: cannot be read as a torch checkpoint "
                          f"(empty, truncated or another kind of file): {detail}")


def load_checked(model: nn.Module, state: dict, path: str, allow_missing: tuple[str, ...]) -> set[str]:
    """Load `state` into `model` after checking names and shapes; returns the allowed missing names."""
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: state_dict is not a dict")
    expected = model.state_dict()
    missing = set(expected) - set(state)
    unexpected = sorted(set(state) - set(expected))
    hard_missing = sorted(missing - set(allow_missing))
    bad_shape = [f"{k} {tuple(getattr(state[k], 'shape', ()))} != {tuple(v.shape)}" for k, v in expected.items()
                 if k in state and (not isinstance(state[k], torch.Tensor) or state[k].shape != v.shape)]
    problems = []
    if hard_missing:
        problems.append(f"missing {len(hard_missing)} keys, e.g. {hard_missing[:3]}")
    if unexpected:
        problems.append(f"unexpected {len(unexpected)} keys, e.g. {unexpected[:3]}")
    if bad_shape:
        problems.append(f"{len(bad_shape)} shape mismatches, e.g. {bad_shape[:2]}")
    if problems:
        raise CheckpointError(f"{path}: state dict does not fit the config: " + "; ".join(problems))
    model.load_state_dict(state, strict=False)
    return missing
