"""The CLIP-style dual encoder (`cleaners.image.alignment`): OpenCLIP's layout loads, checkpoints round-trip,
bad files are refused with their reason, CLIP's preprocessing, pooling at each text's last token, the loss."""
from __future__ import annotations

from dataclasses import asdict, replace

import pytest
import torch
from PIL import Image

from cleaners.image.alignment import (CLIP_MEAN, CLIP_STD, AlignmentConfig, DualEncoder, contrastive_loss,
                                      load_openclip, openclip_config, pad_ids, preprocess)
from tokenizer.vq import CheckpointError

#: a model whose heads follow CLIP's 64-wide rule, so its config can be read back off the shapes
SMALL = AlignmentConfig(embed_dim=32, image_size=32, patch_size=8, vision_width=64, vision_layers=2, vision_heads=1,
                        vocab_size=50, context_length=16, text_width=128, text_layers=3, text_heads=2, mlp_ratio=2.0)


def _model(config: AlignmentConfig = SMALL, seed: int = 0) -> DualEncoder:
    torch.manual_seed(seed)
    return DualEncoder(config).eval()


def _batch(config: AlignmentConfig = SMALL, n: int = 3, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(n, 3, config.image_size, config.image_size, generator=g)
    ids = torch.randint(0, config.vocab_size, (n, 10), generator=g)
    return images, ids, torch.tensor([10, 4, 7][:n])


def test_parameter_names_are_openclips():
    names = set(_model().state_dict())
    for key in ("visual.conv1.weight", "visual.class_embedding", "visual.positional_embedding", "visual.ln_pre.weight",
                "visual.transformer.resblocks.1.attn.in_proj_weight", "visual.transformer.resblocks.1.mlp.c_fc.bias",
                "visual.ln_post.bias", "visual.proj", "token_embedding.weight", "positional_embedding",
                "transformer.resblocks.2.attn.out_proj.weight", "transformer.resblocks.0.ln_2.weight",
                "ln_final.weight", "text_projection", "logit_scale"):
        assert key in names
    assert "visual.conv1.bias" not in names and not any("attn_mask" in k for k in names)


@pytest.mark.parametrize("wrap", ["plain", "state_dict", "module", "openai_extras"])
def test_an_openclip_state_dict_loads_with_its_config_read_off_the_shapes(tmp_path, wrap):
    model = _model()
    state = model.state_dict()
    if wrap == "module":
        state = {"module." + k: v for k, v in state.items()}
    if wrap == "openai_extras":
        state = {**state, "input_resolution": torch.tensor(32), "context_length": torch.tensor(16),
                 "vocab_size": torch.tensor(50)}
    torch.save({"state_dict": state, "epoch": 3} if wrap == "state_dict" else state, tmp_path / "clip.pt")
    loaded = load_openclip(str(tmp_path / "clip.pt"))
    assert loaded.config == SMALL
    images, ids, lengths = _batch()
    with torch.no_grad():
        for got, want in zip(loaded(images, ids, lengths), model(images, ids, lengths)):
            torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_quick_gelu_is_the_callers_word_and_changes_the_outputs(tmp_path):
    torch.save(_model().state_dict(), tmp_path / "clip.pt")
    plain, quick = load_openclip(str(tmp_path / "clip.pt")), load_openclip(str(tmp_path / "clip.pt"), quick_gelu=True)
    assert quick.config == replace(SMALL, quick_gelu=True)
    images, ids, lengths = _batch()
    with torch.no_grad():
        assert not torch.allclose(plain.encode_image(images), quick.encode_image(images))


def test_bad_files_are_refused_with_their_reason(tmp_path):
    state = _model().state_dict()
    broken = dict(state)
    broken["visual.proj"] = torch.zeros(64, 16)          # projection to 16 dims, text_projection to 32
    torch.save(broken, tmp_path / "shape.pt")
    with pytest.raises(CheckpointError, match="shape mismatches.*visual.proj"):
        load_openclip(str(tmp_path / "shape.pt"))
    torch.save({k: v for k, v in state.items() if k != "ln_final.weight"}, tmp_path / "missing.pt")
    with pytest.raises(CheckpointError, match="not an OpenCLIP"):
        load_openclip(str(tmp_path / "missing.pt"))
    torch.save({k: v for k, v in state.items() if k != "visual.ln_pre.bias"}, tmp_path / "missing2.pt")
    with pytest.raises(CheckpointError, match="missing 1 keys.*visual.ln_pre.bias"):
        load_openclip(str(tmp_path / "missing2.pt"))
    torch.save({**state, "extra.weight": torch.zeros(1)}, tmp_path / "extra.pt")
    with pytest.raises(CheckpointError, match="unexpected 1 keys"):
        load_openclip(str(tmp_path / "extra.pt"))
    torch.save({"weights": state, "hook": Image.new}, tmp_path / "pickled.pt")     # a callable: could run code
    with pytest.raises(CheckpointError, match="refused"):
        load_openclip(str(tmp_path / "pickled.pt"))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_openclip(str(tmp_path / "junk.pt"))
    torch.save(state, tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="load_openclip"):
        DualEncoder.load(str(tmp_path / "plain.pt"))


def test_our_checkpoint_round_trips_with_a_config_clip_heads_would_not_give(tmp_path):
    config = AlignmentConfig()                 # 128 wide, 2 heads: not CLIP's 64-per-head rule
    model = _model(config)
    model.save(str(tmp_path / "align.pt"))
    loaded = DualEncoder.load(str(tmp_path / "align.pt"))
    assert loaded.config == config and asdict(loaded.config)["vision_heads"] == 2
    images, ids, lengths = _batch(config)
    with torch.no_grad():
        torch.testing.assert_close(loaded(images, ids, lengths)[1], model(images, ids, lengths)[1], rtol=0, atol=0)
    assert openclip_config(model.state_dict()).vision_heads == 2      # 128 / 64: the OpenCLIP rule


def test_text_embedding_is_read_at_each_texts_last_token_behind_a_causal_mask():
    model = _model()
    ids = torch.tensor([[5, 6, 7, 8, 9, 10]])
    with torch.no_grad():
        base = model.encode_text(ids, torch.tensor([4]))
        after_end = model.encode_text(torch.tensor([[5, 6, 7, 8, 1, 2]]), torch.tensor([4]))
        earlier = model.encode_text(torch.tensor([[5, 3, 7, 8, 9, 10]]), torch.tensor([4]))
        padded_batch = model.encode_text(torch.tensor([[5, 6, 7, 8, 0, 0], [1, 2, 3, 4, 5, 6]]), torch.tensor([4, 6]))
    torch.testing.assert_close(after_end, base)                 # tokens past the end change nothing
    assert not torch.allclose(earlier, base)
    torch.testing.assert_close(padded_batch[:1], base, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="lengths"):
        model.encode_text(ids, torch.tensor([7]))
    with pytest.raises(ValueError, match="token ids outside"):
        model.encode_text(torch.tensor([[50]]), torch.tensor([1]))
    with pytest.raises(ValueError, match="expected images"):
        model.encode_image(torch.zeros(1, 3, 16, 16))


def test_pad_ids_cuts_to_the_context_and_keeps_lengths():
    ids, lengths = pad_ids([[1, 2, 3], [4], list(range(1, 30))], context_length=16)
    assert ids.shape == (3, 16) and lengths.tolist() == [3, 1, 16]
    assert ids[0].tolist()[:4] == [1, 2, 3, 0] and ids[2, -1].item() == 16
    ids, lengths = pad_ids([[]], context_length=4)
    assert ids.tolist() == [[0]] and lengths.tolist() == [1]


def test_preprocess_resizes_the_short_side_and_crops_the_centre():
    image = Image.new("RGB", (120, 60), (0, 0, 255))
    image.paste((255, 0, 0), (30, 0, 90, 60))                  # the centre 60x60 square is red
    pixels = preprocess(image, 32)
    assert pixels.shape == (3, 32, 32)
    red = torch.tensor([(1 - CLIP_MEAN[0]) / CLIP_STD[0], -CLIP_MEAN[1] / CLIP_STD[1], -CLIP_MEAN[2] / CLIP_STD[2]])
    torch.testing.assert_close(pixels[:, 16, 16], red)
    torch.testing.assert_close(pixels[:, 2, 2], red, atol=0.05, rtol=0)   # bicubic edges stay within the crop
    assert preprocess(Image.new("L", (10, 40), 128), 16).shape == (3, 16, 16)   # grey, upscaled, cropped


def test_contrastive_loss_is_symmetric_and_low_only_for_matching_rows():
    emb = torch.nn.functional.normalize(torch.eye(4) + 0.01, dim=-1)
    scale = torch.tensor(4.0)                      # exp(4) ~ 55
    matched = contrastive_loss(emb, emb, scale)
    shuffled = contrastive_loss(emb, emb[[1, 0, 3, 2]], scale)
    assert matched.item() < 0.01 < 5 < shuffled.item()
    a, b = torch.randn(5, 8), torch.randn(5, 8)
    torch.testing.assert_close(contrastive_loss(a, b, scale), contrastive_loss(b, a, scale))
    assert contrastive_loss(emb, emb, torch.tensor(10.0)) == contrastive_loss(emb, emb, torch.tensor(float(
        torch.log(torch.tensor(100.0)))))          # the scale is clamped at 100


MERGES = "#version: 0.2\nh e\nl l\nhe ll\nhell o</w>\n"


def test_clip_bpe_byte_table_merges_and_ids(tmp_path):
    from cleaners.image.clip_bpe import ClipBPE, byte_chars

    table = byte_chars()
    assert len(set(table.values())) == 256 and table[ord("A")] == "A" and table[0] == chr(256)
    (tmp_path / "merges.txt").write_text(MERGES, encoding="utf-8")
    bpe = ClipBPE(str(tmp_path / "merges.txt"))
    assert len(bpe) == 256 + 256 + 4 + 2 and (bpe.start_id, bpe.end_id) == (516, 517)
    assert bpe.encode("Hello  &amp;HELLO!") == [515, 256 + 5, 515, 256]     # "&" alone: "&</w>" (byte 38)
    assert bpe.encode("hel") == [bpe.ids["he"], bpe.ids["l</w>"]]            # merges run lowest rank first
    assert bpe.encode("é") == [127, 256 + 102]                              # UTF-8 bytes c3 a9 as characters
    assert bpe.encode_captions(["hello " * 20], 6) == [[516, 515, 515, 515, 515, 517]]
    (tmp_path / "bad.txt").write_text("#version\nonly-one-token\n", encoding="utf-8")
    with pytest.raises(ValueError, match="merges"):
        ClipBPE(str(tmp_path / "bad.txt"))


def _jpeg(colour) -> bytes:
    import io

    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), colour).save(buffer, "JPEG")
    return buffer.getvalue()


