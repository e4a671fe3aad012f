"""Image-text alignment: a CLIP-style dual encoder that scores how well a caption matches its image.

The model is the CLIP architecture (Radford et al. 2021) in OpenCLIP's parameter layout: a ViT image encoder
(`visual.conv1` patches, `visual.class_embedding`, pre/post LayerNorm, `visual.proj`) and a causal text
transformer (`token_embedding`, `positional_embedding`, `ln_final`, `text_projection`), residual blocks of
`ln_1`, `attn` (`nn.MultiheadAttention`: `in_proj_weight`, `out_proj`), `ln_2`, `mlp.c_fc`, `mlp.c_proj`, and a
learned `logit_scale`. Its widths are a config, so the same class is the small model trained here
(`save` / `load`: config + weights) and a user's OpenCLIP ViT checkpoint (`load_openclip`: the config is read off
the state dict's shapes, as OpenAI's `build_model` does; heads = width / 64, CLIP's head size).

The score of a pair is the cosine similarity of the two embeddings (in [-1, 1]); training minimises the
symmetric contrastive (InfoNCE) loss over a batch, image-to-text and text-to-image (CLIP, sec. 2.3).
Images are prepared as CLIP does (`preprocess`): shortest side resized to the model's resolution (bicubic),
centre crop, RGB, normalised with CLIP's dataset mean and standard deviation.

Files are read weights-only (`tokenizer.vq.load_weights`): a file holding pickled objects is refused unread, and a
state dict that does not fit the model names its missing, unexpected and mis-shaped keys.
"""
from __future__ import annotations

import math
import re
from collections import OrderedDict
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F

from tokenizer.vq import CheckpointError, load_checked, load_weights

CHECKPOINT_FORMAT = "wudao-alignment-1"
#: CLIP's image normalisation (OpenAI's dataset statistics, used by OpenCLIP's `OPENAI_DATASET_MEAN` / `_STD`)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
HEAD_WIDTH = 64
#: keys OpenAI's released checkpoints carry besides the weights (OpenAI `build_model` drops them too)
_OPENAI_EXTRAS = ("input_resolution", "context_length", "vocab_size")
#: BERT keys a Chinese-CLIP checkpoint may carry that the scorer does not use (the pooler, HF's position ids buffer)
_UNUSED_BERT = ("bert.pooler.", "bert.embeddings.position_ids")


@dataclass(frozen=True)
class AlignmentConfig:
    """Widths and depths of both encoders. Defaults: the small model trained here (about 1.4 M parameters with a
    4000-piece vocabulary)."""

    embed_dim: int = 128
    image_size: int = 64
    patch_size: int = 8
    vision_width: int = 128
    vision_layers: int = 2
    vision_heads: int = 2
    vocab_size: int = 8000
    context_length: int = 64
    text_width: int = 128
    text_layers: int = 2
    text_heads: int = 2
    mlp_ratio: float = 4.0
    quick_gelu: bool = False   # OpenAI's own weights use x * sigmoid(1.702 x); OpenCLIP's models nn.GELU
    text_tower: str = "clip"   # "bert": Chinese-CLIP's BERT text encoder (cleaners.image.bert_text)
    text_mlp: int = 0          # the BERT tower's intermediate width (0: text_width * mlp_ratio)

    def __post_init__(self) -> None:
        problems = []
        if self.image_size % self.patch_size:
            problems.append(f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")
        for width, heads, name in ((self.vision_width, self.vision_heads, "vision"),
                                   (self.text_width, self.text_heads, "text")):
            if heads <= 0 or width % heads:
                problems.append(f"{name}_width {width} does not split into {heads} heads")
        if self.text_tower not in ("clip", "bert"):
            problems.append(f"text_tower must be 'clip' or 'bert', not {self.text_tower!r}")
        if min(self.embed_dim, self.vision_layers, self.text_layers, self.vocab_size, self.context_length) <= 0:
            problems.append("sizes must be positive")
        if problems:
            raise ValueError("; ".join(problems))

    @classmethod
    def from_dict(cls, values: dict) -> "AlignmentConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise CheckpointError(f"alignment config has unknown fields {unknown}")
        try:
            return cls(**values)
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"bad alignment config: {exc}") from None


class QuickGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class ResidualBlock(nn.Module):
    """Pre-LayerNorm transformer block with CLIP's parameter names."""

    def __init__(self, width: int, heads: int, mlp_ratio: float, quick_gelu: bool):
        super().__init__()
        hidden = int(width * mlp_ratio)
        self.ln_1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(OrderedDict([("c_fc", nn.Linear(width, hidden)),
                                              ("gelu", QuickGELU() if quick_gelu else nn.GELU()),
                                              ("c_proj", nn.Linear(hidden, width))]))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False, attn_mask=mask)[0]
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int, mlp_ratio: float, quick_gelu: bool):
        super().__init__()
        self.resblocks = nn.ModuleList(ResidualBlock(width, heads, mlp_ratio, quick_gelu) for _ in range(layers))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        for block in self.resblocks:
            x = block(x, mask)
        return x


class VisionTransformer(nn.Module):
    def __init__(self, c: AlignmentConfig):
        super().__init__()
        scale = c.vision_width ** -0.5
        grid = c.image_size // c.patch_size
        self.conv1 = nn.Conv2d(3, c.vision_width, kernel_size=c.patch_size, stride=c.patch_size, bias=False)
        self.class_embedding = nn.Parameter(scale * torch.randn(c.vision_width))
        self.positional_embedding = nn.Parameter(scale * torch.randn(grid * grid + 1, c.vision_width))
        self.ln_pre = nn.LayerNorm(c.vision_width)
        self.transformer = Transformer(c.vision_width, c.vision_layers, c.vision_heads, c.mlp_ratio, c.quick_gelu)
        self.ln_post = nn.LayerNorm(c.vision_width)
        self.proj = nn.Parameter(scale * torch.randn(c.vision_width, c.embed_dim))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.conv1(images).flatten(2).transpose(1, 2)                       # [B, patches, width]
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)
        x = self.transformer(self.ln_pre(x))
        return self.ln_post(x[:, 0]) @ self.proj


