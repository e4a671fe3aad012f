"""Tokenizers and sample builders: the bilingual SentencePiece text tokenizer (`text`), the VQ-VAE image tokenizer
and its trainer (`vq`, `vq_train`), the one id space for text, special tokens and image codes (`vocab`), and the GLM
blank-infilling and CogView text-to-image sample builders (`glm`, `cogview`); plus the warm-up + cosine learning-rate
schedule shared with `train/` (`schedule`)."""