def test_a_users_openclip_folder_scores_with_clip_bpe(tmp_path):
    import json

    from cleaners.image.alignment import pad_ids
    from cleaners.image.clip_bpe import ClipBPE
    from cleaners.image.scoring import AlignmentScore

    config = replace(SMALL, vocab_size=518)
    model = _model(config)
    torch.save({"state_dict": model.state_dict()}, tmp_path / "ViT-tiny.pt")
    (tmp_path / "merges.txt.gz").write_bytes(__import__("gzip").compress(MERGES.encode()))
    (tmp_path / "openclip.json").write_text(json.dumps({"weights": "ViT-tiny.pt", "bpe": "merges.txt.gz"}))
    records = [{"jpg": _jpeg((200, 30, 30)), "caption": "hello hello"}, {"jpg": _jpeg((0, 0, 0)), "caption": "he"}]
    step = AlignmentScore(model_path=str(tmp_path))
    step.score_batch(records)
    bpe = ClipBPE(str(tmp_path / "merges.txt.gz"))
    ids, lengths = pad_ids(bpe.encode_captions(["hello hello", "he"], config.context_length), config.context_length)
    pixels = torch.stack([preprocess(Image.open(__import__("io").BytesIO(r["jpg"])), 32) for r in records])
    with torch.no_grad():
        image_emb, text_emb = model(pixels, ids, lengths)
    assert [r["alignment_score"] for r in records] == [round(float(s), 4) for s in (image_emb * text_emb).sum(-1)]

    (tmp_path / "openclip.json").write_text(json.dumps({"weights": "../ViT-tiny.pt", "bpe": "merges.txt.gz"}))
    with pytest.raises(ValueError, match="outside the model folder"):
        AlignmentScore(model_path=str(tmp_path)).setup()
    (tmp_path / "short.txt").write_text("#version: 0.2\nh e\n", encoding="utf-8")
    (tmp_path / "openclip.json").write_text(json.dumps({"weights": "ViT-tiny.pt", "bpe": "short.txt"}))
    with pytest.raises(ValueError, match="515 ids.*518"):
        AlignmentScore(model_path=str(tmp_path)).setup()


VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "一", "只", "猫", "在", "草", "地", "上", "play", "##ing", "the", "!",
         "cafe"]
BERT = AlignmentConfig(embed_dim=32, image_size=32, patch_size=8, vision_width=64, vision_layers=1, vision_heads=1,
                       vocab_size=len(VOCAB), context_length=16, text_width=128, text_layers=2, text_heads=2,
                       text_tower="bert", text_mlp=256)


def test_wordpiece_splits_cjk_punctuation_and_pieces(tmp_path):
    from cleaners.image.bert_text import WordPiece

    (tmp_path / "vocab.txt").write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    wp = WordPiece(str(tmp_path / "vocab.txt"))
    assert len(wp) == 16 and (wp.cls_id, wp.sep_id, wp.unk_id) == (2, 3, 1)
    assert wp.encode("一只猫在草地上 Playing\x07 THE café!") == [4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 15, 14]
    assert wp.encode("dog 狗") == [1, 1]                              # no pieces for them: [UNK] each
    assert wp.encode_captions(["一只猫在草地上"], 5) == [[2, 4, 5, 6, 3]]
    (tmp_path / "bad.txt").write_text("a\nb\n", encoding="utf-8")
    with pytest.raises(ValueError, match="BERT vocab"):
        WordPiece(str(tmp_path / "bad.txt"))