class DualEncoder(nn.Module):
    """CLIP in OpenCLIP's layout. `encode_image` takes preprocessed images [B, 3, S, S]; `encode_text` token ids
    [B, T] (T <= context_length) and each text's length: the embedding is read at its last token (CLIP's EOT), or
    at `[CLS]` with Chinese-CLIP's BERT tower (`text_tower="bert"`)."""

    def __init__(self, config: AlignmentConfig | None = None):
        super().__init__()
        c = self.config = config or AlignmentConfig()
        self.visual = VisionTransformer(c)
        if c.text_tower == "bert":
            from cleaners.image.bert_text import BertTextTower

            self.bert = BertTextTower(c.vocab_size, c.context_length, c.text_width, c.text_layers, c.text_heads,
                                      c.text_mlp or int(c.text_width * c.mlp_ratio))
        else:
            self.token_embedding = nn.Embedding(c.vocab_size, c.text_width)
            self.positional_embedding = nn.Parameter(0.01 * torch.randn(c.context_length, c.text_width))
            self.transformer = Transformer(c.text_width, c.text_layers, c.text_heads, c.mlp_ratio, c.quick_gelu)
            self.ln_final = nn.LayerNorm(c.text_width)
            nn.init.normal_(self.token_embedding.weight, std=0.02)
        self.text_projection = nn.Parameter(c.text_width ** -0.5 * torch.randn(c.text_width, c.embed_dim))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))   # CLIP's initial temperature

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        c = self.config
        if images.ndim != 4 or images.shape[1:] != (3, c.image_size, c.image_size):
            raise ValueError(f"expected images [B, 3, {c.image_size}, {c.image_size}], got {tuple(images.shape)}")
        return self.visual(images)

    def encode_text(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        c = self.config
        if ids.ndim != 2 or not 0 < ids.shape[1] <= c.context_length:
            raise ValueError(f"expected token ids [B, T<={c.context_length}], got {tuple(ids.shape)}")
        if lengths.shape != ids.shape[:1] or bool((lengths < 1).any()) or bool((lengths > ids.shape[1]).any()):
            raise ValueError("lengths must give each text's token count, 1..T")
        if bool((ids < 0).any()) or bool((ids >= c.vocab_size).any()):
            raise ValueError(f"token ids outside 0..{c.vocab_size - 1}")
        if c.text_tower == "bert":
            return self.bert(ids, lengths) @ self.text_projection     # Chinese-CLIP reads [CLS]
        t = ids.shape[1]
        x = self.token_embedding(ids) + self.positional_embedding[:t]
        causal = torch.full((t, t), float("-inf"), device=ids.device).triu(1)
        x = self.ln_final(self.transformer(x, causal))
        return x[torch.arange(x.shape[0], device=ids.device), lengths - 1] @ self.text_projection

    def forward(self, images: torch.Tensor, ids: torch.Tensor, lengths: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Unit-length image and text embeddings."""
        return (F.normalize(self.encode_image(images), dim=-1),
                F.normalize(self.encode_text(ids, lengths), dim=-1))

    def save(self, path: str) -> None:
        torch.save({"format": CHECKPOINT_FORMAT, "config": asdict(self.config), "state_dict": self.state_dict()},
                   path)

    @classmethod
    def load(cls, path: str, map_location: str | torch.device = "cpu") -> "DualEncoder":
        """A model written by `save`; CheckpointError names what is wrong."""
        payload = load_weights(path, map_location)
        if not isinstance(payload, dict) or "config" not in payload or "state_dict" not in payload:
            raise CheckpointError(f"{path}: not an alignment checkpoint (needs 'config' and 'state_dict'); "
                                  "an OpenCLIP state dict loads with load_openclip")
        if payload.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointError(f"{path}: unknown format {payload.get('format')!r}")
        model = cls(AlignmentConfig.from_dict(payload["config"]))
        load_checked(model, payload["state_dict"], path, allow_missing=())
        return model.eval()


def contrastive_loss(image_emb: torch.Tensor, text_emb: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """CLIP's symmetric InfoNCE over a batch of matching pairs (row i of each is one pair); the scale is
    clamped at 100, as CLIP does."""
    logits = logit_scale.exp().clamp(max=100) * image_emb @ text_emb.t()
    labels = torch.arange(len(logits), device=logits.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2


def _layers(state: dict[str, torch.Tensor], pattern: str) -> int:
    found = re.compile(pattern)
    return len({m.group(1) for key in state for m in [found.match(key)] if m})


def openclip_config(state: dict[str, torch.Tensor], quick_gelu: bool = False) -> AlignmentConfig:
    """The config of an OpenCLIP / OpenAI CLIP ViT state dict, or of a Chinese-CLIP one (a `bert.*` text tower),
    read off its shapes."""
    bert = "bert.embeddings.word_embeddings.weight" in state
    text_keys = (("bert.embeddings.position_embeddings.weight", "bert.encoder.layer.0.intermediate.dense.weight")
                 if bert else ("token_embedding.weight", "positional_embedding", "ln_final.weight"))
    needed = ("visual.conv1.weight", "visual.positional_embedding", "text_projection",
              "visual.transformer.resblocks.0.mlp.c_fc.weight", *text_keys)
    absent = [key for key in needed if key not in state]
    if absent:
        raise CheckpointError(f"not an OpenCLIP / Chinese-CLIP ViT state dict: no {absent[:3]} (ResNet image "
                              "towers are not this layout)")
    conv = state["visual.conv1.weight"]
    vision_width, patch = conv.shape[0], conv.shape[-1]
    grid = round((state["visual.positional_embedding"].shape[0] - 1) ** 0.5)
    mlp_ratio = state["visual.transformer.resblocks.0.mlp.c_fc.weight"].shape[0] / vision_width
    if bert:
        words = state["bert.embeddings.word_embeddings.weight"]
        text = dict(vocab_size=words.shape[0], text_width=words.shape[1], text_tower="bert",
                    context_length=state["bert.embeddings.position_embeddings.weight"].shape[0],
                    text_layers=_layers(state, r"bert\.encoder\.layer\.(\d+)\."),
                    text_mlp=state["bert.encoder.layer.0.intermediate.dense.weight"].shape[0])
    else:
        text = dict(vocab_size=state["token_embedding.weight"].shape[0], text_width=state["ln_final.weight"].shape[0],
                    context_length=state["positional_embedding"].shape[0],
                    text_layers=_layers(state, r"transformer\.resblocks\.(\d+)\."))
    try:
        return AlignmentConfig(
            embed_dim=state["text_projection"].shape[1], image_size=grid * patch, patch_size=patch,
            vision_width=vision_width, vision_layers=_layers(state, r"visual\.transformer\.resblocks\.(\d+)\."),
            vision_heads=max(1, vision_width // HEAD_WIDTH), text_heads=max(1, text["text_width"] // HEAD_WIDTH),
            mlp_ratio=mlp_ratio, quick_gelu=quick_gelu, **text)
    except ValueError as exc:
        raise CheckpointError(f"state dict gives an impossible config: {exc}") from None


def _state_dict_of(path: str, map_location: str | torch.device) -> dict[str, torch.Tensor]:
    """A plain state dict or one under "state_dict", with DDP's "module." prefix and non-weights dropped."""
    payload = load_weights(path, map_location)
    state = payload.get("state_dict", payload) if isinstance(payload, dict) else payload
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: no state dict of tensors found")
    state = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}
    return {k: v for k, v in state.items() if k not in _OPENAI_EXTRAS and not k.startswith(_UNUSED_BERT)}


def load_openclip(path: str, *, quick_gelu: bool = False, map_location: str | torch.device = "cpu") -> DualEncoder:
    """A user's OpenCLIP (or OpenAI CLIP) ViT checkpoint, or a Chinese-CLIP ViT one (its `bert.*` text tower is
    recognised: `load_chinese_clip` is this function): a plain state dict, or one under "state_dict"; a "module."
    prefix (DDP) is stripped. `quick_gelu=True` for OpenAI's own weights (OpenCLIP's `-quickgelu` models). Its text
    side expects the ids of the tokenizer it was trained with (CLIP's BPE; Chinese-CLIP's WordPiece)."""
    state = _state_dict_of(path, map_location)
    try:
        config = openclip_config(state, quick_gelu)
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    model = DualEncoder(config)
    load_checked(model, state, path, allow_missing=())
    return model.eval()


load_chinese_clip = load_openclip


def preprocess(image: Image.Image, size: int, crop: bool = True) -> torch.Tensor:
    """CLIP's image transform: RGB, shortest side to `size` (bicubic), centre crop, normalised. [3, size, size].
    `crop=False` is Chinese-CLIP's: the whole image resized to the square. Transparent pixels are laid on white
    first (a bare RGB conversion would show whatever colour they hold)."""
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        image = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image.alpha_composite(rgba)
    image = image.convert("RGB")
    if not crop:
        image = image.resize((size, size), Image.BICUBIC)
    width, height = image.size
    scale = size / min(width, height)
    resized = image.resize((max(size, round(width * scale)), max(size, round(height * scale))), Image.BICUBIC)
    left, top = (resized.width - size) // 2, (resized.height - size) // 2
    pixels = np.asarray(resized.crop((left, top, left + size, top + size)), dtype=np.float32) / 255.0
    pixels = (pixels - np.array(CLIP_MEAN, dtype=np.float32)) / np.array(CLIP_STD, dtype=np.float32)
    return torch.from_numpy(pixels.transpose(2, 0, 1).copy())


def pad_ids(sequences: list[list[int]], context_length: int, pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Token id lists -> ([B, T] ids, lengths), each cut to `context_length` tokens (T: the longest kept)."""
    kept = [list(ids[:context_length]) or [pad_id] for ids in sequences]
    width = max(len(ids) for ids in kept)
    ids = torch.full((len(kept), width), pad_id, dtype=torch.long)
    for row, seq in enumerate(kept):
        ids[row, :len(seq)] = torch.tensor(seq, dtype=torch.long)
    return ids, torch.tensor([len(seq) for seq in kept], dtype=torch.long)
