"""`wudao sample`: a caption -> image codes from a trained CogView checkpoint -> a PNG through the VQ decoder
(CogView, Ding et al. 2021, sec. 2: text tokens, then image tokens sampled one by one, then the VQ decoder);
with `candidates` > 1, self-reranking (sec. 4.2) keeps the candidate with the best caption score.
Checkpoints and VQ weights load weights-only (`tokenizer.vq.load_weights`): files holding pickled objects are
refused."""
from __future__ import annotations

import torch

from train.configs import Config


def load_checkpoint_model(path: str, device: str = "cpu"):
    """(model, config, kind) from a `ckpt.pt` written by the training loop; CheckpointError when refused or unfit."""
    from tokenizer.vq import CheckpointError
    from train.loop import build_model, load_checkpoint

    state = load_checkpoint(path, device)
    kind = state.get("kind", "cogview")
    try:
        data = dict(state["config"])
        data["betas"] = tuple(data.get("betas", (0.9, 0.95)))
        cfg = Config(**data)
        model = build_model(kind, cfg).to(device)
        model.load_state_dict(state["model"])
    except (AttributeError, KeyError, TypeError, ValueError, RuntimeError) as exc:
        why = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        raise CheckpointError(f"{path}: not a usable wudao training checkpoint ({why})") from None
    return model.eval(), cfg, kind


def sample_image(checkpoint: str, tokenizer_dir: str, vq_path: str, caption: str, output: str, *,
                 temperature: float = 1.0, top_k: int | None = 100, seed: int = 0, device: str = "cpu",
                 max_text_tokens: int = 64, top_p: float | None = None, candidates: int = 1) -> dict:
    """Sample `candidates` images for `caption`; with more than one, they are re-ranked by caption score
    (`caption_scores`, which needs a model trained with `caption_share` > 0) and the best is written."""
    from PIL import Image

    from tokenizer.text import TextTokenizer
    from tokenizer.vq import VQVAE
    from train.cogview_model import caption_scores, generate_image_codes

    model, cfg, kind = load_checkpoint_model(checkpoint, device)
    if kind != "cogview":
        raise ValueError(f"{checkpoint} is a {kind} checkpoint; sampling images needs a cogview one")
    tok = TextTokenizer.load(tokenizer_dir)
    vq = VQVAE.load(vq_path, map_location=device).eval()
    if vq.config.codebook_size > tok.vocab.image_codes:
        raise ValueError("the VQ has more codes than the id space reserves")
    text_ids = tok.encode(caption)[:max_text_tokens]
    generator = torch.Generator().manual_seed(seed)
    codes = generate_image_codes(model, text_ids, tok.vocab, grid=vq.config.grid, temperature=temperature,
                                 top_k=top_k, top_p=top_p, generator=generator, num_codes=vq.config.codebook_size,
                                 num_samples=candidates)
    scores = None
    if candidates > 1:   # CogView's self-reranking: the candidate whose image best predicts the caption
        scores = caption_scores(model, text_ids, codes, tok.vocab)
        order = torch.argsort(scores, descending=True)
        codes, scores = codes[order], scores[order].tolist()
    image = vq.decode(codes[:1].reshape(1, vq.config.grid, vq.config.grid).to(device))[0]
    pixels = ((image + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    Image.fromarray(pixels).save(output)
    return {"output": output, "caption": caption, "text_tokens": len(text_ids), "codes": codes[0].tolist(),
            "candidates": candidates, "caption_scores": scores}