def test_a_chinese_clip_state_dict_loads_and_reads_cls_over_unpadded_tokens(tmp_path):
    from cleaners.image.alignment import load_chinese_clip

    model = _model(BERT)
    names = set(model.state_dict())
    assert {"bert.embeddings.word_embeddings.weight", "bert.encoder.layer.1.attention.self.query.weight",
            "bert.encoder.layer.0.attention.output.LayerNorm.bias", "bert.encoder.layer.1.intermediate.dense.weight",
            "bert.encoder.layer.1.output.LayerNorm.weight", "text_projection", "visual.proj"} <= names
    assert not any(k.startswith(("token_embedding", "ln_final", "transformer.")) for k in names)
    state = {"module." + k: v.half() for k, v in model.state_dict().items()}            # Chinese-CLIP saves fp16
    state["module.bert.pooler.dense.weight"] = torch.zeros(128, 128)
    state["module.bert.embeddings.position_ids"] = torch.arange(16)[None]
    torch.save({"epoch": 3, "state_dict": state}, tmp_path / "cn_clip.pt")
    loaded = load_chinese_clip(str(tmp_path / "cn_clip.pt"))
    assert loaded.config == BERT
    images, ids, lengths = _batch(BERT)
    with torch.no_grad():
        torch.testing.assert_close(loaded(images, ids, lengths)[1], model.half().float()(images, ids, lengths)[1])
        base = loaded.encode_text(torch.tensor([[2, 4, 5, 6, 3, 0, 0]]), torch.tensor([5]))
        padded = loaded.encode_text(torch.tensor([[2, 4, 5, 6, 3, 9, 9]]), torch.tensor([5]))
        later = loaded.encode_text(torch.tensor([[2, 4, 5, 7, 3, 0, 0]]), torch.tensor([5]))
    torch.testing.assert_close(padded, base)           # what lies past the length is masked out
    assert not torch.allclose(later, base)              # [CLS] sees the whole caption (no causal mask)


def test_a_chinese_clip_folder_scores_with_wordpiece_and_uncropped_images(tmp_path):
    import io
    import json

    from cleaners.image.alignment import pad_ids
    from cleaners.image.bert_text import WordPiece
    from cleaners.image.scoring import AlignmentScore

    model = _model(replace(BERT, quick_gelu=True))
    torch.save({"state_dict": model.state_dict()}, tmp_path / "clip_cn.pt")
    (tmp_path / "vocab.txt").write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    (tmp_path / "openclip.json").write_text(json.dumps({"weights": "clip_cn.pt", "vocab": "vocab.txt",
                                                        "quick_gelu": True}))
    records = [{"jpg": _jpeg((30, 160, 30)), "caption": "一只猫在草地上"}]
    AlignmentScore(model_path=str(tmp_path)).score_batch(records)
    ids, lengths = pad_ids(WordPiece(str(tmp_path / "vocab.txt")).encode_captions(["一只猫在草地上"], 16), 16)
    pixels = preprocess(Image.open(io.BytesIO(records[0]["jpg"])), 32, crop=False)[None]
    with torch.no_grad():
        image_emb, text_emb = model(pixels, ids, lengths)
    assert records[0]["alignment_score"] == round(float((image_emb * text_emb).sum()), 4)
    (tmp_path / "merges.txt").write_text(MERGES, encoding="utf-8")
    (tmp_path / "openclip.json").write_text(json.dumps({"weights": "clip_cn.pt", "bpe": "merges.txt"}))
    with pytest.raises(ValueError, match="ids"):                       # 518 BPE ids against a 16-piece BERT
        AlignmentScore(model_path=str(tmp_path)).setup()
